"""A small MCP server with file tools, meant to sit behind the secmw gateway.

    python examples/mcp_gateway/server.py [--port 8003]

It trusts whoever reaches it: the gateway in front decides who may call which
tool. The one check it makes is the gateway's own credential (the
``MCP_SERVER_TOKEN`` environment variable, when set), so that only the gateway
can reach it; the gateway sends it and never the client's token.
"""

from __future__ import annotations

import argparse
import hmac
import json
import os
import secrets
import sys
from typing import Any

import uvicorn
from mcp.server.mcpserver import MCPServer

# A made-up live-looking Stripe key inside a "file", so the redactor has work to do.
LEAKY_NOTE = f"Deploy with STRIPE_KEY=sk_live_{secrets.token_hex(12)} and restart the workers.\n"


def build_server() -> MCPServer:
    """The MCP server: search, read_file, delete_file and a run_command nobody should get."""
    files = {
        "readme.md": "The notes of the platform team.\n",
        "deploy.md": LEAKY_NOTE,
        "oncall.md": "Page the on-call engineer for any outage longer than 5 minutes.\n",
    }
    server = MCPServer("files", version="0.1", log_level="WARNING")

    @server.tool()
    def search(query: str) -> list[str]:
        """Names of the files whose text contains the query."""
        return sorted(name for name, text in files.items() if query.lower() in text.lower())

    @server.tool()
    def read_file(name: str) -> str:
        """The text of one file."""
        return files.get(name, f"no file named {name}")

    @server.tool()
    def delete_file(name: str) -> str:
        """Delete a file (the gateway asks for a fresh MFA login first)."""
        return f"deleted {name}" if files.pop(name, None) is not None else f"no file named {name}"

    @server.tool()
    def run_command(command: str) -> str:
        """A tool the gateway's allow-list keeps out of reach (it only echoes here)."""
        return f"would run: {command}"

    return server


def require_gateway_token(app: Any, token: str) -> Any:
    """Refuse HTTP requests that do not carry the gateway's credential."""
    expected = f"Bearer {token}".encode()

    async def guarded(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            presented = dict(scope["headers"]).get(b"authorization", b"")
            if not hmac.compare_digest(presented, expected):
                body = json.dumps({"error": "only the gateway may call this server"}).encode()
                headers = [(b"content-type", b"application/json")]
                await send({"type": "http.response.start", "status": 401, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
        await app(scope, receive, send)

    return guarded


def build_app() -> Any:
    """The server's ASGI app at /mcp, behind the gateway-credential check when configured."""
    app = build_server().streamable_http_app(streamable_http_path="/mcp")
    token = os.environ.get("MCP_SERVER_TOKEN")
    return require_gateway_token(app, token) if token else app


def main() -> int:
    parser = argparse.ArgumentParser(description="the example MCP server (file tools)")
    parser.add_argument("--port", type=int, default=8003)
    args = parser.parse_args()
    uvicorn.run(
        build_app(),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        timeout_graceful_shutdown=2,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
