"""Tiers through the middleware: plans, global, principal+tool, shadow, exemptions, recovery."""

from __future__ import annotations

import json
from typing import Any

import pytest

from secmw import SecurityMiddleware
from secmw.ratelimit import QUOTA_EXCEEDED
from secmw.testing import AuditCapture
from tests.ratelimit_support import FakeClock, HeaderAuthenticator, limiter
from tests.support import EchoApp, Receiver, call, http_scope, ws_scope

pytestmark = pytest.mark.anyio

PLANS = {"name": "user", "key": "principal", "rate": "5/minute", "plans": {"paid": "10/minute"}}


def app_with(*tiers: dict[str, Any], clock: FakeClock, headers: str = "draft") -> Any:
    audit = AuditCapture()
    app = SecurityMiddleware(
        EchoApp(),
        {"auth": {"allow_anonymous": True}},
        authenticator=HeaderAuthenticator(),
        rate_limiter=limiter(*tiers, clock=clock, headers=headers),
        audit=audit,
    )
    return app, audit


def get(path: str = "/api", user: str | None = None, **kwargs: Any) -> dict[str, Any]:
    headers = [("x-user", user)] if user else []
    return http_scope(path, headers=headers, **kwargs)


async def statuses(app: Any, count: int, **kwargs: Any) -> list[int]:
    return [(await call(app, get(**kwargs))).status for _ in range(count)]


async def test_free_blocked_after_5_paid_after_10_both_recover() -> None:
    clock = FakeClock()
    app, audit = app_with(PLANS, clock=clock)
    assert await statuses(app, 6, user="alice;free") == [200] * 5 + [429]
    assert await statuses(app, 11, user="bob;paid") == [200] * 10 + [429]
    assert await statuses(app, 1, user="carol;gold") == [200]  # unknown plan: the default
    refused = await call(app, get(user="alice;free"))
    assert refused.status == 429
    assert refused.header("retry-after") == "60"
    assert refused.header("content-type") == "application/problem+json"
    body = refused.json()
    assert body["type"] == QUOTA_EXCEEDED and body["violated-policies"] == ["user"]
    assert refused.header("ratelimit") == '"user";r=0;t=60'
    assert audit.names().count("excess_rate_limit_exceeded") == 3
    clock.advance(60)
    assert await statuses(app, 1, user="alice;free") == [200]
    assert await statuses(app, 1, user="bob;paid") == [200]


async def test_headers_describe_every_tier_and_the_most_restrictive() -> None:
    clock = FakeClock()
    app, _ = app_with(
        {"name": "burst", "key": "principal", "rate": "3/second"},
        {"name": "daily", "key": "principal", "rate": "100/day"},
        clock=clock,
    )
    first = await call(app, get(user="alice"))
    assert first.header("ratelimit-policy") == '"burst";q=3;w=1, "daily";q=100;w=86400'
    assert first.header("ratelimit") == '"burst";r=2;t=1'
    assert first.header("x-ratelimit-limit") is None


async def test_the_most_restrictive_tier_is_named_wherever_it_is_listed() -> None:
    clock = FakeClock()
    app, _ = app_with(
        {"name": "daily", "key": "principal", "rate": "100/day"},
        {"name": "minute", "key": "principal", "rate": "5/minute"},
        {"name": "hourly", "key": "principal", "rate": "5/hour"},
        {"name": "burst", "key": "principal", "rate": "3/second"},
        clock=clock,
    )
    first = await call(app, get(user="alice"))
    assert first.header("ratelimit") == '"burst";r=2;t=1'
    for _ in range(2):
        await call(app, get(user="alice"))
    clock.advance(1)
    # burst is fresh again (r=2); minute and hourly both have one left: of the
    # two, the one that resets last describes the client's position.
    fourth = await call(app, get(user="alice"))
    assert fourth.header("ratelimit") == '"hourly";r=1;t=3599'


async def test_legacy_headers_on_request() -> None:
    clock = FakeClock(1000.0)
    app, _ = app_with({"name": "b", "key": "ip", "rate": "2/minute"}, clock=clock, headers="legacy")
    sent = await call(app, get())
    assert sent.header("ratelimit") is None
    assert (sent.header("x-ratelimit-limit"), sent.header("x-ratelimit-remaining")) == ("2", "1")
    assert sent.header("x-ratelimit-reset") == "1060"


async def test_global_tier_counts_everyone_together() -> None:
    clock = FakeClock()
    app, _ = app_with(
        {"name": "all", "key": "global", "rate": "3/minute"},
        PLANS,
        clock=clock,
    )
    assert await statuses(app, 2, user="a") == [200, 200]
    assert await statuses(app, 2, user="b") == [200, 429]
    refused = await call(app, get(user="c"))
    assert refused.json()["violated-policies"] == ["all"]


async def test_refusal_by_one_tier_consumes_nothing_from_the_others() -> None:
    clock = FakeClock()
    app, _ = app_with(
        {"name": "all", "key": "global", "rate": "5/minute"},
        {"name": "user", "key": "principal", "rate": "2/minute"},
        clock=clock,
    )
    assert await statuses(app, 10, user="a") == [200, 200] + [429] * 8
    # The global tier counted only a's two admitted requests.
    assert await statuses(app, 3, user="b") == [200, 200, 429]
    c = [await call(app, get(user="c")) for _ in range(2)]
    assert [r.status for r in c] == [200, 429]
    assert c[0].header("ratelimit") == '"all";r=0;t=60'
    assert c[1].json()["violated-policies"] == ["all"]


def rpc(tool: str, user: str) -> tuple[dict[str, Any], Receiver]:
    body = json.dumps(
        {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool}}
    ).encode()
    scope = get("/mcp", user=user, method="POST")
    scope["headers"].append((b"content-type", b"application/json"))
    return scope, Receiver.body(body)


async def test_principal_plus_tool_counts_each_tool_separately() -> None:
    clock = FakeClock()
    app, _ = app_with(
        {
            "name": "tools",
            "key": "principal+tool",
            "rate": "2/minute",
            "costs": {"tools": {"expensive": 2}},
        },
        clock=clock,
    )
    results = []
    for tool in ["search", "search", "search", "expensive", "expensive"]:
        scope, receive = rpc(tool, "alice")
        results.append((await call(app, scope, receive)).status)
    assert results == [200, 200, 429, 200, 429]
    scope, receive = rpc("search", "bob")
    assert (await call(app, scope, receive)).status == 200
    # A request without a tools/call is not counted by a tool tier.
    assert await statuses(app, 5, user="alice") == [200] * 5


async def test_shadow_tier_reports_and_audits_but_never_blocks() -> None:
    clock = FakeClock()
    app, audit = app_with(
        {"name": "trial", "key": "principal", "rate": "2/minute", "shadow": True},
        clock=clock,
    )
    sent = [await call(app, get(user="alice")) for _ in range(4)]
    assert [s.status for s in sent] == [200] * 4
    assert sent[0].header("ratelimit") is None  # shadow tiers stay out of the headers
    shadow = [e for e in audit.events if e.name == "excess_rate_limit_exceeded"]
    assert len(shadow) == 2
    assert shadow[0].details["shadow"] is True and shadow[0].details["policies"] == ["trial"]
    assert shadow[0].outcome == "success" and shadow[0].subject == "alice"


async def test_exemptions_by_principal_role_and_route() -> None:
    clock = FakeClock()
    app, _ = app_with(
        {
            "name": "user",
            "key": "principal",
            "rate": "1/minute",
            "exempt": {"principals": ["ops"], "roles": ["admin"], "routes": ["/healthz"]},
        },
        clock=clock,
    )
    assert await statuses(app, 3, user="ops") == [200] * 3
    assert await statuses(app, 3, user="eve;;admin") == [200] * 3
    assert await statuses(app, 3, user="bob", path="/healthz") == [200] * 3
    assert await statuses(app, 2, user="bob") == [200, 429]


async def test_ip_key_uses_the_trusted_proxy_client_not_the_raw_header() -> None:
    clock = FakeClock()
    app, _ = app_with({"name": "ip", "key": "ip", "rate": "1/minute"}, clock=clock)
    spoofed = [("x-forwarded-for", f"198.51.100.{i}") for i in range(3)]
    results = [(await call(app, http_scope("/", headers=[h]))).status for h in spoofed]
    assert results == [200, 429, 429]  # no trusted hops: the peer address decides


async def test_an_ipv6_client_counts_as_its_64() -> None:
    clock = FakeClock()
    app, _ = app_with({"name": "ip", "key": "ip", "rate": "2/minute"}, clock=clock)
    rotating = [f"2001:db8:5:6:{n + 1:x}::1" for n in range(4)]  # a new address each time
    results = [(await call(app, http_scope("/", client=(a, 1234)))).status for a in rotating]
    assert results == [200, 200, 429, 429]
    neighbour = await call(app, http_scope("/", client=("2001:db8:5:7::1", 1234)))
    assert neighbour.status == 200


async def test_route_costs_and_anonymous_callers_keyed_by_ip() -> None:
    clock = FakeClock()
    app, _ = app_with(
        {
            "name": "user",
            "key": "principal",
            "rate": "5/minute",
            "costs": {"routes": {"/search": 3, "/bulk/**": 5}},
        },
        clock=clock,
    )
    assert await statuses(app, 2, path="/search") == [200, 429]
    other = http_scope("/bulk/x", client=("192.0.2.1", 1))
    assert [(await call(app, other)).status for _ in range(2)] == [200, 429]


async def test_websocket_handshake_and_messages_are_limited() -> None:
    clock = FakeClock()
    audit = AuditCapture()
    rate = limiter(
        {"name": "handshake", "key": "principal", "rate": "1/minute"},
        {"name": "msgs", "key": "connection", "rate": "2/minute", "applies_to": "messages"},
        clock=clock,
    )
    received: list[Any] = []

    async def ws_app(scope: Any, receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            received.append(message)
            if message["type"] == "websocket.disconnect":
                return

    app = SecurityMiddleware(
        ws_app,
        {"auth": {"allow_anonymous": True}},
        authenticator=HeaderAuthenticator(),
        rate_limiter=rate,
        audit=audit,
    )
    messages = [{"type": "websocket.connect"}] + [
        {"type": "websocket.receive", "text": str(i)} for i in range(3)
    ]
    receiver = Receiver(messages, after={"type": "websocket.disconnect", "code": 1000})
    sent = await call(app, ws_scope(headers=[("x-user", "alice")]), receiver)
    closes = [m for m in sent.messages if m["type"] == "websocket.close"]
    assert closes and closes[0]["code"] == 1008
    assert [m.get("text") for m in received if m["type"] == "websocket.receive"] == ["0", "1"]
    assert received[-1] == {"type": "websocket.disconnect", "code": 1008}
    assert "excess_rate_limit_exceeded" in audit.names()
    second = await call(
        app,
        ws_scope(headers=[("x-user", "alice")]),
        Receiver([{"type": "websocket.connect"}]),
    )
    assert second.messages[0]["type"] == "websocket.close"  # handshake tier: 1/minute


async def test_a_connection_tier_is_per_session_whatever_request_id_the_client_sends() -> None:
    rate = limiter(
        {"name": "msgs", "key": "connection", "rate": "2/minute", "applies_to": "messages"},
        clock=FakeClock(),
    )

    async def ws_app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        while (await receive())["type"] != "websocket.disconnect":
            pass

    app = SecurityMiddleware(
        ws_app, {"auth": {"allow_anonymous": True}}, rate_limiter=rate, audit=AuditCapture()
    )
    headers = [("x-request-id", "victim-conn-1")]  # trusted by default (request_id.trust_incoming)
    for _ in range(3):  # each session has its own two messages
        messages = [{"type": "websocket.connect"}] + [
            {"type": "websocket.receive", "text": str(i)} for i in range(2)
        ]
        receiver = Receiver(messages, after={"type": "websocket.disconnect", "code": 1000})
        sent = await call(app, ws_scope(headers=headers), receiver)
        assert not [m for m in sent.messages if m.get("code") == 1008]


async def test_message_tier_by_principal_spans_connections() -> None:
    clock = FakeClock()
    rate = limiter(
        {"name": "msgs", "key": "principal", "rate": "3/minute", "applies_to": "messages"},
        clock=clock,
    )

    async def ws_app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        while (await receive())["type"] != "websocket.disconnect":
            pass

    app = SecurityMiddleware(
        ws_app,
        {"auth": {"allow_anonymous": True}},
        authenticator=HeaderAuthenticator(),
        rate_limiter=rate,
        audit=AuditCapture(),
    )

    async def session(user: str) -> list[int]:
        receiver = Receiver(
            [{"type": "websocket.connect"}]
            + [{"type": "websocket.receive", "text": "x"} for _ in range(2)],
            after={"type": "websocket.disconnect", "code": 1000},
        )
        sent = await call(app, ws_scope(headers=[("x-user", user)]), receiver)
        return [m["code"] for m in sent.messages if m["type"] == "websocket.close"]

    assert await session("alice") == []  # 2 of alice's 3
    assert await session("alice") == [1008]  # the 4th message overall
    assert await session("bob") == []
    clock.advance(60)
    assert await session("alice") == []
