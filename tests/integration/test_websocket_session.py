"""An admitted websocket session: message size, per-message checks, expiry close."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import anyio
import pytest

from secmw import SecurityMiddleware
from secmw.context import RequestContext
from secmw.ratelimit import RateDecision
from secmw.testing import AuditCapture, TokenIssuer
from tests.support import Sender, ws_scope

pytestmark = pytest.mark.anyio


class ScriptedClient:
    """A websocket client: connect, then the given frames, then waits (bounded)."""

    def __init__(self, *frames: dict[str, Any]) -> None:
        self.frames = [{"type": "websocket.connect"}, *frames]
        self.done = anyio.Event()

    async def __call__(self) -> dict[str, Any]:
        if self.frames:
            return self.frames.pop(0)
        with anyio.fail_after(5):
            await self.done.wait()
        return {"type": "websocket.disconnect", "code": 1000}


class Recorder:
    """Accepts and records every message until disconnect; counts sends refused as closed."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.refused_sends = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def reply(text: str) -> None:
            try:
                await send({"type": "websocket.send", "text": text})
            except OSError:  # ASGI: send on a closed session raises
                self.refused_sends += 1

        await receive()
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            self.received.append(message)
            if message["type"] == "websocket.disconnect":
                await reply("after close")  # must not reach the client
                return
            await reply("ok")


OPEN = {"auth": {"allow_anonymous": True}, "audit": {"sink": "none"}}


async def test_oversized_message_closes_with_1009_and_app_sees_disconnect() -> None:
    app_inner, audit = Recorder(), AuditCapture()
    app = SecurityMiddleware(
        app_inner, {**OPEN, "websocket": {"max_message_bytes": 8}}, audit=audit
    )
    client = ScriptedClient(
        {"type": "websocket.receive", "text": "small"},
        {"type": "websocket.receive", "bytes": b"x" * 9},
    )
    sent = Sender()
    await app(ws_scope(), client, sent)
    types = [(m["type"], m.get("code")) for m in sent.messages]
    # The pump reads ahead, so the reply to the first frame may or may not beat the close.
    assert types[0] == ("websocket.accept", None)
    assert types[-1] == ("websocket.close", 1009)
    assert [m["type"] for m in app_inner.received] == ["websocket.receive", "websocket.disconnect"]
    assert app_inner.received[-1]["code"] == 1009
    refusal = audit.named("input_validation_fail")[0]
    assert refusal.status == 1009
    assert audit.named("authz_allow")[0].status == 101


async def test_multibyte_text_is_measured_in_bytes() -> None:
    app_inner = Recorder()
    app = SecurityMiddleware(app_inner, {**OPEN, "websocket": {"max_message_bytes": 8}})
    client = ScriptedClient({"type": "websocket.receive", "text": "\u00e9" * 5})  # 10 bytes
    sent = Sender()
    await app(ws_scope(), client, sent)
    assert sent.messages[-1] == {
        "type": "websocket.close",
        "code": 1009,
        "reason": "Content Too Large",
    }


async def test_message_limiter_refusal_closes_with_1008() -> None:
    class TwoMessages:
        def __init__(self) -> None:
            self.count = 0

        async def hit(self, ctx: RequestContext) -> RateDecision:
            return RateDecision(True)

        async def hit_message(
            self, ctx: RequestContext, message: Mapping[str, Any]
        ) -> RateDecision:
            self.count += 1
            return RateDecision(
                self.count <= 2, retry_after=1.0, policies=("messages",), reason="3rd message"
            )

    app_inner, audit = Recorder(), AuditCapture()
    app = SecurityMiddleware(app_inner, OPEN, rate_limiter=TwoMessages(), audit=audit)
    frames = [{"type": "websocket.receive", "text": str(i)} for i in range(5)]
    sent = Sender()
    await app(ws_scope(), ScriptedClient(*frames), sent)
    assert [m.get("text") for m in app_inner.received[:2]] == ["0", "1"]
    assert app_inner.received[2] == {"type": "websocket.disconnect", "code": 1008}
    assert sent.messages[-1]["code"] == 1008
    event = audit.named("excess_rate_limit_exceeded")[0]
    assert (event.reason, event.status) == ("3rd message", 1008)


async def test_session_closes_when_the_token_expires() -> None:
    now = [1_000_000.0]
    issuer = TokenIssuer()
    token = issuer.mint("alice", now=now[0], expires_in=60)
    app_inner, audit = Recorder(), AuditCapture()
    config = {"auth": {"jwt": issuer.jwt_config()}, "audit": {"sink": "none"}}
    app = SecurityMiddleware(app_inner, config, audit=audit)
    app.pipeline.clock = lambda: now[0] + 59.95  # the session opens 50 ms before expiry
    assert app.pipeline.authenticator is not None
    app.pipeline.authenticator._clock = lambda: now[0]  # type: ignore[attr-defined]
    client = ScriptedClient()
    sent = Sender()
    with anyio.fail_after(5):
        await app(ws_scope(headers=[("authorization", f"Bearer {token}")]), client, sent)
    assert sent.messages[0]["type"] == "websocket.accept"
    assert sent.messages[-1] == {
        "type": "websocket.close",
        "code": 1008,
        "reason": "credential expired",
    }
    assert app_inner.received[-1] == {"type": "websocket.disconnect", "code": 1008}
    expired = audit.named("session_expired")[0]
    assert (expired.subject, expired.status) == ("alice", 1008)
    assert token not in expired.to_json()


async def test_a_token_admitted_within_the_leeway_passes_no_message_after_its_exp() -> None:
    issuer = TokenIssuer()
    token = issuer.mint("alice", expires_in=-5)  # expired, but within the 30 s default leeway
    app_inner, audit = Recorder(), AuditCapture()
    config = {"auth": {"jwt": issuer.jwt_config()}, "audit": {"sink": "none"}}
    frames = [{"type": "websocket.receive", "text": f"m{n}"} for n in range(20)]
    sent = Sender()
    with anyio.fail_after(5):
        await SecurityMiddleware(app_inner, config, audit=audit)(
            ws_scope(headers=[("authorization", f"Bearer {token}")]), ScriptedClient(*frames), sent
        )
    assert app_inner.received == [{"type": "websocket.disconnect", "code": 1008}]
    assert [m["type"] for m in sent.messages] == ["websocket.accept", "websocket.close"]
    assert [(e.name, e.status) for e in audit.events if e.request_id] == [
        ("session_expired", 1008),
        ("authz_allow", 101),
    ]


async def test_client_disconnect_ends_a_guarded_session_cleanly() -> None:
    app_inner = Recorder()
    app = SecurityMiddleware(app_inner, OPEN)
    client = ScriptedClient(
        {"type": "websocket.receive", "text": "a"}, {"type": "websocket.disconnect", "code": 1001}
    )
    sent = Sender()
    await app(ws_scope(), client, sent)
    assert [m["type"] for m in app_inner.received] == ["websocket.receive", "websocket.disconnect"]
    assert all(m["type"] != "websocket.close" for m in sent.messages)


async def test_unguarded_session_runs_the_app_directly() -> None:
    app_inner = Recorder()
    app = SecurityMiddleware(app_inner, {**OPEN, "websocket": {"max_message_bytes": None}})
    client = ScriptedClient(
        {"type": "websocket.receive", "text": "x" * 10_000},
        {"type": "websocket.disconnect", "code": 1000},
    )
    sent = Sender()
    await app(ws_scope(), client, sent)
    assert app_inner.received[0]["text"] == "x" * 10_000


async def test_an_app_that_only_sends_learns_that_secmw_closed_the_session() -> None:
    # It never calls receive(): without an error from send it would run forever
    # (and hold up the server's shutdown).
    ended: list[str] = []

    async def ticker(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        try:
            for n in range(500):  # bounded: 5 s at most
                await send({"type": "websocket.send", "text": f"tick {n}"})
                await anyio.sleep(0.01)
        except OSError:
            ended.append("send raised")
            raise
        ended.append("ran out")

    app = SecurityMiddleware(ticker, {**OPEN, "websocket": {"max_message_bytes": 8}})
    client = ScriptedClient({"type": "websocket.receive", "bytes": b"x" * 9})
    sent = Sender()
    with anyio.fail_after(3):
        await app(ws_scope(), client, sent)
    assert ended == ["send raised"]
    assert sent.messages[-1]["type"] == "websocket.close" and sent.messages[-1]["code"] == 1009


async def test_client_messages_after_a_refusal_do_not_reach_the_app() -> None:
    app_inner = Recorder()
    app = SecurityMiddleware(app_inner, {**OPEN, "websocket": {"max_message_bytes": 8}})
    client = ScriptedClient(
        {"type": "websocket.receive", "bytes": b"x" * 9},
        {"type": "websocket.receive", "text": "later"},
        {"type": "websocket.receive", "bytes": b"y" * 4096},
        {"type": "websocket.disconnect", "code": 1000},
    )
    await app(ws_scope(), client, Sender())
    assert app_inner.received == [{"type": "websocket.disconnect", "code": 1009}]


async def test_an_app_slow_to_read_still_learns_the_expiry_code() -> None:
    # The client sends more than the buffer holds while the app is busy: the
    # expiry's disconnect finds no room, and must still reach the app as 1008.
    now = [1_000_000.0]
    issuer = TokenIssuer()
    token = issuer.mint("alice", now=now[0], expires_in=60)
    frames = [{"type": "websocket.receive", "text": f"m{n}"} for n in range(40)]
    received: list[dict[str, Any]] = []

    async def slow(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await anyio.sleep(0.3)  # busy while the token expires
        while True:
            message = await receive()
            received.append(message)
            if message["type"] == "websocket.disconnect":
                return

    config = {"auth": {"jwt": issuer.jwt_config()}, "audit": {"sink": "none"}}
    app = SecurityMiddleware(slow, config)
    app.pipeline.clock = lambda: now[0] + 59.95
    assert app.pipeline.authenticator is not None
    app.pipeline.authenticator._clock = lambda: now[0]  # type: ignore[attr-defined]
    client = ScriptedClient(*frames)
    sent = Sender()

    async def send(message: dict[str, Any]) -> None:
        await sent(message)
        if message["type"] == "websocket.close":
            client.done.set()  # the server then reports the client's side closed

    with anyio.fail_after(5):
        await app(ws_scope(headers=[("authorization", f"Bearer {token}")]), client, send)
    assert sent.messages[-1]["code"] == 1008
    assert received[-1] == {"type": "websocket.disconnect", "code": 1008}
    assert all(m["type"] == "websocket.receive" for m in received[:-1])


STRIPE = "sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc"


async def test_the_apps_own_handshake_denial_is_redacted_and_carries_the_request_id() -> None:
    async def refuse(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        body = f'{{"error": "quota", "debug_key": "{STRIPE}"}}'.encode()
        await send(
            {
                "type": "websocket.http.response.start",
                "status": 403,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "websocket.http.response.body", "body": body})

    config = {**OPEN, "redact": {"enabled": True}}
    app = SecurityMiddleware(refuse, config)
    sent = Sender()
    scope = ws_scope(extensions={"websocket.http.response": {}})
    with anyio.fail_after(5):
        await app(scope, ScriptedClient(), sent)
    assert [m["type"] for m in sent.messages] == [
        "websocket.http.response.start",
        "websocket.http.response.body",
    ]
    assert sent.status == 403
    assert sent.header("x-request-id")
    assert STRIPE not in sent.body.decode()
    assert b"[REDACTED:stripe_secret_key]" in sent.body
    assert sent.header("content-length") == str(len(sent.body))


async def test_an_accepted_session_carries_the_request_id() -> None:
    app = SecurityMiddleware(Recorder(), OPEN)
    client = ScriptedClient({"type": "websocket.disconnect", "code": 1000})
    sent = Sender()
    with anyio.fail_after(5):
        await app(ws_scope(), client, sent)
    accept = sent.messages[0]
    assert accept["type"] == "websocket.accept"
    assert any(name == b"x-request-id" for name, _ in accept.get("headers", []))


async def test_an_app_refusal_secmw_cannot_scan_is_audited_as_such() -> None:
    async def refuse(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        headers = [(b"content-type", b"application/json"), (b"content-encoding", b"gzip")]
        await send({"type": "websocket.http.response.start", "status": 403, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": b"\x1f\x8b..."})

    audit = AuditCapture()
    app = SecurityMiddleware(refuse, {**OPEN, "redact": {"enabled": True}}, audit=audit)
    sent = Sender()
    with anyio.fail_after(5):
        await app(ws_scope(extensions={"websocket.http.response": {}}), ScriptedClient(), sent)
    assert sent.status == 502
    assert (audit.last.name, audit.last.status) == ("secret_redaction_fail", 502)


async def test_a_failing_message_limiter_fails_its_stage_not_the_app() -> None:
    class Broken:
        async def hit(self, ctx: RequestContext) -> RateDecision:
            return RateDecision(True)

        async def hit_message(
            self, ctx: RequestContext, message: Mapping[str, Any]
        ) -> RateDecision:
            raise RuntimeError("counter lost")

    app_inner, audit = Recorder(), AuditCapture()
    app = SecurityMiddleware(app_inner, OPEN, rate_limiter=Broken(), audit=audit)
    sent = Sender()
    with anyio.fail_after(5):
        await app(ws_scope(), ScriptedClient({"type": "websocket.receive", "text": "hi"}), sent)
    assert not [m for m in app_inner.received if m.get("text") == "hi"]
    assert sent.messages[-1]["type"] == "websocket.close"
    assert audit.named("sys_error")[0].reason == "throttle stage failed: RuntimeError"
    assert not audit.named("app_error")


async def test_a_shared_message_tier_refusal_is_not_the_callers_denial() -> None:
    from tests.ratelimit_support import HeaderAuthenticator

    config = {
        "auth": {"allow_anonymous": True},
        "anomaly": {"enabled": True, "repeated_denials": {"threshold": 1, "window": 300}},
        "ratelimit": {
            "tiers": [{"name": "msgs", "key": "global", "rate": "1/hour", "applies_to": "messages"}]
        },
    }
    audit = AuditCapture()
    app = SecurityMiddleware(Recorder(), config, authenticator=HeaderAuthenticator(), audit=audit)
    frames = [{"type": "websocket.receive", "text": str(i)} for i in range(2)]
    with anyio.fail_after(5):
        await app(ws_scope(headers=[("x-user", "bob")]), ScriptedClient(*frames), Sender())
    assert audit.named("excess_rate_limit_exceeded")
    assert not [event for event in audit.events if event.name.startswith("anomaly_")]
