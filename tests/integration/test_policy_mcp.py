"""The official MCP SDK behind SecurityMiddleware with a policy, in both MCP transports.

In memory (httpx2.ASGITransport, the server's session manager driven by the test)
and over a real uvicorn on 127.0.0.1, with the SDK's own client in
``auto`` (stateless, 2026-07-28) and ``legacy`` (2025-11-25, SSE) modes.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
import pytest
import uvicorn
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.server.mcpserver import MCPServer

from secmw import SecurityMiddleware
from secmw.testing import AuditCapture, TokenIssuer

pytestmark = [
    pytest.mark.anyio,
    # The SDK's legacy SSE client leaves httpx2's streaming generators unclosed on
    # trio (ResourceWarnings raised inside the client library, not in secmw).
    pytest.mark.filterwarnings(
        r"ignore:Exception ignored in. <async_generator object (EventSource|Response|PoolByteStream)\.:"
        "pytest.PytestUnraisableExceptionWarning"
    ),
]

ISSUER = TokenIssuer()
POLICY = {
    "rules": [
        {"id": "signed-in", "effect": "allow", "when": {"authenticated": True}},
        {
            "id": "no-admin-tools",
            "effect": "deny",
            "when": {"tools": ["admin_*"]},
            "reason": "admin tools are off",
        },
        {
            "id": "tenant-files",
            "effect": "deny",
            "when": {"tools": ["read_file"], "arguments": {"/path": {"prefix": "/etc"}}},
        },
        {
            "id": "mfa-delete",
            "effect": "step_up",
            "acr_values": ["urn:mfa"],
            "amr_mfa": [],
            "when": {"tools": ["delete_*"]},
        },
    ]
}


def mcp_server() -> MCPServer:
    server = MCPServer("secmw-test", version="0.1")

    @server.tool()
    def search(query: str) -> str:
        return f"results for {query}"

    @server.tool()
    def read_file(path: str) -> str:
        return f"contents of {path}"

    @server.tool()
    def delete_file(path: str) -> str:
        return f"deleted {path}"

    @server.tool()
    def admin_reset() -> str:
        return "reset"

    return server


def protected(server: MCPServer, audit: AuditCapture) -> SecurityMiddleware:
    app = server.streamable_http_app(streamable_http_path="/mcp")
    return SecurityMiddleware(
        app, {"auth": {"jwt": ISSUER.jwt_config()}, "policy": POLICY}, audit=audit
    )


async def exercise(url: str, http: httpx2.AsyncClient, mode: str) -> dict[str, Any]:
    """Run the same session in either mode; return what the client saw."""
    seen: dict[str, Any] = {}
    async with Client(streamable_http_client(url, http_client=http), mode=mode) as client:
        seen["tools"] = sorted(tool.name for tool in (await client.list_tools()).tools)
        seen["search"] = (await client.call_tool("search", {"query": "q"})).content[0].text
        seen["read"] = (await client.call_tool("read_file", {"path": "/srv/a"})).content[0].text
        for name, arguments in (
            ("admin_reset", {}),
            ("read_file", {"path": "/etc/passwd"}),
            ("delete_file", {"path": "/x"}),
        ):
            try:
                await client.call_tool(name, arguments)
            except Exception as exc:  # the SDK raises MCPError (possibly wrapped in a group)
                seen[f"{name}:{arguments.get('path', '')}"] = _error(exc)
    return seen


def _error(exc: BaseException) -> tuple[int, str]:
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    error = getattr(exc, "error", None)
    code = getattr(error, "code", None) if error is not None else getattr(exc, "code", None)
    message = getattr(error, "message", None) if error is not None else str(exc)
    return int(code or 0), str(message)


def check(seen: dict[str, Any], audit: AuditCapture, token: str) -> None:
    assert seen["tools"] == ["delete_file", "read_file", "search"]  # admin_reset is hidden
    assert seen["search"] == "results for q"
    assert seen["read"] == "contents of /srv/a"
    assert seen["admin_reset:"] == (-32003, "You are not allowed to perform this request.")
    assert seen["read_file:/etc/passwd"][0] == -32003
    assert seen["delete_file:/x"] == (
        -32001,
        "A stronger or more recent authentication is required.",
    )
    names = {(event.name, event.tool) for event in audit.events}
    assert ("authz_fail", "admin_reset") in names
    assert ("authz_fail", "read_file") in names
    assert ("authz_step_up_required", "delete_file") in names
    assert ("authz_allow", "search") in names
    assert all(token not in event.to_json() for event in audit.events)


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_in_memory(mode: str) -> None:
    server, audit = mcp_server(), AuditCapture()
    app = protected(server, audit)
    token = ISSUER.mint("alice")
    async with server.session_manager.run():
        http = httpx2.AsyncClient(
            transport=httpx2.ASGITransport(app=app),
            headers={"authorization": f"Bearer {token}"},
            base_url="http://127.0.0.1:8000",
        )
        async with http:
            seen = await exercise("http://127.0.0.1:8000/mcp", http, mode)
    check(seen, audit, token)


@asynccontextmanager
async def no_op() -> AsyncIterator[None]:
    yield


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Served:
    """A uvicorn server in its own thread (its own event loop), stopped on exit."""

    def __init__(self, app: Any) -> None:
        self.port = free_port()
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="error", lifespan="on")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Served:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        assert self.server.started, "uvicorn did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture
def served() -> Iterator[tuple[Served, AuditCapture]]:
    audit = AuditCapture()
    with Served(protected(mcp_server(), audit)) as server:
        yield server, audit


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_over_uvicorn(mode: str, served: tuple[Served, AuditCapture]) -> None:
    server, audit = served
    token = ISSUER.mint("alice")
    base = f"http://127.0.0.1:{server.port}"
    async with httpx2.AsyncClient(headers={"authorization": f"Bearer {token}"}, timeout=10) as http:
        seen = await exercise(f"{base}/mcp", http, mode)
        anonymous = await http.post(
            f"{base}/mcp",
            json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
            headers={"authorization": ""},
        )
    check(seen, audit, token)
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"] == 'Bearer realm="secmw"'


async def test_a_tool_call_only_a_lenient_server_parses_is_refused() -> None:
    # The SDK takes "application/json, text/plain" for JSON and reads NaN; secmw
    # must not let such a body past its tool rules as "not JSON".
    server, audit = mcp_server(), AuditCapture()
    app = protected(server, audit)
    token = ISSUER.mint("alice")
    sent: list[tuple[dict[str, str], bytes]] = []

    async def keep(request: Any) -> None:
        if request.method == "POST":
            sent.append((dict(request.headers), request.content))

    async with server.session_manager.run():
        http = httpx2.AsyncClient(
            transport=httpx2.ASGITransport(app=app),
            headers={"authorization": f"Bearer {token}"},
            base_url="http://127.0.0.1:8000",
            event_hooks={"request": [keep]},
        )
        async with http:
            async with Client(
                streamable_http_client("http://127.0.0.1:8000/mcp", http_client=http), mode="auto"
            ) as client:
                with pytest.raises(BaseException):  # noqa: B017 - the SDK's error type varies
                    await client.call_tool("admin_reset", {})
            headers, body = next((h, b) for h, b in reversed(sent) if b"tools/call" in b)
            headers = {k: v for k, v in headers.items() if k not in ("content-length", "host")}
            headers["content-type"] = "application/json, text/plain"
            listed = await http.post("/mcp", content=body, headers=headers)
            poisoned = body.replace(b'"arguments":{}', b'"arguments":{},"x":NaN')
            assert poisoned != body
            nan = await http.post("/mcp", content=poisoned, headers=headers)
            # json.loads(bytes) reads a UTF-8-encoded surrogate, and the SDK takes any
            # type that starts with application/json: not "not JSON" to secmw either.
            surrogate = body.replace(b'"arguments":{}', b'"arguments":{},"x":"\xed\xa0\x80"')
            headers["content-type"] = "application/json-rpc"
            bad_utf8 = await http.post("/mcp", content=surrogate, headers=headers)
    assert "reset" not in listed.text and "reset" not in nan.text
    assert nan.status_code == 400
    assert bad_utf8.status_code == 400 and "reset" not in bad_utf8.text
    assert [e.name for e in audit.events][-2:] == ["input_validation_fail"] * 2
