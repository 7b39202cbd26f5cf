"""The path an upstream is sent and the redirects turned back into gateway paths."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any
from urllib.parse import unquote

import httpx
import pytest

from secmw.proxy.target import forwarded_path, rewrite_location


def _scope(raw: bytes, judged: str | None) -> dict[str, Any]:
    scope: dict[str, Any] = {
        "type": "http",
        "path": unquote(raw.decode("latin-1")),
        "raw_path": raw,
        "root_path": "",
    }
    if judged is not None:
        scope["state"] = {"secmw": SimpleNamespace(path=judged)}
    return scope


@pytest.mark.parametrize(
    ("raw", "judged"),
    [
        pytest.param(b"/admin/%2e%2e/public", "/public", id="encoded-dot-dot"),
        pytest.param(b"/admin/.%2E/public", "/public", id="half-encoded"),
        pytest.param(b"/admin/..;/public", "/public", id="dot-dot-semicolon"),
        pytest.param(b"/public;x=1", "/public", id="matrix-param"),
        pytest.param(b"/public/../admin", "/admin", id="dot-dot"),
        pytest.param(b"//public", "/public", id="empty-segment"),
    ],
)
def test_a_spelling_of_another_path_is_replaced_by_the_judged_one(raw: bytes, judged: str) -> None:
    assert forwarded_path(_scope(raw, judged)) == judged.encode()


@pytest.mark.parametrize(
    ("raw", "judged"),
    [
        pytest.param(b"/public", "/public", id="plain"),
        pytest.param(b"/public/", "/public", id="trailing-slash"),
        pytest.param(b"/a%20b", "/a b", id="encoded-space"),
        pytest.param(b"/%61pi", "/api", id="encoded-letter"),
    ],
)
def test_a_spelling_of_the_judged_path_is_forwarded_as_sent(raw: bytes, judged: str) -> None:
    assert forwarded_path(_scope(raw, judged)) == raw


def test_without_a_pipeline_the_canonical_path_is_forwarded() -> None:
    assert forwarded_path(_scope(b"/admin/%2e%2e/public", None)) == b"/public"


@pytest.mark.parametrize(
    ("location", "prefix", "expected"),
    [
        pytest.param(b"http://up:8080/x", "/api", b"/api/x", id="path"),
        pytest.param(b"http://up:8080", "/api", b"/api/", id="origin-only"),
        pytest.param(b"http://up:8080//evil.example/x", "", b"/evil.example/x", id="two-slashes"),
        pytest.param(b"http://up:8080/\\evil.example/x", "", b"/evil.example/x", id="backslash"),
        pytest.param(b"http://up:8080///evil.example", "/api", b"/api/evil.example", id="prefix"),
        pytest.param(b"http://up:8080/\t/evil.example/x", "", b"/evil.example/x", id="tab"),
        pytest.param(b"http://up:8080/\r\n\\evil.example", "", b"/evil.example", id="crlf"),
        pytest.param(b"http://other:8080/x", "", b"http://other:8080/x", id="elsewhere-untouched"),
    ],
)
def test_redirects_to_the_upstream_become_gateway_paths_never_protocol_relative(
    location: bytes, prefix: str, expected: bytes
) -> None:
    target = SimpleNamespace(label="http://up:8080", url=httpx.URL("http://up:8080"))
    route = SimpleNamespace(prefix=prefix, strip_prefix=bool(prefix))
    headers = rewrite_location([(b"location", location)], target, route)  # type: ignore[arg-type]
    assert headers == [(b"location", expected)]


@pytest.mark.parametrize(
    ("base", "prefix", "strip", "location", "expected"),
    [
        pytest.param(
            "https://eu.llm.example/v1",
            "/v1",
            True,
            b"https://eu.llm.example/v1/models/",
            b"/v1/models/",
            id="llm-example-base-path-not-doubled",
        ),
        pytest.param(
            "http://10.0.0.5:9000/api",
            "/svc",
            True,
            b"http://10.0.0.5:9000/api/login?next=%2F#top",
            b"/svc/login?next=%2F#top",
            id="base-path-swapped-for-the-route",
        ),
        pytest.param(
            "http://10.0.0.5:9000/api",
            "/svc",
            False,
            b"http://10.0.0.5:9000/api/svc/login",
            b"/svc/login",
            id="base-path-dropped-prefix-kept",
        ),
        pytest.param(
            "http://10.0.0.5:9000/api",
            "/svc",
            True,
            b"http://10.0.0.5:9000/apiary/x",
            b"http://10.0.0.5:9000/apiary/x",
            id="outside-the-base-path-untouched",
        ),
        pytest.param(
            "http://upstream.internal",
            "/app",
            True,
            b"http://upstream.internal:80/x",
            b"/app/x",
            id="default-port-written",
        ),
        pytest.param(
            "https://upstream.internal",
            "/app",
            True,
            b"https://upstream.internal:443/x",
            b"/app/x",
            id="default-tls-port-written",
        ),
        pytest.param(
            "http://upstream.internal",
            "/app",
            True,
            b"HTTP://UPSTREAM.internal/x",
            b"/app/x",
            id="scheme-and-host-in-capitals",
        ),
        pytest.param(
            "http://upstream.internal",
            "/app",
            True,
            b"https://upstream.internal/x",
            b"https://upstream.internal/x",
            id="another-scheme-untouched",
        ),
        pytest.param(
            "http://upstream.internal:8080",
            "/app",
            True,
            b"http://upstream.internal/x",
            b"http://upstream.internal/x",
            id="another-port-untouched",
        ),
        pytest.param(
            "http://upstream.internal",
            "/app",
            True,
            b"/x",
            b"/x",
            id="relative-untouched",
        ),
    ],
)
def test_redirects_map_back_through_the_targets_base_path_and_the_route(
    base: str, prefix: str, strip: bool, location: bytes, expected: bytes
) -> None:
    from secmw.breaker import Breaker
    from secmw.proxy.pool import Target

    target = Target(httpx.URL(base), Breaker("t"))
    route = SimpleNamespace(prefix=prefix, strip_prefix=strip)
    headers = rewrite_location([(b"Location", location)], target, route)  # type: ignore[arg-type]
    assert headers == [(b"Location", expected)]


def test_a_pool_target_needs_the_concrete_breaker() -> None:
    from secmw.breaker import NoBreaker
    from secmw.proxy.pool import Target

    with pytest.raises(TypeError, match=r"needs a secmw\.breaker\.Breaker, not NoBreaker"):
        Target(httpx.URL("http://127.0.0.1:9"), NoBreaker())  # type: ignore[arg-type]
