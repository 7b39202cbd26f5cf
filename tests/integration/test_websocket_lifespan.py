"""Websocket handshakes, lifespan pass-through and unknown scope types."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from secmw import SecurityMiddleware
from secmw.testing import AuditCapture, TokenIssuer
from tests.support import DenyPrefix, Receiver, Sender, call, http_scope, ws_scope

pytestmark = pytest.mark.anyio

CONNECT = {"type": "websocket.connect"}


class EchoSocket:
    """Accepts, echoes one text frame with the subject, then closes."""

    def __init__(self) -> None:
        self.first_message: dict[str, Any] | None = None
        self.scopes: list[dict[str, Any]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.scopes.append(scope)
        self.first_message = await receive()
        await send({"type": "websocket.accept"})
        message = await receive()
        await send(
            {"type": "websocket.send", "text": f"{scope['user'].subject}:{message.get('text')}"}
        )
        await send({"type": "websocket.close", "code": 1000})


def config(issuer: TokenIssuer) -> dict[str, Any]:
    return {"auth": {"jwt": issuer.jwt_config()}, "audit": {"sink": "none"}}


async def test_authenticated_handshake_reaches_app_with_connect_replayed() -> None:
    issuer = TokenIssuer()
    echo = EchoSocket()
    audit = AuditCapture()
    app = SecurityMiddleware(echo, config(issuer), audit=audit)
    token = issuer.mint("alice")
    receive = Receiver([dict(CONNECT), {"type": "websocket.receive", "text": "hi"}])
    sent = Sender()
    await app(ws_scope(headers=[("authorization", f"Bearer {token}")]), receive, sent)
    assert echo.first_message == CONNECT
    assert [m["type"] for m in sent.messages] == [
        "websocket.accept",
        "websocket.send",
        "websocket.close",
    ]
    assert sent.messages[1]["text"] == "alice:hi"
    event = audit.named("authz_allow")[0]
    assert event.transport == "websocket"
    assert event.status == 101


async def test_denied_handshake_gets_http_401_when_server_offers_the_extension() -> None:
    issuer = TokenIssuer()
    echo = EchoSocket()
    audit = AuditCapture()
    app = SecurityMiddleware(echo, config(issuer), audit=audit)
    sent = Sender()
    scope = ws_scope(extensions={"websocket.http.response": {}})
    await app(scope, Receiver([dict(CONNECT)]), sent)
    assert echo.scopes == []
    assert sent.messages[0]["type"] == "websocket.http.response.start"
    assert sent.status == 401
    assert sent.header("www-authenticate") == 'Bearer realm="secmw"'
    assert sent.json()["status"] == 401
    assert audit.named("authn_token_missing")[0].status == 401


async def test_denied_handshake_is_closed_before_accept_without_the_extension() -> None:
    issuer = TokenIssuer()
    echo = EchoSocket()
    app = SecurityMiddleware(echo, config(issuer))
    sent = Sender()
    await app(
        ws_scope(headers=[("authorization", "Bearer not.a.token")]), Receiver([dict(CONNECT)]), sent
    )
    assert echo.scopes == []
    assert sent.messages == [{"type": "websocket.close", "code": 1008, "reason": ""}]


async def test_websocket_path_is_canonicalised_and_policed() -> None:
    echo = EchoSocket()
    app = SecurityMiddleware(
        echo,
        {"auth": {"allow_anonymous": True}, "audit": {"sink": "none"}},
        policy=DenyPrefix("/admin"),
    )
    for path, raw in (
        ("/admin/ws", b"/admin/ws"),
        ("//admin/ws", b"//admin/ws"),
        ("/x/../admin", b"/x/../admin"),
        ("/a/b", b"/a%2fb"),
    ):
        scope = ws_scope(path)
        scope["raw_path"] = raw
        sent = Sender()
        await app(scope, Receiver([dict(CONNECT)]), sent)
        assert sent.messages[0]["type"] == "websocket.close", path
    assert echo.scopes == []


async def test_disconnect_before_connect_ends_quietly() -> None:
    echo = EchoSocket()
    app = SecurityMiddleware(echo, {"audit": {"sink": "none"}})
    sent = Sender()
    await app(ws_scope(), Receiver([{"type": "websocket.disconnect", "code": 1006}]), sent)
    assert sent.messages == []
    assert echo.scopes == []


async def test_lifespan_passes_through_and_brackets_the_audit_trail() -> None:
    seen: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "lifespan"
        while True:
            message = await receive()
            seen.append(message["type"])
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return

    audit = AuditCapture()
    middleware = SecurityMiddleware(app, {"audit": {"sink": "none"}}, audit=audit)
    sent = Sender()
    receive = Receiver([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    await middleware(scope, receive, sent)
    assert seen == ["lifespan.startup", "lifespan.shutdown"]
    assert [m["type"] for m in sent.messages] == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
    ]
    assert audit.names() == ["sys_startup", "sys_shutdown"]
    assert audit.closed


async def test_lifespan_state_reaches_requests_next_to_ours() -> None:
    states: list[dict[str, Any]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        states.append(scope["state"])
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    middleware = SecurityMiddleware(
        app, {"auth": {"allow_anonymous": True}, "audit": {"sink": "none"}}
    )
    shared = {"db": "pool"}  # the request's state (servers copy the lifespan state per request)
    await call(middleware, http_scope("/x", state=shared))
    assert states[0]["db"] == "pool"
    assert states[0]["secmw"].path == "/x"
    # One dict for the request, as without secmw: what the app stores there
    # (request.state) is seen by the middleware around secmw.
    assert states[0] is shared


async def test_unknown_scope_types_pass_through_untouched() -> None:
    calls: list[tuple[Any, Any, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        calls.append((scope, receive, send))

    middleware = SecurityMiddleware(app, {"audit": {"sink": "none"}})
    scope = {"type": "webtransport", "path": "/../../etc"}
    receive, send = Receiver([]), Sender()
    await middleware(scope, receive, send)
    assert calls == [(scope, receive, send)]


async def test_a_pipeline_shared_by_two_apps_closes_when_the_last_one_shuts_down() -> None:
    from secmw import Pipeline
    from secmw.policy import Decision, Effect

    class Allow:
        def evaluate(self, ctx: Any) -> Decision:
            return Decision(Effect.ALLOW)

    async def lifespan_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                kind = "startup" if message["type"] == "lifespan.startup" else "shutdown"
                await send({"type": f"lifespan.{kind}.complete"})
                if kind == "shutdown":
                    return
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    audit = AuditCapture()
    pipeline = Pipeline(policy=Allow(), audit=audit)
    first = SecurityMiddleware(lifespan_app, pipeline=pipeline)
    second = SecurityMiddleware(lifespan_app, pipeline=pipeline)

    async def run(app: SecurityMiddleware, stop: anyio.Event) -> None:
        sent = iter(["lifespan.startup", "lifespan.shutdown"])

        async def receive() -> dict[str, Any]:
            kind = next(sent)
            if kind == "lifespan.shutdown":
                await stop.wait()
            return {"type": kind}

        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
        await app(scope, receive, Sender())

    stop_first, stop_second = anyio.Event(), anyio.Event()
    async with anyio.create_task_group() as group:
        group.start_soon(run, first, stop_first)
        group.start_soon(run, second, stop_second)
        await anyio.wait_all_tasks_blocked()
        stop_first.set()  # the first app shuts down while the second still serves
        await anyio.wait_all_tasks_blocked()
        assert not audit.closed
        assert (await call(second, http_scope("/x"))).status == 204
        stop_second.set()
    assert audit.closed
    assert audit.names().count("sys_startup") == 1 and audit.names()[-1] == "sys_shutdown"


def test_a_file_audited_app_serves_again_after_its_lifespan_restarts(tmp_path: Any) -> None:
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    async def hello(request: Any) -> PlainTextResponse:
        return PlainTextResponse("hi")

    path = tmp_path / "audit.jsonl"
    config = {
        "auth": {"allow_anonymous": True},
        "audit": {"sink": "file", "file": {"path": str(path), "handle_sigterm": False}},
    }
    app = SecurityMiddleware(Starlette(routes=[Route("/", hello)]), config)
    for _ in range(2):  # TestClient entered twice: two lifespans over one pipeline
        with TestClient(app) as client:
            assert client.get("/").status_code == 200
    events = [line for line in path.read_text().splitlines() if '"authz_allow"' in line]
    assert len(events) == 2
