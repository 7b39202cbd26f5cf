"""Apps for the server matrix tests, importable by uvicorn, hypercorn and granian.

The secmw configuration comes from the JSON file named by ``SECMW_TEST_CONFIG``,
written by the test that starts the server.
"""

from __future__ import annotations

import json
import os
from typing import Any

from litestar import Litestar, Request, get

from secmw import SecurityMiddleware


def _config() -> dict[str, Any]:
    path = os.environ.get("SECMW_TEST_CONFIG")
    if not path:
        return {"audit": {"sink": "none"}}
    with open(path, encoding="utf-8") as handle:
        config: dict[str, Any] = json.load(handle)
        return config


async def bare(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A framework-less ASGI app: echoes who is calling, streams three chunks on /stream."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        message = await receive()
        await send(
            {"type": "websocket.send", "text": f"{scope['user'].subject}:{message.get('text')}"}
        )
        await send({"type": "websocket.close", "code": 1000})
        return
    if scope["path"] == "/stream":
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/plain")],
            }
        )
        for part in (b"one ", b"two ", b"three"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return
    body = json.dumps(
        {"user": scope["user"].subject, "http_version": scope.get("http_version")}
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})


@get("/who")
async def who(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """Litestar reads the principal from scope["user"] like any other auth backend."""
    return {"user": request.user.subject, "scopes": sorted(request.user.scopes)}


app = SecurityMiddleware(bare, _config())
litestar_app = SecurityMiddleware(Litestar(route_handlers=[who]), _config())
