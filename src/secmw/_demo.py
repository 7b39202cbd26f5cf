"""The sample service behind ``secmw demo``: a tiny pure-ASGI app and its config."""

from __future__ import annotations

import json
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from secmw.context import Principal
from secmw.testing import TokenIssuer

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

DEMO_ISSUER = "https://demo.secmw.invalid"
DEMO_AUDIENCE = "secmw-demo"


# A made-up live-looking Stripe key the demo "leaks", so the redactor has work to do.
_DEMO_SECRET = "sk_live_" + secrets.token_hex(12)


def demo_config(issuer: TokenIssuer) -> dict[str, Any]:
    """The embedded default configuration: every component on, trusting the demo's key."""
    return {
        "max_body_bytes": 64 * 1024,
        "auth": {
            "public_paths": ["/", "/healthz"],
            "realm": "secmw-demo",
            "jwt": issuer.jwt_config(typ="at+jwt"),
        },
        "policy": {
            "rules": [
                {"id": "signed-in", "effect": "allow", "when": {"authenticated": True}},
                {
                    "id": "admin-area",
                    "effect": "deny",
                    "reason": "admin area",
                    "when": {"paths": ["/api/admin/**"]},
                    "unless": {"roles_any": ["admin"]},
                },
                {
                    "id": "mcp-tools",
                    "effect": "deny",
                    "when": {"rpc_methods": ["tools/call"]},
                    "unless": {"tools": ["echo"]},
                },
            ]
        },
        "ratelimit": {
            "tiers": [
                {"name": "per-user", "key": "principal", "rate": "120/minute"},
                {"name": "per-address", "key": "ip", "rate": "50/second"},
            ]
        },
        "redact": {"enabled": True},
        "inspect": {"action": "deny"},
        "anomaly": {"enabled": True},
        "audit": {"sink": "stdout"},
    }


async def _json(send: Send, status: int, payload: object) -> None:
    body = json.dumps(payload, indent=2).encode() + b"\n"
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _rpc(receive: Receive, send: Send) -> None:
    """A one-tool JSON-RPC endpoint (``echo``), for the policy and the inspector."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body", False):
            break
    try:
        request = json.loads(body)
        arguments = request["params"]["arguments"]
        reply = {"jsonrpc": "2.0", "id": request.get("id"), "result": {"echo": arguments}}
    except (ValueError, KeyError, TypeError):
        reply = {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": "bad request"}}
    await _json(send, 200, reply)


async def demo_app(scope: Scope, receive: Receive, send: Send) -> None:
    """The protected sample service: a few JSON routes, an SSE stream and a websocket echo."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    user: Principal = scope["user"]
    path = scope["path"]
    if scope["type"] == "websocket":
        if path != "/ws/echo":
            await send({"type": "websocket.close", "code": 1008})
            return
        await receive()  # websocket.connect, replayed by the middleware
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text") or (message.get("bytes") or b"").decode("utf-8", "replace")
            await send({"type": "websocket.send", "text": f"{user.subject}: {text}"})
    if path == "/":
        await _json(
            send,
            200,
            {
                "service": "secmw demo",
                "public": ["/", "/healthz"],
                "protected": [
                    "/api/me",
                    "/api/report",
                    "/api/admin",
                    "/api/stream",
                    "/mcp",
                    "/ws/echo",
                ],
            },
        )
    elif path == "/healthz":
        await _json(send, 200, {"status": "ok"})
    elif path == "/api/me":
        await _json(
            send,
            200,
            {
                "subject": user.subject,
                "roles": sorted(user.roles),
                "scopes": sorted(user.scopes),
                "tenant": user.tenant,
                "request_id": scope["state"]["secmw"].request_id,
            },
        )
    elif path == "/api/report":
        # The app carelessly includes a credential; the redactor removes it.
        await _json(send, 200, {"report": "q3", "billing_key": _DEMO_SECRET})
    elif path == "/mcp" and scope.get("method") == "POST":
        await _rpc(receive, send)
    elif path == "/api/admin":
        if "admin" not in user.roles:
            await _json(send, 403, {"error": "admin role required"})
        else:
            await _json(send, 200, {"admin": True})
    elif path == "/api/stream":
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/event-stream"),
                    (b"cache-control", b"no-cache"),
                ],
            }
        )
        for number in range(3):
            event = f"event: tick\ndata: {json.dumps({'n': number, 'user': user.subject})}\n\n"
            await send({"type": "http.response.body", "body": event.encode(), "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    else:
        await _json(send, 404, {"error": "not found"})
