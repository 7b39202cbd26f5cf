"""The gateway in process in front of a real upstream on 127.0.0.1.

Every test ends by checking that the upstream never saw a client credential.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import httpx
import pytest

from secmw.config import load_config
from secmw.proxy.build import Gateway, build_gateway
from secmw.testing import AuditCapture, TokenIssuer
from tests.gateway_support import (
    SECRET,
    EchoUpstream,
    FaultServer,
    HeldReceiver,
    assert_no_client_secrets,
    client_headers,
    gateway_config,
    serve,
)
from tests.support import DenyPrefix, MarkerRedactor, Sender, http_scope

pytestmark = pytest.mark.anyio

ISSUER = TokenIssuer()
TOKEN = ISSUER.mint("alice", scopes=["read"])


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[EchoUpstream, str]]:
    echo = EchoUpstream()
    with serve(echo) as url:
        yield echo, url


@pytest.fixture(autouse=True)
def _never_leaks(upstream: tuple[EchoUpstream, str]) -> Iterator[None]:
    yield
    assert_no_client_secrets(upstream[0], TOKEN)


def build(targets: list[str], audit: AuditCapture | None = None, **options: Any) -> Gateway:
    components = options.pop("components", {})
    config = load_config(gateway_config(targets, ISSUER, **options))
    return build_gateway(config, audit=audit or AuditCapture(), **components)


@contextlib.asynccontextmanager
async def client(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=gateway), base_url="http://gateway.test"
        ) as http:
            yield http
    finally:
        await gateway.proxy.aclose()


async def test_forwards_the_request_and_strips_every_client_credential(
    upstream: tuple[EchoUpstream, str],
) -> None:
    audit = AuditCapture()
    gateway = build(
        [upstream[1] + "/base"],
        audit,
        upstream={"headers": {"authorization": "Bearer upstream-own-token"}},
    )
    async with client(gateway) as http:
        response = await http.post(
            "/echo?q=1",
            content=b"hello",
            headers=[
                *client_headers(TOKEN),
                ("x-request-id", "req-1"),
                ("connection", "x-hop"),
                ("x-hop", "1"),
            ],
        )
    assert response.status_code == 200
    seen = response.json()
    assert seen["path"] == "/base/echo"
    assert seen["query"] == "q=1"
    assert seen["method"] == "POST"
    assert seen["body_size"] == 5
    headers = seen["headers"]
    assert headers["authorization"] == "Bearer upstream-own-token"
    assert headers["x-forwarded-for"] == "127.0.0.1"
    assert headers["x-request-id"] == "req-1"
    assert "x-hop" not in headers
    assert "x-tenant-secret" not in headers
    assert response.headers["x-request-id"] == "req-1"
    event = audit.named("authz_allow")[0]
    assert event.subject == "alice"
    assert event.status == 200
    assert event.latency_ms is not None and event.latency_ms > 0
    assert event.details["upstream"] == "u"
    assert event.details["outcome"] == "ok"
    assert event.details["upstream_status"] == 200
    assert event.details["upstream_ms"] > 0
    assert TOKEN not in json.dumps([e.to_dict() for e in audit.events])


async def test_unauthenticated_and_denied_requests_never_reach_the_upstream(
    upstream: tuple[EchoUpstream, str],
) -> None:
    echo, url = upstream
    before = len(echo.seen)
    async with client(build([url])) as http:
        anonymous = await http.get("/echo")
        bad_token = await http.get("/echo", headers={"authorization": "Bearer nope"})
    async with client(build([url], components={"policy": DenyPrefix("/admin")})) as http:
        denied = await http.get("/admin/x", headers=client_headers(TOKEN))
    assert bad_token.status_code == 401
    assert anonymous.status_code == 401
    assert denied.status_code == 403
    assert len(echo.seen) == before


async def test_streams_a_chunked_upload_and_an_event_stream_with_redaction(
    upstream: tuple[EchoUpstream, str],
) -> None:
    gateway = build([upstream[1]], components={"redactor": MarkerRedactor(SECRET)})
    scope = http_scope(
        "/upload",
        method="PUT",
        headers=[*client_headers(TOKEN), ("transfer-encoding", "chunked"), ("host", "gw")],
    )
    sender = Sender()
    await gateway(scope, HeldReceiver(b"a" * 1000, b"b" * 1000, b"c" * 5), sender)
    assert sender.status == 200
    seen = json.loads(sender.body)
    assert seen["body_size"] == 2005
    assert seen["headers"]["transfer-encoding"] == "chunked"
    assert "content-length" not in seen["headers"]

    sender = Sender()
    await gateway(http_scope("/sse", headers=client_headers(TOKEN)), HeldReceiver(), sender)
    await gateway.proxy.aclose()
    assert sender.status == 200
    assert sender.header("content-type") == "text/event-stream"
    events = [chunk for chunk in sender.body_chunks if chunk]
    assert len(events) >= 3  # relayed as they came, not buffered
    assert SECRET.encode() not in sender.body
    assert sender.body.count(b"[REDACTED]") == 3


async def test_json_secret_is_redacted_with_a_fixed_length(
    upstream: tuple[EchoUpstream, str],
) -> None:
    gateway = build([upstream[1]], components={"redactor": MarkerRedactor(SECRET)})
    async with client(gateway) as http:
        response = await http.get("/secret", headers=client_headers(TOKEN))
    assert response.json() == {"token": "[REDACTED]"}
    assert response.headers["content-length"] == str(len(response.content))


async def test_absolute_redirects_to_the_upstream_come_back_as_gateway_paths(
    upstream: tuple[EchoUpstream, str],
) -> None:
    gateway = build(
        [upstream[1]],
        routes=[{"prefix": "/api", "upstream": "u", "strip_prefix": True}],
    )
    async with client(gateway) as http:
        response = await http.get("/api/redirect", headers=client_headers(TOKEN))
        missing = await http.get("/elsewhere", headers=client_headers(TOKEN))
        head = await http.head("/api/echo", headers=client_headers(TOKEN))
    assert response.status_code == 307
    assert response.headers["location"] == "/api/echo"
    assert missing.status_code == 404
    assert head.status_code == 200
    assert int(head.headers["content-length"]) > 0
    assert head.content == b""
    assert missing.headers["content-type"] == "application/problem+json"


async def test_upstream_error_statuses_pass_through_and_count_as_failures(
    upstream: tuple[EchoUpstream, str],
) -> None:
    gateway = build([upstream[1]])
    async with client(gateway) as http:
        response = await http.get("/status/503", headers=client_headers(TOKEN))
        not_found = await http.get("/status/404", headers=client_headers(TOKEN))
    assert response.status_code == 503
    assert not_found.status_code == 404
    (breaker,) = list(gateway.registry)
    assert breaker.snapshot().failures == 1
    assert breaker.snapshot().calls == 2


async def test_idempotent_requests_retry_on_another_target(
    upstream: tuple[EchoUpstream, str],
) -> None:
    audit = AuditCapture()
    with FaultServer("reset") as broken:
        gateway = build(
            [broken.url, upstream[1]],
            audit,
            upstream={"retry": {"attempts": 1, "backoff": 0.01}},
        )
        get = Sender()
        await gateway(http_scope("/echo", headers=client_headers(TOKEN)), HeldReceiver(), get)
        statuses = []
        for _ in range(2):
            post = Sender()
            scope = http_scope(
                "/echo", method="POST", headers=[*client_headers(TOKEN), ("content-length", "1")]
            )
            await gateway(scope, HeldReceiver(b"x"), post)
            statuses.append(post.status)
        await gateway.proxy.aclose()
    assert get.status == 200
    attempts = [e.details["attempts"] for e in audit.named("authz_allow")]
    assert attempts[0] == 2  # GET: reset by the first target, served by the second
    # POST is never retried: one of the two went to the broken target.
    assert sorted(statuses) == [200, 502]


async def test_health_endpoints_report_states_without_secrets(
    upstream: tuple[EchoUpstream, str],
) -> None:
    gateway = build(
        [upstream[1]],
        health={"liveness_path": "/healthz", "readiness_path": "/readyz"},
        breaker={"minimum_calls": 1, "window_size": 1, "open_duration": 60},
        upstream={"headers": {"authorization": "Bearer upstream-own-token"}},
    )
    async with client(gateway) as http:
        live = await http.get("/healthz")
        ready = await http.get("/readyz")
        await http.get("/status/500", headers=client_headers(TOKEN))
        not_ready = await http.get("/readyz")
        head = await http.head("/readyz")
    assert live.status_code == 200
    assert live.json() == {"status": "ok"}
    assert ready.status_code == 200
    assert ready.json()["upstreams"]["u"] == {"status": "ok", "breakers": ["closed"]}
    assert not_ready.status_code == 503
    body = not_ready.json()
    assert body["status"] == "not_ready"
    assert body["upstreams"]["u"]["breakers"] == ["open"]
    assert "upstream-own-token" not in not_ready.text
    assert "127.0.0.1" not in not_ready.text
    assert head.status_code == 503
    assert head.content == b""


def test_websockets_are_forwarded_without_client_credentials(
    upstream: tuple[EchoUpstream, str],
) -> None:
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    audit = AuditCapture()
    gateway = build(
        [upstream[1]],
        audit,
        upstream={"headers": {"authorization": "Bearer upstream-own-token"}},
    )
    seen = len(upstream[0].seen)
    with serve(gateway, lifespan="on") as url:
        ws_url = url.replace("http://", "ws://") + "/ws"
        with connect(ws_url, additional_headers=dict(client_headers(TOKEN))) as ws:
            ws.send("ping")
            assert ws.recv(timeout=5) == "echo:ping"
        with pytest.raises(InvalidStatus) as refused:
            connect(ws_url, open_timeout=5)
    assert refused.value.response.status_code == 401
    forwarded = upstream[0].seen[seen]
    assert forwarded["authorization"] == "Bearer upstream-own-token"
    assert len(upstream[0].seen) == seen + 1
    session = [e for e in audit.events if e.transport == "websocket" and e.status == 101]
    assert session and session[0].details["outcome"] == "ok"


def test_websocket_to_an_open_circuit_is_refused_without_touching_upstream() -> None:
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    with FaultServer("reset") as broken:
        gateway = build(
            [broken.url], breaker={"minimum_calls": 1, "window_size": 1, "open_duration": 60}
        )
        with serve(gateway, lifespan="on") as url:
            ws_url = url.replace("http://", "ws://") + "/ws"
            for _ in range(2):
                with pytest.raises(InvalidStatus):
                    connect(ws_url, additional_headers=dict(client_headers(TOKEN)), open_timeout=5)
            connections = broken.connections
            with pytest.raises(InvalidStatus):
                connect(ws_url, additional_headers=dict(client_headers(TOKEN)), open_timeout=5)
            assert broken.connections == connections
    assert gateway.registry.all_open()


TOOL_RULES = {
    "rules": [{"id": "tools", "effect": "allow", "when": {"tools": ["search"]}}],
}
UNLESS_TOOL = {
    "rules": [
        {"id": "mcp", "effect": "allow", "when": {"paths": ["/mcp"]}, "unless": {"tools": ["rm"]}}
    ],
}


@pytest.mark.parametrize(
    ("sections", "websockets", "listed"),
    [
        pytest.param({"redact": {"enabled": True}}, True, True, id="redaction"),
        pytest.param({"inspect": {}}, True, True, id="inspection"),
        pytest.param({"policy": TOOL_RULES}, True, True, id="tool-rules"),
        pytest.param({"policy": UNLESS_TOOL}, True, True, id="tool-in-unless"),
        pytest.param({"redact": {"enabled": True}}, False, False, id="websockets-off"),
        pytest.param({}, True, False, id="nothing-reads-content"),
    ],
)
def test_websockets_beside_content_checks_are_a_listed_fail_open(
    sections: dict[str, Any], websockets: bool, listed: bool
) -> None:
    # Relayed websocket messages are not redacted, inspected or judged by tool rules.
    config = gateway_config(["http://127.0.0.1:9"], websockets=websockets) | sections
    if "policy" in sections:
        config["auth"] = {"jwt": ISSUER.jwt_config()}
    gateway = build_gateway(load_config(config), audit=AuditCapture())
    assert ("gateway.websockets" in gateway.pipeline.fail_open) is listed


def test_a_redactor_given_in_code_counts_for_the_websockets_listing_too() -> None:
    config = load_config(gateway_config(["http://127.0.0.1:9"]))
    gateway = build_gateway(config, audit=AuditCapture(), redactor=MarkerRedactor())
    assert "gateway.websockets" in gateway.pipeline.fail_open


class WebSocketClient:
    """A scripted websocket client for the raw harness: sends, then waits for replies."""

    def __init__(self, *texts: str, code: int = 1000) -> None:
        self.code = code  # the close code the client leaves with
        self.incoming: list[dict[str, Any]] = [{"type": "websocket.connect"}]
        self.incoming += [{"type": "websocket.receive", "text": text} for text in texts]
        self.sent: list[dict[str, Any]] = []
        self.replies = 0
        self.expected = len(texts)

    async def receive(self) -> dict[str, Any]:
        if self.incoming:
            return self.incoming.pop(0)
        import anyio

        with anyio.fail_after(5):
            while self.replies < self.expected:
                await anyio.sleep(0.01)
        return {"type": "websocket.disconnect", "code": self.code}

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)
        if message["type"] == "websocket.send":
            self.replies += 1


async def test_websocket_forwarding_on_both_backends(upstream: tuple[EchoUpstream, str]) -> None:
    from tests.support import ws_scope

    audit = AuditCapture()
    gateway = build([upstream[1]], audit)
    client = WebSocketClient("one", "two")
    await gateway(ws_scope("/ws", headers=client_headers(TOKEN)), client.receive, client.send)
    await gateway.proxy.aclose()
    kinds = [m["type"] for m in client.sent]
    assert kinds[0] == "websocket.accept"
    assert [m.get("text") for m in client.sent if m["type"] == "websocket.send"] == [
        "echo:one",
        "echo:two",
    ]
    assert kinds[-1] == "websocket.close"
    event = audit.events[-1]
    assert event.transport == "websocket"
    assert event.details["outcome"] == "ok"


@pytest.mark.parametrize(
    ("client_code", "upstream_code"),
    [
        pytest.param(1000, 1000, id="normal"),
        pytest.param(1005, 1000, id="close-without-code"),
        pytest.param(1006, 1000, id="dropped-connection"),
        pytest.param(1015, 1000, id="tls-failure"),
        pytest.param(4000, 4000, id="application-code"),
    ],
)
async def test_a_client_leaving_with_any_code_closes_the_upstream_cleanly(
    upstream: tuple[EchoUpstream, str], client_code: int, upstream_code: int
) -> None:
    from tests.support import ws_scope

    audit = AuditCapture()
    gateway = build([upstream[1]], audit)
    client = WebSocketClient("one", code=client_code)
    seen, closes = len(upstream[0].seen), len(upstream[0].closes)
    headers = [*client_headers(TOKEN), ("origin", "https://app.example")]
    with anyio.fail_after(10):
        await gateway(ws_scope("/ws", headers=headers), client.receive, client.send)
        while len(upstream[0].closes) == closes:  # the upstream server reports it after us
            await anyio.sleep(0.01)
    await gateway.proxy.aclose()
    # Codes that only describe the client's side (RFC 6455 section 7.4) are not sent on.
    assert upstream[0].closes[closes] == upstream_code
    # The upstream's own cross-site check needs the client's Origin.
    assert upstream[0].seen[seen]["origin"] == "https://app.example"
    event = audit.events[-1]
    assert (event.name, event.status, event.details["outcome"]) == ("authz_allow", 101, "ok")


async def test_websocket_to_a_dead_upstream_is_closed_and_counted() -> None:
    from tests.support import ws_scope

    with FaultServer("reset") as broken:
        gateway = build([broken.url])
        client = WebSocketClient()
        await gateway(ws_scope("/ws", headers=client_headers(TOKEN)), client.receive, client.send)
        await gateway.proxy.aclose()
    assert client.sent == [{"type": "websocket.close", "code": 1011}]
    (breaker,) = list(gateway.registry)
    assert breaker.snapshot().failures == 1


@pytest.mark.parametrize(
    ("path", "raw_path"),
    [
        ("/a/../../tenant-b/secret", b"/a/../../tenant-b/secret"),
        ("/a/..\\..\\tenant-b\\secret", b"/a/..\\..\\tenant-b\\secret"),
        ("/a/../../tenant-b/secret", b"/a/%2e%2e/%2e%2e/tenant-b/secret"),
    ],
)
async def test_a_reverse_proxy_on_its_own_refuses_a_path_with_no_canonical_form(
    upstream: tuple[EchoUpstream, str], path: str, raw_path: bytes
) -> None:
    from secmw.breaker import Breaker
    from secmw.proxy import EgressGuard, ReverseProxy, Route, Target, UpstreamPool

    pool = UpstreamPool("t", [Target(httpx.URL(upstream[1] + "/tenant-a"), Breaker("t"))])
    proxy = ReverseProxy(
        [Route("/a", pool, strip_prefix=True)],
        guard=EgressGuard(allow_networks=["127.0.0.0/8"]),
    )
    before = len(upstream[0].seen)
    refused, fine = Sender(), Sender()
    await proxy(http_scope(path, raw_path=raw_path), HeldReceiver(), refused)
    await proxy(http_scope("/a/b/../x", raw_path=b"/a/b/../x"), HeldReceiver(), fine)
    await proxy.aclose()
    assert refused.status == 400
    assert len(upstream[0].seen) == before + 1  # only the second one was forwarded
    assert fine.json()["path"] == "/tenant-a/x"


async def test_a_cancelled_websocket_trial_gives_its_half_open_permit_back() -> None:
    from tests.support import ws_scope

    with FaultServer("hang") as silent:
        gateway = build(
            [silent.url],
            breaker={
                "minimum_calls": 1,
                "window_size": 1,
                "open_duration": 0.1,
                "half_open_calls": 1,
            },
        )
        (breaker,) = list(gateway.registry)
        breaker.record(breaker.acquire(), failed=True, duration=0.01)  # opens the circuit
        await anyio.sleep(0.15)
        client = WebSocketClient()
        with anyio.move_on_after(0.3):  # the handshake hangs: cancelled (shutdown, say)
            await gateway(
                ws_scope("/ws", headers=client_headers(TOKEN)), client.receive, client.send
            )
        await gateway.proxy.aclose()
    # The only trial permit came back: the next call is admitted as a trial.
    breaker.release(breaker.acquire())


async def test_a_websocket_handshake_the_upstream_refuses_is_not_a_failure() -> None:
    from tests.support import ws_scope

    with FaultServer("forbid") as refusing:
        gateway = build([refusing.url], breaker={"minimum_calls": 2, "window_size": 4})
        for _ in range(3):
            client = WebSocketClient()
            scope = ws_scope("/ws", headers=client_headers(TOKEN))
            await gateway(scope, client.receive, client.send)
            assert client.sent == [{"type": "websocket.close", "code": 1008}]
        await gateway.proxy.aclose()
    (breaker,) = list(gateway.registry)
    snapshot = breaker.snapshot()
    assert (snapshot.state.value, snapshot.failures) == ("closed", 0)


@pytest.mark.parametrize("offered", ["c/d", "a b"])
async def test_a_subprotocol_that_is_no_token_is_refused_before_the_upstream(offered: str) -> None:
    from tests.support import ws_scope

    audit = AuditCapture()
    # An upstream that accepts the first subprotocol offered, as apps on wsproto
    # servers (hypercorn, uvicorn's) may: its answer would fail our client's checks.
    with FaultServer("echoproto") as upstream:
        gateway = build([upstream.url], audit, breaker={"minimum_calls": 2, "window_size": 4})
        for _ in range(3):
            client = WebSocketClient()
            scope = ws_scope(
                "/ws", headers=[*client_headers(TOKEN), ("sec-websocket-protocol", offered)]
            )
            scope["subprotocols"] = [offered]
            await gateway(scope, client.receive, client.send)
            assert client.sent == [{"type": "websocket.close", "code": 1008}]
        await gateway.proxy.aclose()
        assert upstream.connections == 0
    (breaker,) = list(gateway.registry)
    snapshot = breaker.snapshot()
    assert (snapshot.state.value, snapshot.calls, snapshot.failures) == ("closed", 0, 0)
    event = audit.events[-1]
    assert (event.name, event.details["outcome"]) == ("input_validation_fail", "bad_request")


class Listener(WebSocketClient):
    """A client that sends its messages, then stays connected: the upstream ends the session."""

    async def receive(self) -> dict[str, Any]:
        if self.incoming:
            return self.incoming.pop(0)
        await anyio.sleep(5)
        return {"type": "websocket.disconnect", "code": 1000}


async def test_a_text_message_that_is_not_utf8_closes_the_session_with_1007() -> None:
    from tests.support import ws_scope

    with FaultServer("badutf8") as upstream:
        gateway = build([upstream.url])
        client = Listener()
        with anyio.fail_after(4):
            await gateway(
                ws_scope("/ws", headers=client_headers(TOKEN)), client.receive, client.send
            )
        await gateway.proxy.aclose()
    assert [{k: v for k, v in m.items() if k != "headers"} for m in client.sent] == [
        {"type": "websocket.accept"},
        {"type": "websocket.close", "code": 1007},
    ]
    assert upstream.received[:1] == b"\x88"  # the upstream gets a close frame too


async def test_an_upstream_gone_without_a_closing_handshake_closes_the_client_with_1011() -> None:
    from tests.support import ws_scope

    audit = AuditCapture()
    with FaultServer("vanish") as upstream:
        gateway = build([upstream.url], audit)
        client = Listener("hello")
        with anyio.fail_after(4):
            await gateway(
                ws_scope("/ws", headers=client_headers(TOKEN)), client.receive, client.send
            )
        await gateway.proxy.aclose()
    assert upstream.received[:1] == b"\x81"  # the message reached it before the reset
    # Not a normal closure: the client learns the session broke on the far side.
    assert [{k: v for k, v in m.items() if k != "headers"} for m in client.sent] == [
        {"type": "websocket.accept"},
        {"type": "websocket.close", "code": 1011},
    ]
    event = audit.events[-1]
    assert (event.name, event.status, event.details["outcome"]) == (
        "authz_allow",
        101,
        "upstream_lost",
    )


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(b"/api/echo", "/echo", id="plain"),
        pytest.param(b"/api/./echo", "/echo", id="dot-segment"),
        pytest.param(b"/public/../api/echo", "/echo", id="climbs-into-the-route"),
        pytest.param(b"/api//echo", "/echo", id="empty-segment"),
        pytest.param(b"/%61pi/echo", "/echo", id="encoded-prefix"),
        pytest.param(b"/api/a%20b", "/a b", id="encoded-space-kept"),
    ],
)
async def test_the_upstream_gets_the_path_the_policy_judged(
    upstream: tuple[EchoUpstream, str], raw: bytes, expected: str
) -> None:
    gateway = build(
        [upstream[1]],
        routes=[
            {"prefix": "/api", "upstream": "u", "strip_prefix": True},
            {"prefix": "/public", "upstream": "u"},
        ],
    )
    from urllib.parse import unquote

    scope = http_scope(unquote(raw.decode()), raw_path=raw, headers=client_headers(TOKEN))
    sender = Sender()
    await gateway(scope, HeldReceiver(), sender)
    await gateway.proxy.aclose()
    assert sender.status == 200, sender.body
    assert sender.json()["path"] == expected


async def test_an_api_key_in_a_configured_custom_header_never_reaches_the_upstream(
    upstream: tuple[EchoUpstream, str], tmp_path: Any
) -> None:
    from secmw.auth.apikey_store import FileAPIKeyStore

    path = tmp_path / "keys.json"
    _, key = FileAPIKeyStore(path, create=True).create("svc")
    config = gateway_config([upstream[1]])
    config["auth"] = {"api_key": {"file": str(path), "header": "X-Tenant-Key"}}
    gateway = build_gateway(load_config(config), audit=AuditCapture())
    async with client(gateway) as http:
        response = await http.get("/echo", headers={"x-tenant-key": key})
    assert response.status_code == 200
    assert "x-tenant-key" not in response.json()["headers"]
    assert key not in upstream[0].seen[-1][":all"]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        pytest.param("user-agent", "x\x01y", id="control-byte"),
        pytest.param("x-note", "a\x7fb", id="delete"),
        pytest.param("x-note", "a\x00b", id="nul"),
    ],
)
async def test_a_websocket_header_the_upstream_request_cannot_carry_is_the_clients_fault(
    upstream: tuple[EchoUpstream, str], name: str, value: str
) -> None:
    from tests.support import ws_scope

    audit = AuditCapture()
    gateway = build([upstream[1]], audit, breaker={"minimum_calls": 2, "window_size": 4})
    before = len(upstream[0].seen)
    closes = []
    for _ in range(3):
        client = WebSocketClient()
        headers = [*client_headers(TOKEN), (name, value)]
        await gateway(ws_scope("/ws", headers=headers), client.receive, client.send)
        closes.append(client.sent)
    fine = WebSocketClient("hi")
    await gateway(ws_scope("/ws", headers=client_headers(TOKEN)), fine.receive, fine.send)
    await gateway.proxy.aclose()
    assert closes == [[{"type": "websocket.close", "code": 1008}]] * 3
    assert len(upstream[0].seen) == before + 1  # only the fine session reached it
    refused = [e for e in audit.events if e.transport == "websocket"][:3]
    assert {(e.name, e.details["outcome"]) for e in refused} == {
        ("input_validation_fail", "bad_request")
    }
    (breaker,) = list(gateway.registry)
    snapshot = breaker.snapshot()
    # Never the upstream's failure: the breaker stays closed for everyone else.
    assert (snapshot.state.value, snapshot.failures) == ("closed", 0)
    assert fine.sent[0]["type"] == "websocket.accept"


async def test_websockets_pass_an_allow_list_written_as_the_docs_write_it(
    upstream: tuple[EchoUpstream, str],
) -> None:
    from tests.support import ws_scope

    audit = AuditCapture()
    egress = {"allow": [upstream[1]], "allow_networks": ["127.0.0.0/8"]}  # http://, no ws://
    gateway = build([upstream[1]], audit, egress=egress)
    client = WebSocketClient("hi")
    await gateway(ws_scope("/ws", headers=client_headers(TOKEN)), client.receive, client.send)
    await gateway.proxy.aclose()
    assert client.sent[0]["type"] == "websocket.accept"
    assert [m.get("text") for m in client.sent if m["type"] == "websocket.send"] == ["echo:hi"]
    assert audit.events[-1].details["outcome"] == "ok"


@pytest.mark.parametrize(
    ("entry", "accepted"),
    [
        pytest.param("http://127.0.0.1:{port}", True, id="http-entry"),
        pytest.param("ws://127.0.0.1:{port}", True, id="ws-entry"),
        pytest.param("http://127.0.0.1:*", True, id="any-port"),
        pytest.param("https://127.0.0.1:{port}", False, id="tls-entry-for-a-plain-target"),
        pytest.param("wss://127.0.0.1:{port}", False, id="wss-entry-for-a-plain-target"),
        pytest.param("http://127.0.0.1:1", False, id="other-port"),
    ],
)
async def test_a_websocket_is_checked_against_the_allow_list_as_its_target_url(
    upstream: tuple[EchoUpstream, str], entry: str, accepted: bool
) -> None:
    from secmw.proxy import EgressGuard
    from tests.support import ws_scope

    port = upstream[1].rsplit(":", 1)[1]
    audit = AuditCapture()
    gateway = build([upstream[1]], audit)
    # Set after the build: the configuration refuses an allow-list its targets miss.
    gateway.proxy.guard = EgressGuard(
        allow=[entry.format(port=port)], allow_networks=["127.0.0.0/8"]
    )
    client = WebSocketClient("hi")
    await gateway(ws_scope("/ws", headers=client_headers(TOKEN)), client.receive, client.send)
    await gateway.proxy.aclose()
    if accepted:
        assert client.sent[0]["type"] == "websocket.accept"
        assert audit.events[-1].details["outcome"] == "ok"
    else:
        assert client.sent == [{"type": "websocket.close", "code": 1011}]
        assert audit.events[-1].details["outcome"] == "egress_denied"
