"""Hostile spellings of a protected path: each is refused (400) or denied, never served.

The policy denies ``/admin`` and everything below it. The server hands the app a
percent-decoded ``path`` and the untouched ``raw_path``; each case gives both the
way uvicorn would.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from secmw import SecurityMiddleware
from secmw.testing import AuditCapture
from tests.support import DenyPrefix, EchoApp, call, http_scope

pytestmark = pytest.mark.anyio

OPEN = {"auth": {"allow_anonymous": True}, "audit": {"sink": "none"}}


def uvicorn_scope(raw: str, root_path: str = "") -> dict[str, Any]:
    """Split a request target and decode it the way uvicorn does."""
    raw_path = raw.split("?", 1)[0].encode("latin-1")
    path = unquote(raw_path.decode("ascii"))
    return http_scope(root_path + path, raw_path=raw_path, root_path=root_path)


HOSTILE = [
    pytest.param("/admin", id="plain"),
    pytest.param("/admin/", id="trailing-slash"),
    pytest.param("/admin/users", id="below"),
    pytest.param("/%61dmin", id="encoded-letter"),
    pytest.param("/%2561dmin", id="double-encoded-letter"),
    pytest.param("/%25%36%31dmin", id="double-encoded-split"),
    pytest.param("//admin", id="double-slash"),
    pytest.param("///admin//x", id="many-slashes"),
    pytest.param("/./admin", id="dot-segment"),
    pytest.param("/public/../admin", id="dot-dot"),
    pytest.param("/public/%2e%2e/admin", id="encoded-dot-dot"),
    pytest.param("/public/%2E%2E/admin", id="encoded-dot-dot-upper"),
    pytest.param("/public/.%2e/admin", id="half-encoded-dot-dot"),
    pytest.param("/public/..;/admin", id="dot-dot-semicolon"),
    pytest.param("/admin;jsessionid=1", id="matrix-param"),
    pytest.param("/admin;/x", id="empty-matrix-param"),
    pytest.param("/admin%3Bx", id="encoded-semicolon"),
    pytest.param("/public/..%3B/admin", id="encoded-semicolon-dot-dot"),
    pytest.param("/public%2f..%2fadmin", id="encoded-slash"),
    pytest.param("/public%2F..%2Fadmin", id="encoded-slash-upper"),
    pytest.param("/admin%2fx", id="encoded-slash-below"),
    pytest.param("/public%5c..%5cadmin", id="encoded-backslash"),
    pytest.param("/public\\..\\admin", id="backslash"),
    pytest.param("/admin%00.html", id="nul"),
    pytest.param("/admin%0a", id="newline"),
    pytest.param("/adm%c0%aein", id="overlong-utf8"),
    pytest.param("/%ff/admin", id="invalid-utf8"),
    pytest.param("/../admin", id="above-root"),
    pytest.param("/public/../../admin", id="far-above-root"),
    pytest.param("/admin/./", id="trailing-dot"),
    pytest.param("/x/%2e%2e/%2e%2e/admin", id="encoded-climb"),
    pytest.param("/admin?x=/public", id="query-looks-public"),
]


@pytest.mark.parametrize("target", HOSTILE)
async def test_hostile_spelling_never_reaches_the_app(target: str) -> None:
    echo = EchoApp()
    app = SecurityMiddleware(echo, OPEN, policy=DenyPrefix("/admin"))
    sent = await call(app, uvicorn_scope(target))
    assert sent.status in (400, 401, 403), target
    assert echo.scopes == []


@pytest.mark.parametrize(
    ("target", "canonical"),
    [
        pytest.param("/public/x", "/public/x", id="plain"),
        pytest.param("/public//x/", "/public/x", id="merged"),
        pytest.param("/administrator", "/administrator", id="prefix-is-not-segment"),
        pytest.param("/admin.html", "/admin.html", id="dot-in-name"),
        pytest.param("/caf%C3%A9", "/caf\u00e9", id="utf8"),
        pytest.param("/a/b/../c", "/a/c", id="dot-dot-inside"),
    ],
)
async def test_harmless_spellings_pass_with_their_canonical_path(
    target: str, canonical: str
) -> None:
    policy = DenyPrefix("/admin")
    app = SecurityMiddleware(EchoApp(), OPEN, policy=policy)
    sent = await call(app, uvicorn_scope(target))
    assert sent.status == 200
    assert policy.seen[0].path == canonical


@pytest.mark.parametrize(
    ("root_path", "target", "status"),
    [
        pytest.param("/api", "/admin", 401, id="mounted-admin"),
        pytest.param("/api", "/%61dmin", 401, id="mounted-encoded"),
        pytest.param("/api", "//admin", 401, id="mounted-double-slash"),
        pytest.param("/api", "/x/../admin", 401, id="mounted-dot-dot"),
        pytest.param("/api", "/../admin", 400, id="mounted-climb-out"),
        pytest.param("/api", "/public", 200, id="mounted-public"),
    ],
)
async def test_root_path_is_removed_like_starlettes_router(
    root_path: str, target: str, status: int
) -> None:
    echo = EchoApp()
    app = SecurityMiddleware(
        echo, {"auth": {"public_paths": ["/public"]}, "audit": {"sink": "none"}}
    )
    sent = await call(app, uvicorn_scope(target, root_path=root_path))
    assert sent.status == status


async def test_mounted_starlette_app_is_protected_under_its_own_routes() -> None:
    async def admin(request: Any) -> PlainTextResponse:
        return PlainTextResponse("admin area")

    async def hello(request: Any) -> PlainTextResponse:
        return PlainTextResponse("hello")

    inner = Starlette(routes=[Route("/admin", admin), Route("/hello", hello)])
    protected = SecurityMiddleware(inner, OPEN, policy=DenyPrefix("/admin"))
    outer = Starlette(routes=[Mount("/api", app=protected)])
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=outer), base_url="http://t"
    ) as client:
        assert (await client.get("/api/hello")).text == "hello"
        for target in ("/api/admin", "/api//admin", "/api/%61dmin", "/api/hello/../admin"):
            response = await client.get(target)
            assert response.status_code in (400, 401), target
            assert response.text != "admin area"


def _routed_app() -> Starlette:
    """A public ``/health`` next to private routes whose parameters could swallow ``..``."""

    async def health(request: Any) -> PlainTextResponse:
        return PlainTextResponse("public health")

    async def private(request: Any) -> PlainTextResponse:
        return PlainTextResponse(f"private {request.url.path}")

    return Starlette(
        routes=[
            Route("/health", health),
            Route("/files/{name:path}", private),
            Route("/users/{uid}/{action}", private),
            Route("/{rest:path}", private),
        ]
    )


@pytest.mark.parametrize(
    "target",
    [
        pytest.param("/files/../health", id="dot-dot-into-public"),
        pytest.param("/users/../health", id="dot-dot-param"),
        pytest.param("/users/%2e%2e/health", id="encoded-dot-dot"),
        pytest.param("/users/..;/health", id="dot-dot-semicolon"),
        pytest.param("/users/x/../../health", id="climb-two"),
        pytest.param("//health", id="double-slash-catch-all"),
        pytest.param("/./health", id="dot"),
        pytest.param("/health;x", id="matrix-param-catch-all"),
    ],
)
async def test_the_app_routes_on_the_path_the_policy_judged(target: str) -> None:
    # The spelling canonicalises to the public /health: the app must then serve
    # /health, never a private route that matches the literal spelling.
    app = SecurityMiddleware(
        _routed_app(), {"auth": {"public_paths": ["/health"]}, "audit": {"sink": "none"}}
    )
    sent = await call(app, uvicorn_scope(target))
    assert sent.status == 200, target
    assert sent.body == b"public health"


async def test_the_rewritten_scope_keeps_root_path_query_and_trailing_slash() -> None:
    echo = EchoApp()
    app = SecurityMiddleware(echo, OPEN, policy=DenyPrefix("/admin"))
    scope = uvicorn_scope("/x/../a//b/", root_path="/api")
    scope["query_string"] = b"q=1"
    sent = await call(app, scope)
    assert sent.status == 200
    seen = echo.scopes[0]
    assert (seen["path"], seen["raw_path"]) == ("/api/a/b/", b"/api/a/b/")
    assert seen["query_string"] == b"q=1"
    plain = EchoApp()
    await call(SecurityMiddleware(plain, OPEN), uvicorn_scope("/a/b/"))
    assert plain.scopes[0]["raw_path"] == b"/a/b/"  # nothing to rewrite: the scope is the server's


def hypercorn_scope(raw: str, root_path: str) -> dict[str, Any]:
    """As hypercorn (``--root-path``) and granian (``--url-path-prefix``) build it:
    the client's path as sent, the mount prefix only in ``root_path``."""
    raw_path = raw.split("?", 1)[0].encode("latin-1")
    return http_scope(unquote(raw_path.decode("ascii")), raw_path=raw_path, root_path=root_path)


def _admin_app() -> Starlette:
    async def admin(request: Any) -> PlainTextResponse:
        return PlainTextResponse("admin area")

    async def other(request: Any) -> PlainTextResponse:
        return PlainTextResponse(f"other {request.url.path}")

    return Starlette(routes=[Route("/admin", admin), Route("/{rest:path}", other)])


@pytest.mark.parametrize(
    "target",
    [
        pytest.param("//api/admin", id="double-slash"),
        pytest.param("/./api/admin", id="dot"),
        pytest.param("/api;x/admin", id="matrix"),
        pytest.param("/x/../api/admin", id="dot-dot"),
        pytest.param("/api/./admin", id="dot-below"),
        pytest.param("/%2e/api/admin", id="encoded-dot"),
        pytest.param("/admin", id="plain"),
        pytest.param("/api/admin", id="with-prefix"),
        # Litestar cuts at the first occurrence of the prefix, wherever it is.
        pytest.param("/x/api/admin", id="prefix-inside"),
        pytest.param("/apiadmin", id="prefix-glued"),
    ],
)
@pytest.mark.parametrize("style", ["hypercorn", "uvicorn"])
async def test_a_spelling_that_resolves_into_the_mount_prefix_never_reaches_admin(
    target: str, style: str
) -> None:
    # The policy judged "/api/admin" while Starlette stripped the prefix and
    # served "/admin": now such a spelling is refused, or judged as "/admin".
    app = SecurityMiddleware(_admin_app(), OPEN, policy=DenyPrefix("/admin"))
    scope = (
        hypercorn_scope(target, "/api")
        if style == "hypercorn"
        else uvicorn_scope(target, root_path="/api")
    )
    sent = await call(app, scope)
    assert sent.body != b"admin area", (style, target, sent.status)


@pytest.mark.parametrize(
    ("hosts", "reason"),
    [
        pytest.param(["public.example", "admin.example"], "duplicate Host", id="two-lines"),
        pytest.param(["admin.example:1:2"], "malformed Host", id="two-colons"),
        pytest.param(["admin.example/x"], "malformed Host", id="slash"),
        pytest.param(["user@admin.example"], "malformed Host", id="userinfo"),
    ],
)
async def test_an_ambiguous_host_is_a_bad_request(hosts: list[str], reason: str) -> None:
    # The policy's hosts condition and an app reading the last line (or splitting
    # at a colon) would read different hosts (RFC 9112 section 3.2: 400).
    echo, audit = EchoApp(), AuditCapture()
    app = SecurityMiddleware(echo, OPEN, audit=audit)
    sent = await call(app, http_scope("/x", headers=[("host", h) for h in hosts]))
    assert sent.status == 400
    assert echo.scopes == []
    assert audit.last.reason == reason


@pytest.mark.parametrize(
    "host",
    ["api.example", "api.example:8443", "[::1]:8000", "[fe80::1%25eth0]:8000", "127.0.0.1", ""],
)
async def test_ordinary_hosts_pass(host: str) -> None:
    echo = EchoApp()
    sent = await call(SecurityMiddleware(echo, OPEN), http_scope("/x", headers=[("host", host)]))
    assert sent.status == 200


@pytest.mark.parametrize("target", ["/.", "/index/..", "/;jsessionid=A1B2C3", "/x;v=1"])
async def test_a_root_path_of_slash_is_no_prefix(target: str) -> None:
    echo = EchoApp()
    sent = await call(SecurityMiddleware(echo, OPEN), hypercorn_scope(target, "/"))
    assert sent.status == 200


@pytest.mark.parametrize("root", ["/api", "/api/"])
@pytest.mark.parametrize(
    ("style", "target"),
    [
        ("hypercorn", "/admin"),
        ("hypercorn", "/x/api/admin"),
        ("hypercorn", "/apiadmin"),
        ("hypercorn", "/api/admin"),
        ("uvicorn", "/admin"),
        ("uvicorn", "/x/api/admin"),
    ],
)
async def test_the_app_gets_the_prefix_once_in_front_and_routes_on_the_judged_path(
    root: str, style: str, target: str
) -> None:
    # Litestar cuts the prefix at its first occurrence anywhere, Starlette only in
    # front: given "prefix + judged" with root_path = prefix, both route on judged.
    echo = EchoApp()
    policy = DenyPrefix("/admin")
    app = SecurityMiddleware(echo, OPEN, policy=policy)
    scope = (
        hypercorn_scope(target, root)
        if style == "hypercorn"
        else uvicorn_scope(target, root_path=root.rstrip("/"))
    )
    sent = await call(app, scope)
    if policy.seen[0].path.startswith("/admin"):
        assert sent.status in (401, 403)
        return
    assert sent.status == 200
    seen = echo.scopes[0]
    prefix = root.rstrip("/")
    assert seen["root_path"] == prefix
    assert seen["path"] == prefix + policy.seen[0].path
    litestar_route = "/" + seen["path"].split(seen["root_path"], 1)[-1].lstrip("/")
    assert litestar_route == policy.seen[0].path


async def test_a_root_with_a_trailing_slash_that_the_server_put_in_front_keeps_the_apps_routes() -> (
    None
):
    # uvicorn --root-path /api/: the app's own "/api/items" arrives as "/api//api/items".
    echo = EchoApp()
    app = SecurityMiddleware(echo, OPEN, policy=DenyPrefix("/admin"))
    sent = await call(app, http_scope("/api//api/items", root_path="/api/"))
    assert sent.status == 200
    seen = echo.scopes[0]
    assert (seen["path"], seen["root_path"]) == ("/api/api/items", "/api")
