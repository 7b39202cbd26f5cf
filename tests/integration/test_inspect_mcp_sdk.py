"""The official MCP SDK (client and server) through SecurityMiddleware with inspection."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.server.mcpserver import MCPServer
from mcp.shared.exceptions import MCPError

from secmw import SecurityMiddleware
from secmw.testing import AuditCapture
from tests.inspect_support import ATTACK

pytestmark = pytest.mark.anyio

BASE = "http://127.0.0.1:8000"


def mcp_app() -> Any:
    server = MCPServer("inspect-test", version="0.1")

    @server.tool()
    def search(query: str) -> str:
        """Search the catalogue."""
        return f"results for {query}"

    return server.streamable_http_app(
        streamable_http_path="/mcp", json_response=True, stateless_http=True
    )


@asynccontextmanager
async def running(app: Any) -> AsyncIterator[httpx2.AsyncClient]:
    """Drive the app's lifespan around an in-memory HTTP client."""
    to_app, app_inbox = anyio.create_memory_object_stream[dict[str, Any]](4)
    app_outbox, from_app = anyio.create_memory_object_stream[dict[str, Any]](4)
    async with to_app, app_inbox, app_outbox, from_app, anyio.create_task_group() as group:
        group.start_soon(
            app,
            {"type": "lifespan", "asgi": {"version": "3.0"}},
            app_inbox.receive,
            app_outbox.send,
        )
        await to_app.send({"type": "lifespan.startup"})
        assert (await from_app.receive())["type"] == "lifespan.startup.complete"
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url=BASE) as http:
            yield http
        await to_app.send({"type": "lifespan.shutdown"})
        assert (await from_app.receive())["type"] == "lifespan.shutdown.complete"


async def test_sdk_tool_call_with_injection_is_refused_and_benign_call_works() -> None:
    audit = AuditCapture()
    config = {"auth": {"allow_anonymous": True}, "inspect": {}}
    app = SecurityMiddleware(mcp_app(), config, audit=audit)
    async with (
        running(app) as http,
        Client(streamable_http_client(f"{BASE}/mcp", http_client=http)) as client,
    ):
        result = await client.call_tool("search", {"query": "weather in Lyon"})
        assert result.content[0].text == "results for weather in Lyon"  # type: ignore[union-attr]
        with pytest.raises(MCPError):
            await client.call_tool("search", {"query": ATTACK})
    (event,) = audit.named("malicious_prompt_injection")
    assert event.status == 403
    assert event.tool == "search"
    assert event.rpc_method == "tools/call"
