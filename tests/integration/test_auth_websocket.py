"""WebSocket authentication: header or bearer subprotocol, rejection, expiry close, real server."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import anyio
import pytest

from secmw import SecurityMiddleware, load_config
from secmw.auth import MemoryDenylist
from secmw.auth.bearer import encode_subprotocol
from secmw.auth.build import build_jwt, credential_settings
from secmw.errors import ConfigError
from secmw.testing import AuditCapture, TokenIssuer
from tests.support import Sender, ws_scope

pytestmark = pytest.mark.anyio

ISSUER = TokenIssuer(algorithm="EdDSA", kid="ws-1")


class Client:
    """Connect, then wait (bounded) until told to go."""

    def __init__(self) -> None:
        self.connected = False
        self.done = anyio.Event()

    async def __call__(self) -> dict[str, Any]:
        if not self.connected:
            self.connected = True
            return {"type": "websocket.connect"}
        with anyio.fail_after(5):
            await self.done.wait()
        return {"type": "websocket.disconnect", "code": 1000}


class Echo:
    """Accepts with the first offered subprotocol; records the scope it saw."""

    def __init__(self, close: bool = True) -> None:
        self.scope: dict[str, Any] | None = None
        self.received: list[dict[str, Any]] = []
        self.close = close

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.scope = scope
        await receive()
        offered = scope.get("subprotocols") or []
        await send({"type": "websocket.accept", "subprotocol": offered[0] if offered else None})
        if self.close:
            await send({"type": "websocket.close", "code": 1000})
            return
        while True:
            message = await receive()
            self.received.append(message)
            if message["type"] == "websocket.disconnect":
                return


def handshake(
    subprotocols: list[str], headers: list[tuple[str, str]] = (), **extra: Any
) -> dict[str, Any]:  # type: ignore[assignment]
    entry_header = ", ".join(subprotocols)
    scope = ws_scope(
        headers=[*headers, *([("sec-websocket-protocol", entry_header)] if subprotocols else [])],
        **extra,
    )
    scope["subprotocols"] = subprotocols
    return scope


def secured(**auth: Any) -> tuple[SecurityMiddleware, Echo, AuditCapture]:
    inner, audit = Echo(), AuditCapture()
    config = {"auth": {"jwt": ISSUER.jwt_config(), **auth}}
    return SecurityMiddleware(inner, config, audit=audit), inner, audit


async def test_subprotocol_token_is_accepted_and_never_echoed() -> None:
    app, inner, audit = secured()
    token = ISSUER.mint("alice")
    entry = encode_subprotocol(token)
    sent = Sender()
    await app(handshake(["mcp", entry]), Client(), sent)
    accept = sent.messages[0]
    assert {k: v for k, v in accept.items() if k != "headers"} == {
        "type": "websocket.accept",
        "subprotocol": "mcp",
    }
    assert inner.scope is not None and inner.scope["user"].subject == "alice"
    assert inner.scope["subprotocols"] == ["mcp"]
    assert (b"sec-websocket-protocol", b"mcp") in inner.scope["headers"]
    assert all(token.encode() not in value for _, value in inner.scope["headers"])
    assert audit.named("authz_allow")[0].status == 101


async def test_token_only_subprotocol_leaves_none_to_echo() -> None:
    app, inner, _ = secured()
    sent = Sender()
    await app(handshake([encode_subprotocol(ISSUER.mint())]), Client(), sent)
    assert {k: v for k, v in sent.messages[0].items() if k != "headers"} == {
        "type": "websocket.accept",
        "subprotocol": None,
    }
    assert inner.scope is not None
    assert not any(name == b"sec-websocket-protocol" for name, _ in inner.scope["headers"])


@pytest.mark.parametrize("extension", [True, False], ids=["http-response", "close"])
async def test_bad_token_rejects_the_handshake(extension: bool) -> None:
    app, inner, audit = secured()
    forged = TokenIssuer(algorithm="EdDSA", kid="ws-1").mint()
    scope = handshake(["mcp", encode_subprotocol(forged)])
    if extension:
        scope["extensions"] = {"websocket.http.response": {}}
    sent = Sender()
    await app(scope, Client(), sent)
    assert inner.scope is None
    if extension:
        assert sent.status == 401
        assert 'error="invalid_token"' in (sent.header("www-authenticate") or "")
    else:
        assert sent.messages == [{"type": "websocket.close", "code": 1008, "reason": ""}]
    event = audit.last
    assert event.name == "authn_token_invalid" and event.transport == "websocket"


async def test_missing_token_rejects_and_query_token_is_refused_by_default() -> None:
    app, inner, audit = secured()
    sent = Sender()
    await app(handshake(["mcp"]), Client(), sent)
    assert sent.messages[0]["type"] == "websocket.close" and inner.scope is None
    assert audit.last.name == "authn_token_missing"
    scope = handshake([])
    scope["query_string"] = f"access_token={ISSUER.mint()}".encode()
    await app(scope, Client(), Sender())
    assert audit.last.reason == "access_token in query string"


async def test_query_token_opt_in_is_stripped_from_the_app_scope() -> None:
    app, inner, _ = secured(websocket={"query_token": True})
    scope = handshake([])
    scope["query_string"] = f"room=1&access_token={ISSUER.mint('bob')}".encode()
    sent = Sender()
    await app(scope, Client(), sent)
    assert sent.messages[0]["type"] == "websocket.accept"
    assert inner.scope is not None and inner.scope["query_string"] == b"room=1"
    assert inner.scope["user"].subject == "bob"


async def test_expiry_closes_a_subprotocol_session_with_1008() -> None:
    now = 1_000_000.0
    token = ISSUER.mint("carol", now=now, expires_in=60)
    inner, audit = Echo(close=False), AuditCapture()
    app = SecurityMiddleware(inner, {"auth": {"jwt": ISSUER.jwt_config()}}, audit=audit)
    app.pipeline.clock = lambda: now + 59.95
    app.pipeline.authenticator._clock = lambda: now  # type: ignore[union-attr]
    sent = Sender()
    with anyio.fail_after(5):
        await app(handshake(["mcp", encode_subprotocol(token)]), Client(), sent)
    assert sent.messages[0]["subprotocol"] == "mcp"
    assert sent.messages[-1] == {
        "type": "websocket.close",
        "code": 1008,
        "reason": "credential expired",
    }
    assert inner.received[-1] == {"type": "websocket.disconnect", "code": 1008}
    assert audit.named("session_expired")[0].subject == "carol"


class Lingering:
    """Accepts, reads until the client leaves, then keeps working a while (bounded)."""

    def __init__(self, linger: float) -> None:
        self.linger = linger
        self.received: list[dict[str, Any]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept", "subprotocol": "mcp"})
        while True:
            message = await receive()
            self.received.append(message)
            if message["type"] == "websocket.disconnect":
                break
        await anyio.sleep(self.linger)


class GoneSender(Sender):
    """A server whose connection is gone: a close raises, as uvicorn's does."""

    async def __call__(self, message: Any) -> None:
        if message["type"] == "websocket.close":
            raise RuntimeError("Unexpected ASGI message 'websocket.close'")
        await super().__call__(message)


def expiring(app: Any, audit: AuditCapture, lifetime: float, **config: Any) -> tuple[Any, str]:
    now = 1_000_000.0
    token = ISSUER.mint("carol", now=now, expires_in=60)
    middleware = SecurityMiddleware(
        app, {"auth": {"jwt": ISSUER.jwt_config()}, **config}, audit=audit
    )
    started = time.monotonic()
    middleware.pipeline.clock = lambda: now + 60 - lifetime + (time.monotonic() - started)
    middleware.pipeline.authenticator._clock = lambda: now  # type: ignore[union-attr]
    return middleware, encode_subprotocol(token)


async def test_expiry_is_audited_even_when_the_close_cannot_be_sent() -> None:
    audit = AuditCapture()
    inner = Echo(close=False)
    app, token = expiring(inner, audit, lifetime=0.05)
    with anyio.fail_after(5):
        await app(handshake(["mcp", token]), Client(), GoneSender())
    assert len(audit.named("session_expired")) == 1
    assert not audit.named("app_error")
    assert inner.received[-1] == {"type": "websocket.disconnect", "code": 1008}


async def test_a_session_the_client_left_does_not_expire_later() -> None:
    audit = AuditCapture()
    client = Client()
    client.done.set()  # the client leaves right after connecting
    app, token = expiring(Lingering(linger=0.3), audit, lifetime=0.1)
    sent = Sender()
    with anyio.fail_after(5):
        await app(handshake(["mcp", token]), client, sent)
    assert not audit.named("session_expired")
    assert not [m for m in sent.messages if m["type"] == "websocket.close"]


async def test_a_session_refused_for_a_message_ends_once() -> None:
    audit = AuditCapture()
    inner = Lingering(linger=0.3)
    app, token = expiring(inner, audit, lifetime=0.1, websocket={"max_message_bytes": 4})
    messages = [{"type": "websocket.connect"}, {"type": "websocket.receive", "text": "too long"}]

    async def client() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        await anyio.sleep(1)
        return {"type": "websocket.disconnect", "code": 1000}

    sent = Sender()
    with anyio.fail_after(5):
        await app(handshake(["mcp", token]), client, sent)
    closes = [m for m in sent.messages if m["type"] == "websocket.close"]
    assert [m["code"] for m in closes] == [1009]
    assert not audit.named("session_expired")  # one end: the refused message
    assert [m for m in inner.received if m["type"] == "websocket.disconnect"] == [
        {"type": "websocket.disconnect", "code": 1009}
    ]


# -- a real server and a real client ---------------------------------------------


@pytest.fixture
def served() -> Iterator[str]:
    import socket

    import uvicorn

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await Echo(close=False)(scope, receive, send)

    secured_app = SecurityMiddleware(
        app, {"auth": {"jwt": ISSUER.jwt_config()}, "audit": {"sink": "none"}}
    )
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            secured_app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"
        )
    )
    thread = threading.Thread(target=server.run)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield f"ws://127.0.0.1:{port}/ws"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.mark.slow
def test_real_client_negotiates_the_real_subprotocol(served: str) -> None:
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    entry = encode_subprotocol(ISSUER.mint("dana"))
    with connect(served, subprotocols=["mcp", entry], open_timeout=5) as socket:  # type: ignore[list-item]
        assert socket.subprotocol == "mcp"
    with pytest.raises(InvalidStatus) as info:
        connect(served, subprotocols=["mcp", encode_subprotocol("a.b.c")], open_timeout=5)
    assert info.value.response.status_code in (401, 403)


def built_in_code(**websocket: Any) -> tuple[SecurityMiddleware, Echo]:
    """The documented pattern: the JWT authenticator built in code (for revocation)."""
    inner = Echo()
    raw = {"auth": {"jwt": ISSUER.jwt_config(), "websocket": websocket}}
    config = load_config(raw)
    assert config.auth.jwt is not None
    authenticator = build_jwt(
        config.auth.jwt, credentials=credential_settings(config.auth), revocation=MemoryDenylist()
    )
    return SecurityMiddleware(inner, config, authenticator=authenticator), inner


TOKEN = ISSUER.mint("dora")
WEBSOCKET_SETTINGS = [
    pytest.param(
        {"subprotocol_prefix": ""}, ["mcp", encode_subprotocol(TOKEN)], b"", False, id="prefix-off"
    ),
    pytest.param(
        {"subprotocol_prefix": "my.bearer."},
        ["mcp", encode_subprotocol(TOKEN)],
        b"",
        False,
        id="custom-prefix-k8s-entry",
    ),
    pytest.param(
        {"subprotocol_prefix": "my.bearer."},
        ["mcp", encode_subprotocol(TOKEN, "my.bearer.")],
        b"",
        True,
        id="custom-prefix-its-entry",
    ),
    pytest.param({"query_token": True}, [], f"access_token={TOKEN}".encode(), True, id="query"),
]


@pytest.mark.parametrize(("websocket", "offered", "query", "accepted"), WEBSOCKET_SETTINGS)
@pytest.mark.parametrize("build", ["config", "code"])
async def test_an_authenticator_built_in_code_follows_the_websocket_settings(
    build: str, websocket: dict[str, Any], offered: list[str], query: bytes, accepted: bool
) -> None:
    if build == "config":
        app, inner, _ = secured(websocket=websocket)
    else:
        app, inner = built_in_code(**websocket)
    scope = handshake(offered)
    scope["query_string"] = query
    sent = Sender()
    await app(scope, Client(), sent)
    if not accepted:
        assert inner.scope is None and sent.messages[0]["type"] == "websocket.close"
        return
    assert sent.messages[0]["type"] == "websocket.accept"
    assert inner.scope is not None and inner.scope["user"].subject == "dora"
    assert inner.scope["subprotocols"] == offered[:1] and inner.scope["query_string"] == b""


@pytest.mark.parametrize(
    ("websocket", "key"),
    [
        pytest.param({"subprotocol_prefix": ""}, "subprotocol_prefix", id="prefix-off"),
        pytest.param({"subprotocol_prefix": "my.bearer."}, "subprotocol_prefix", id="prefix"),
        pytest.param({"query_token": True}, "query_token", id="query-token"),
    ],
)
def test_an_authenticator_reading_other_places_than_the_config_is_refused(
    websocket: dict[str, Any], key: str
) -> None:
    config = load_config({"auth": {"jwt": ISSUER.jwt_config(), "websocket": websocket}})
    assert config.auth.jwt is not None
    authenticator = build_jwt(config.auth.jwt)  # credentials left out: the defaults
    with pytest.raises(ConfigError) as info:
        SecurityMiddleware(Echo(), config, authenticator=authenticator)
    assert [issue.key for issue in info.value.issues] == [f"auth.websocket.{key}"]
