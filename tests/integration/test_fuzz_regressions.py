"""Regressions found by fuzzing the full chain (tests/integration/test_fuzz_chain.py).

1. A query string or raw path holding bytes httpx refuses in a URL (a NUL, other
   controls, non-ASCII bytes, ``#``) made the reverse proxy raise instead of
   answering: the server turned it into a 500. They are now percent-encoded.
2. A client header value the upstream HTTP client cannot encode (NUL, CR, LF or
   surrounding spaces a server passed through) was reported as an upstream failure (502) and counted
   by the breaker, so a client could open the circuit for everyone. It is now a
   400 that the breaker never sees.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import unquote_to_bytes

import httpx
import pytest

from secmw.breaker import State
from secmw.config import load_config
from secmw.proxy.app import Route
from secmw.proxy.build import build_gateway
from secmw.proxy.exchange import upstream_url
from secmw.testing import AuditCapture
from tests.gateway_support import EchoUpstream, HeldReceiver, gateway_config, serve
from tests.support import Sender, http_scope


@pytest.mark.parametrize(
    ("raw_path", "query", "expected"),
    [
        pytest.param(b"/a", b"\x00", b"/base/a?%00", id="nul-in-query"),
        pytest.param(b"/a", b"q=\r\nx", b"/base/a?q=%0D%0Ax", id="crlf-in-query"),
        pytest.param(b"/a", b"q=\xc3\xa9 x", b"/base/a?q=%C3%A9%20x", id="non-ascii-in-query"),
        pytest.param(b"/a", b"q=#frag", b"/base/a?q=%23frag", id="hash-in-query"),
        pytest.param(b"/\xc3\xa9t\xc3\xa9", b"", b"/base/%C3%A9t%C3%A9", id="non-ascii-path"),
        pytest.param(b"/a#b", b"", b"/base/a%23b", id="hash-in-path"),
        pytest.param(b"/a%20b", b"x=%41&y=1", b"/base/a%20b?x=%41&y=1", id="escapes-kept"),
    ],
)
def test_upstream_url_escapes_bytes_httpx_refuses(
    raw_path: bytes, query: bytes, expected: bytes
) -> None:
    path = unquote_to_bytes(raw_path).decode("utf-8")  # what a server puts in "path"
    scope = {"type": "http", "path": path, "raw_path": raw_path, "query_string": query}
    route = Route("/", pool=None)  # type: ignore[arg-type]
    url = upstream_url(httpx.URL("http://127.0.0.1:9/base"), route, scope)
    assert url.raw_path == expected


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[EchoUpstream, str]]:
    echo = EchoUpstream()
    with serve(echo) as url:
        yield echo, url


@pytest.mark.anyio
@pytest.mark.parametrize(
    "value",
    [
        pytest.param(b"one\x00two", id="nul"),
        pytest.param(b"one\r\nx-injected: two", id="crlf"),
        pytest.param(b" padded", id="leading-space"),
    ],
)
async def test_unencodable_header_is_a_400_and_never_opens_the_breaker(
    upstream: tuple[EchoUpstream, str], value: bytes
) -> None:
    echo, url = upstream
    audit = AuditCapture()
    breaker = {"minimum_calls": 3, "window_size": 5, "open_duration": 30}
    gateway = build_gateway(load_config(gateway_config([url], breaker=breaker)), audit=audit)
    before = len(echo.seen)
    try:
        for _ in range(5):
            sent = Sender()
            scope = http_scope("/echo", query_string=b"a=\x00")
            scope["headers"].append((b"x-note", value))
            await gateway(scope, HeldReceiver(), sent)
            assert sent.status == 400
            assert sent.json()["detail"] == "The request cannot be forwarded."
        (circuit,) = list(gateway.registry)
        assert circuit.state is State.CLOSED
        assert circuit.snapshot().failures == 0
        assert len(echo.seen) == before  # the upstream never saw the request
        refused = [e for e in audit.events if e.request_id is not None]
        assert {(e.name, e.status, e.details["outcome"]) for e in refused} == {
            ("input_validation_fail", 400, "bad_request")
        }
        assert "breaker_opened" not in audit.names()
        # A well-formed request with the same odd query still goes through.
        sent = Sender()
        await gateway(http_scope("/echo", query_string=b"a=\x00"), HeldReceiver(), sent)
        assert sent.status == 200
        assert sent.json()["query"] == "a=%00"
    finally:
        await gateway.proxy.aclose()
