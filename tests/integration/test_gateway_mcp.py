"""The official MCP SDK, server behind the gateway and client in front, both transports."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.server.mcpserver import MCPServer

from secmw.config import load_config
from secmw.context import RequestContext
from secmw.policy.base import Decision, Effect
from secmw.proxy.build import build_gateway
from secmw.testing import AuditCapture, TokenIssuer
from tests.gateway_support import (
    API_KEY,
    COOKIE,
    SECRET,
    TOKEN_MARK,
    gateway_config,
    serve,
)
from tests.support import MarkerRedactor

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

ISSUER = TokenIssuer()
TOKEN = ISSUER.mint("alice", scopes=["tools"])


class DenyTool:
    """A policy double: authenticated callers may use every tool but ``forbidden``."""

    needs_body = True

    def evaluate(self, ctx: RequestContext) -> Decision:
        if not ctx.principal.is_authenticated:
            return Decision(Effect.DENY, ("test:authn",), "anonymous")
        if "forbidden" in ctx.tools:
            return Decision(Effect.DENY, ("test:deny-tool",), "tool forbidden")
        return Decision(Effect.ALLOW, ("test:allow",), "allowed")


class Recorder:
    """ASGI wrapper recording every request header the MCP server receives."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.headers: list[dict[str, str]] = []
        self.bodies: list[bytes] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.headers.append({k.decode(): v.decode() for k, v in scope["headers"]})

        async def recording() -> Any:
            message = await receive()
            if message["type"] == "http.request":
                self.bodies.append(message.get("body", b""))
            return message

        await self.app(scope, recording, send)


def mcp_server() -> Any:
    server = MCPServer("tools", version="0.1")

    @server.tool()
    def lookup(name: str) -> str:
        """Return a record that holds a secret."""
        return f"record for {name}: api_key={SECRET}"

    @server.tool()
    def forbidden() -> str:
        """Never reachable through the gateway."""
        return "ran"

    return server.streamable_http_app(streamable_http_path="/mcp")


@pytest.fixture(scope="module")
def stack() -> Iterator[tuple[str, Recorder, AuditCapture]]:
    recorder = Recorder(mcp_server())
    audit = AuditCapture()
    with serve(recorder, lifespan="on") as upstream:
        config = load_config(gateway_config([upstream], ISSUER, timeouts={"read": 10}))
        gateway = build_gateway(
            config, audit=audit, policy=DenyTool(), redactor=MarkerRedactor(SECRET)
        )
        with serve(gateway, lifespan="on") as url:
            yield url, recorder, audit


# The SDK's legacy client leaves httpx2's SSE async generators to the garbage
# collector, which trio reports as ResourceWarning: not a gateway matter.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_tool_calls_pass_secrets_are_redacted_denied_tools_fail(
    stack: tuple[str, Recorder, AuditCapture], mode: str
) -> None:
    url, recorder, audit = stack
    headers = {
        "authorization": f"Bearer {TOKEN}",
        "x-api-key": API_KEY,
        "cookie": COOKIE,
    }
    async with (
        httpx2.AsyncClient(headers=headers, timeout=10) as http,
        Client(streamable_http_client(f"{url}/mcp", http_client=http), mode=mode) as client,
    ):
        tools = await client.list_tools()
        assert {tool.name for tool in tools.tools} == {"lookup", "forbidden"}
        result = await client.call_tool("lookup", {"name": "bob"})
        assert not result.is_error
        text = result.content[0].text  # type: ignore[union-attr]
        assert text == "record for bob: api_key=[REDACTED]"
        assert SECRET not in str(result.structured_content)
        denied: Exception | None = None
        try:
            await client.call_tool("forbidden", {})
        except Exception as exc:  # the SDK wraps the refusal in exception groups
            denied = exc
        assert denied is not None
    # The gateway writes the audit line after the reply went out.
    with anyio.fail_after(5):
        while not any(e.tool == "forbidden" for e in audit.events):
            await anyio.sleep(0.01)
    denials = [e for e in audit.events if e.tool == "forbidden"]
    assert denials and all(e.name == "authz_fail" for e in denials)
    assert any(e.tool == "lookup" and e.name == "authz_allow" for e in audit.events)
    assert not any(b'"forbidden"' in body and b"tools/call" in body for body in recorder.bodies)
    assert any(b'"lookup"' in body for body in recorder.bodies)
    for seen in recorder.headers:
        flat = str(seen).lower()
        assert TOKEN.lower() not in flat
        assert API_KEY.lower() not in flat
        assert "cookie" not in seen
        assert TOKEN_MARK.lower() not in flat
    if mode == "legacy":
        assert any(s.get("accept", "").find("text/event-stream") >= 0 for s in recorder.headers)


async def test_anonymous_mcp_client_is_refused(stack: tuple[str, Recorder, AuditCapture]) -> None:
    url, _, _ = stack
    async with httpx2.AsyncClient(timeout=10) as http:
        response = await http.post(
            f"{url}/mcp",
            json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
            headers={"accept": "application/json, text/event-stream"},
        )
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")


LEGACY = {
    "accept": "application/json, text/event-stream",
    "content-type": "application/json",
    "mcp-protocol-version": "2025-11-25",
}
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "test", "version": "1"},
    },
}


async def test_a_legacy_session_is_bound_to_the_principal_that_opened_it(
    stack: tuple[str, Recorder, AuditCapture],
) -> None:
    url, recorder, audit = stack
    alice = {**LEGACY, "authorization": f"Bearer {TOKEN}"}
    # Another user of the same issuer, and alice again with a fresh token.
    bob = {**LEGACY, "authorization": f"Bearer {ISSUER.mint('bob', scopes=['tools'])}"}
    alice_again = {**LEGACY, "authorization": f"Bearer {ISSUER.mint('alice', scopes=['tools'])}"}
    listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
    earlier = len(audit.events)  # the stack is shared by the other tests
    async with httpx2.AsyncClient(timeout=10) as http:
        opened = await http.post(f"{url}/mcp", json=INITIALIZE, headers=alice)
        assert opened.status_code == 200
        session = opened.headers["mcp-session-id"]
        assert session
        mine = {**alice, "mcp-session-id": session}
        done = await http.post(
            f"{url}/mcp",
            json={"jsonrpc": "2.0", "method": "notifications/initialized"},
            headers=mine,
        )
        assert done.status_code == 202
        seen = len(recorder.headers)
        # Bob holds alice's session id: every use of it is answered as an unknown session.
        foreign = {**bob, "mcp-session-id": session}
        posted = await http.post(f"{url}/mcp", json=listing, headers=foreign)
        assert posted.status_code == 404
        assert posted.json()["error"]["code"] < 0  # a JSON-RPC error the SDK client surfaces
        streamed = await http.get(f"{url}/mcp", headers=foreign)
        assert streamed.status_code == 404
        deleted = await http.delete(f"{url}/mcp", headers=foreign)
        assert deleted.status_code == 404
        assert len(recorder.headers) == seen  # none of them reached the server
        # An id nobody opened through this gateway is unknown too (strict, the default).
        made_up = await http.post(
            f"{url}/mcp", json=listing, headers={**alice, "mcp-session-id": "0" * 32}
        )
        assert made_up.status_code == 404
        # Alice, with a refreshed token, still has her session; ending it forgets the id.
        again = await http.post(
            f"{url}/mcp", json=listing, headers={**alice_again, "mcp-session-id": session}
        )
        assert again.status_code == 200
        assert b'"lookup"' in again.content
        ended = await http.delete(f"{url}/mcp", headers=mine)
        assert ended.status_code == 200
        after = await http.post(f"{url}/mcp", json=listing, headers=mine)
        assert after.status_code == 404
    with anyio.fail_after(5):
        while len([e for e in audit.events[earlier:] if e.status == 404]) < 5:
            await anyio.sleep(0.01)
    refusals = [e for e in audit.events[earlier:] if e.reason == "MCP session of another principal"]
    assert len(refusals) == 3
    assert {e.subject for e in refusals} == {"bob"}
    assert {e.name for e in refusals} == {"authz_fail"}
    assert {e.status for e in refusals} == {404}
