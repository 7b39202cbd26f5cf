"""Websocket forwarding with the ``websockets`` client (``gateway`` extra).

The handshake was already checked by the middleware; this opens the upstream
connection to the address the egress guard checked (the URL keeps the host name
for the ``Host`` header and TLS), accepts the client with the upstream's
subprotocol and pumps messages both ways until either side closes. Credentials
are stripped from the handshake like from any request. The ``websockets``
client runs on asyncio only: under trio the handshake is refused with 1011.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

import anyio
import sniffio

from secmw.breaker.circuit import CircuitOpen
from secmw.proxy.egress import EgressDenied
from secmw.proxy.exchange import upstream_url

if TYPE_CHECKING:
    from secmw.proxy.app import ReverseProxy

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# Handshake fields the client library writes itself.
_HANDSHAKE = frozenset(
    {
        b"sec-websocket-key",
        b"sec-websocket-version",
        b"sec-websocket-extensions",
        b"sec-websocket-protocol",
        b"origin",
        b"user-agent",
    }
)


async def forward_websocket(
    proxy: ReverseProxy, scope: MutableMapping[str, Any], receive: Receive, send: Send
) -> None:
    """Forward one websocket session to the route's upstream."""
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    ctx = (scope.get("state") or {}).get("secmw")
    details: dict[str, Any] = {}
    if ctx is not None:
        ctx.state["audit_details"] = details
    route = proxy.route(scope["path"])
    if route is None or sniffio.current_async_library() != "asyncio":
        details["outcome"] = "not_forwarded"
        await send({"type": "websocket.close", "code": 1011 if route else 1008})
        return
    from websockets.asyncio.client import connect  # noqa: PLC0415 - optional dependency
    from websockets.exceptions import WebSocketException  # noqa: PLC0415

    pool = route.pool
    details["upstream"] = pool.name
    try:
        target = pool.pick()
        ticket = target.breaker.acquire()
    except CircuitOpen:
        details["outcome"] = "circuit_open"
        await send({"type": "websocket.close", "code": 1013})
        return
    details["target"] = target.label
    url = upstream_url(target.url, route, scope)
    ws_url = url.copy_with(scheme="wss" if url.scheme == "https" else "ws")
    headers = [
        (name.decode("latin-1"), value.decode("latin-1"))
        for name, value in proxy.headers.request(
            [(k, v) for k, v in scope.get("headers") or () if k.lower() not in _HANDSHAKE],
            client=ctx.client if ctx is not None and proxy.forward_client_ip else None,
            inject=pool.inject,
        )
    ]
    started = time.perf_counter()
    try:
        host, port = proxy.guard.check_url(ws_url.scheme, ws_url.host, ws_url.port)
        address = (await proxy.guard.resolve(host, port))[0]
        options: dict[str, Any] = {"host": str(address), "port": port}
        if ws_url.scheme == "wss":
            options["server_hostname"] = host
        upstream = await connect(
            str(ws_url),
            additional_headers=headers,
            subprotocols=list(scope.get("subprotocols") or ()) or None,
            open_timeout=proxy.timeouts.connect,
            max_size=None,
            proxy=None,
            user_agent_header=None,
            **options,
        )
    except EgressDenied as denial:
        target.breaker.release(ticket)
        details["outcome"] = "egress_denied"
        if ctx is not None:
            ctx.state["denial"] = denial
        await send({"type": "websocket.close", "code": 1011})
        return
    except (OSError, TimeoutError, WebSocketException) as exc:
        target.breaker.record(ticket, failed=True, duration=time.perf_counter() - started)
        await target.breaker.flush_events()
        details["outcome"], details["error"] = "error", type(exc).__name__
        await send({"type": "websocket.close", "code": 1011})
        return
    target.breaker.record(ticket, failed=False, duration=time.perf_counter() - started)
    await target.breaker.flush_events()
    details["outcome"] = "ok"
    await _pump(upstream, receive, send)


async def _pump(upstream: Any, receive: Receive, send: Send) -> None:
    """Accept the client and relay messages both ways until one side closes."""
    from websockets.exceptions import ConnectionClosed  # noqa: PLC0415 - optional dependency

    accept: Message = {"type": "websocket.accept"}
    if upstream.subprotocol:
        accept["subprotocol"] = upstream.subprotocol
    await send(accept)

    async def client_to_upstream() -> None:
        while True:
            incoming = await receive()
            if incoming["type"] == "websocket.disconnect":
                await upstream.close(incoming.get("code", 1000))
                return
            if incoming["type"] == "websocket.receive":
                data = incoming.get("text")
                await upstream.send(data if data is not None else incoming.get("bytes") or b"")

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(client_to_upstream)
        with contextlib.suppress(ConnectionClosed):
            async for data in upstream:
                key = "text" if isinstance(data, str) else "bytes"
                await send({"type": "websocket.send", key: data})
        code = upstream.close_code or 1000
        tasks.cancel_scope.cancel()
        with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
            await upstream.close()
            await send({"type": "websocket.close", "code": code})


__all__ = ["forward_websocket"]
