"""Websocket forwarding: the ``websockets`` Sans-I/O protocol over anyio sockets.

The handshake was already checked by the middleware. This opens a TCP (and TLS)
connection to the address the egress guard checked, with the upstream's name in
the ``Host`` header, for SNI and for certificate verification; sends the
upgrade with the client's credentials stripped and the upstream's own headers
added; accepts the client with the subprotocol the upstream chose; and relays
messages both ways until one side closes, passing the close code on. Running
the protocol over anyio streams makes it work on asyncio and trio alike.
"""

from __future__ import annotations

import contextlib
import ssl
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any, TypeGuard

import anyio
import httpx
from anyio.abc import ByteStream
from websockets.client import ClientProtocol
from websockets.exceptions import (
    InvalidHandshake,
    InvalidHeader,
    InvalidState,
    InvalidStatus,
    ProtocolError,
)
from websockets.frames import EXTERNAL_CLOSE_CODES, CloseCode, Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import State
from websockets.typing import Subprotocol
from websockets.uri import parse_uri

from secmw.breaker.state import CircuitOpen
from secmw.errors import BadRequest
from secmw.proxy.egress import EgressDenied, EgressGuard
from secmw.proxy.exchange import (
    MAX_REQUEST_HEAD,
    MAX_TARGET,
    HeadersTooLarge,
    UriTooLong,
    head_size,
)
from secmw.proxy.h1wire import is_token, sendable_field
from secmw.proxy.target import judged_path, upstream_target

if TYPE_CHECKING:
    from secmw.proxy.app import ReverseProxy

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# Handshake fields the protocol writes itself. ``Origin`` is passed on: an
# upstream's cross-site websocket check (MCP servers must validate it) reads it.
_HANDSHAKE = frozenset(
    {
        b"sec-websocket-key",
        b"sec-websocket-version",
        b"sec-websocket-extensions",
        b"sec-websocket-protocol",
    }
)
# An upstream message larger than this closes the session with 1009: it bounds
# the memory one session can take while a message is joined from its frames.
MAX_UPSTREAM_MESSAGE = 16 * 1024 * 1024
_DATA = (Opcode.TEXT, Opcode.BINARY, Opcode.CONT)
_FAILURES = (OSError, TimeoutError, anyio.EndOfStream, anyio.BrokenResourceError, InvalidHandshake)
# A write to a connection the peer already dropped.
_LOST = (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError)


async def forward_websocket(  # noqa: PLR0915 - every outcome of the handshake, side by side
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
    try:
        route = proxy.route(judged_path(scope))
    except BadRequest:
        route = None  # a path with no canonical form: refused like an unrouted one
    if route is None:
        details["outcome"] = "no_route"
        await send({"type": "websocket.close", "code": 1008})
        return
    pool = route.pool
    details["upstream"] = pool.name
    raw_headers = scope.get("headers") or ()
    if head_size(raw_headers) > MAX_REQUEST_HEAD:
        too_large = HeadersTooLarge(reason="request headers over 32 KiB")
        await _refuse(ctx, details, send, too_large)
        return
    headers = proxy.headers.request(
        [(k, v) for k, v in raw_headers if k.lower() not in _HANDSHAKE],
        client=ctx.client if ctx is not None and proxy.forward_client_ip else None,
        inject=pool.inject,
    )
    offered = scope.get("subprotocols") or ()
    if not all(sendable_field(name, value) for name, value in headers) or not all(
        isinstance(name, str) and is_token(name) for name in offered
    ):
        # The client's fault (a control byte in a value), as on the HTTP path: refused
        # before any permit is taken, so it can never open the breaker for everyone.
        # So is a subprotocol that is no token (``c/d``, ``a b``): servers on wsproto
        # (hypercorn, uvicorn's) hand it over, an upstream that echoes it answers
        # with a handshake our client refuses, which counted as the upstream's failure.
        await _refuse(ctx, details, send, _unsendable())
        return
    try:
        target = pool.pick()
        ticket = target.breaker.acquire()
    except CircuitOpen:
        details["outcome"] = "circuit_open"
        await send({"type": "websocket.close", "code": 1013})
        return
    details["target"] = target.label
    path = upstream_target(target.url, route, scope)
    if len(path) > MAX_TARGET:
        target.breaker.release(ticket)
        await _refuse(ctx, details, send, UriTooLong(reason="request target over 64 KiB"))
        return
    url = target.url.copy_with(raw_path=path)
    ws_url = url.copy_with(scheme="wss" if url.scheme == "https" else "ws")
    try:
        protocol, request = _upgrade(str(ws_url), headers, scope)
    except InvalidHeader:
        target.breaker.release(ticket)
        await _refuse(ctx, details, send, _unsendable())
        return
    started = time.perf_counter()
    stream: ByteStream | None = None
    try:
        host, port = _check_url(proxy.guard, url, ws_url)
        address = (await proxy.guard.resolve(host, port))[0]
        with anyio.fail_after(proxy.timeouts.connect):
            stream = await _open(
                str(address), port, host, proxy.ssl_context if url.scheme == "https" else False
            )
            early = await _handshake(stream, protocol, request)
    except EgressDenied as denial:
        target.breaker.release(ticket)
        details["outcome"] = "egress_denied"
        if ctx is not None:
            ctx.state["denial"] = denial
        await send({"type": "websocket.close", "code": 1011})
        return
    except _FAILURES as exc:
        if stream is not None:
            await stream.aclose()
        if _refused_by_choice(exc, target.breaker.failure_statuses):
            # The upstream answered (403, 404, ...): healthy, it just said no.
            target.breaker.release(ticket)
            details["outcome"] = "refused"
            details["upstream_status"] = exc.response.status_code
            await send({"type": "websocket.close", "code": 1008})
            return
        target.breaker.record(ticket, failed=True, duration=time.perf_counter() - started)
        await target.breaker.flush_events()
        details["outcome"], details["error"] = "error", type(exc).__name__
        await send({"type": "websocket.close", "code": 1011})
        return
    except BaseException:
        # Cancelled (or a bug): says nothing about the upstream, but a recovery
        # trial's permit must come back or the breaker stays half-open for good.
        target.breaker.release(ticket)
        if stream is not None:
            with anyio.CancelScope(shield=True):
                await stream.aclose()
        raise
    target.breaker.record(ticket, failed=False, duration=time.perf_counter() - started)
    await target.breaker.flush_events()
    details["outcome"] = "ok"
    async with stream:
        await _relay(protocol, stream, receive, send, early, details=details)


def _refused_by_choice(exc: BaseException, failures: frozenset[int]) -> TypeGuard[InvalidStatus]:
    """A handshake answered with a status the breaker does not count (a 4xx)."""
    return isinstance(exc, InvalidStatus) and exc.response.status_code not in failures


def _check_url(guard: EgressGuard, url: httpx.URL, ws_url: httpx.URL) -> tuple[str, int]:
    """Check the upstream against the allow-list as the target's own URL (``http``/``https``).

    ``ws``/``wss`` name the same connection (RFC 6455 section 3), so an entry
    written either way admits it.
    """
    try:
        return guard.check_url(url.scheme, url.host, url.port)
    except EgressDenied as denied:
        refused = denied
    try:
        return guard.check_url(ws_url.scheme, ws_url.host, ws_url.port)
    except EgressDenied:
        raise refused from None


def _unsendable() -> BadRequest:
    return BadRequest("The request cannot be forwarded.", reason="request not encodable upstream")


async def _refuse(ctx: Any, details: dict[str, Any], send: Send, denial: BadRequest) -> None:
    """Close the handshake of a request that cannot be forwarded: the client's fault, audited."""
    details["outcome"] = "bad_request"
    if ctx is not None:
        ctx.state["denial"] = denial
    await send({"type": "websocket.close", "code": 1008})


async def _open(
    address: str, port: int, host: str, context: ssl.SSLContext | bool | None
) -> ByteStream:
    """Connect to the checked address; TLS verifies and names ``host`` (SNI).

    ``context`` is ``False`` for plain TCP, ``None`` for the default trust store.
    """
    if context is False:
        return await anyio.connect_tcp(address, port)
    # The same default trust store as the HTTP side (httpx's).
    tls = context if isinstance(context, ssl.SSLContext) else httpx.create_ssl_context()
    return await anyio.connect_tcp(address, port, ssl_context=tls, tls_hostname=host)


async def _flush(protocol: ClientProtocol, stream: ByteStream) -> None:
    for data in protocol.data_to_send():
        if data:
            await stream.send(data)
        else:
            # End of the closing handshake; TLS streams cannot half-close, and a
            # transport the peer already closed refuses it: closed right after anyway.
            with contextlib.suppress(
                NotImplementedError, RuntimeError, OSError, anyio.BrokenResourceError
            ):
                await stream.send_eof()


def _upgrade(
    url: str, headers: list[tuple[bytes, bytes]], scope: Any
) -> tuple[ClientProtocol, Request]:
    """The protocol and its upgrade request, built before connecting (``InvalidHeader``)."""
    subprotocols = [Subprotocol(name) for name in scope.get("subprotocols") or ()]
    protocol = ClientProtocol(
        parse_uri(url), subprotocols=subprotocols or None, max_size=MAX_UPSTREAM_MESSAGE
    )
    request = protocol.connect()
    for name, value in headers:
        request.headers[name.decode("latin-1")] = value.decode("latin-1")
    return protocol, request


async def _handshake(stream: ByteStream, protocol: ClientProtocol, request: Request) -> list[Frame]:
    """Open the session; any frames that arrived with the response."""
    early: list[Frame] = []
    protocol.send_request(request)
    await _flush(protocol, stream)
    while protocol.state is State.CONNECTING:
        try:
            data = await stream.receive()
        except anyio.EndOfStream:
            # A refusal (403, 404) may end with the connection: its status still counts.
            protocol.receive_eof()
            if protocol.handshake_exc is None:
                raise
            break
        protocol.receive_data(data)
        # The handshake response; frames that came in the same read stay for the relay.
        early.extend(e for e in protocol.events_received() if isinstance(e, Frame))
    if protocol.handshake_exc is not None:
        raise protocol.handshake_exc
    return early


async def _relay(
    protocol: ClientProtocol,
    stream: ByteStream,
    receive: Receive,
    send: Send,
    early: list[Frame],
    *,
    details: dict[str, Any],
) -> None:
    """Accept the client and relay messages both ways until one side closes.

    An upstream that goes away without a closing handshake (the connection reset
    or dropped, a write to it failing) closes the client with 1011, as one that
    cannot be reached does, and the audit line says ``upstream_lost``.
    """
    accept: Message = {"type": "websocket.accept"}
    if protocol.subprotocol:
        accept["subprotocol"] = protocol.subprotocol
    await send(accept)
    client_left = lost = False

    async def client_to_upstream() -> None:
        nonlocal client_left, lost
        while True:
            incoming = await receive()
            if incoming["type"] == "websocket.disconnect":
                client_left = True
                if protocol.state is State.OPEN:
                    # 1005/1006 (the client left without a code, or dropped the
                    # connection) describe the client's side: not codes to send.
                    protocol.send_close(_sendable(incoming.get("code", 1000)))
                    with contextlib.suppress(*_LOST):
                        await _flush(protocol, stream)
                return
            if incoming["type"] == "websocket.receive" and protocol.state is State.OPEN:
                text = incoming.get("text")
                if text is not None:
                    protocol.send_text(text.encode("utf-8"))
                else:
                    protocol.send_binary(incoming.get("bytes") or b"")
                try:
                    await _flush(protocol, stream)
                except _LOST:
                    lost = True
                    tasks.cancel_scope.cancel()
                    return

    async def to_client(message: Message) -> None:
        nonlocal client_left
        try:
            await send(message)
        except OSError:
            client_left = True  # nothing to tell it any more
            raise

    invalid = False
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(client_to_upstream)
        try:
            invalid = await _upstream_to_client(protocol, stream, to_client, early)
        except (InvalidState, ProtocolError, *_LOST):
            lost = True
        tasks.cancel_scope.cancel()
    if invalid:
        code = 1007
    elif not client_left and (lost or protocol.close_code == CloseCode.ABNORMAL_CLOSURE):
        details["outcome"], code = "upstream_lost", 1011
    else:
        code = _sendable(protocol.close_code or 1000)
    with anyio.CancelScope(shield=True), contextlib.suppress(OSError):
        await send({"type": "websocket.close", "code": code})


def _sendable(code: Any) -> int:
    """A close code a peer may be sent (RFC 6455 section 7.4); 1000 for any other."""
    if isinstance(code, int) and (code in EXTERNAL_CLOSE_CODES or 3000 <= code < 5000):
        return code
    return 1000


async def _upstream_to_client(
    protocol: ClientProtocol, stream: ByteStream, send: Send, early: list[Frame]
) -> bool:
    """Read frames until the upstream's closing handshake; send whole messages on.

    True when the upstream sent a text message that is not UTF-8: the session is
    then closed with 1007 on both sides.
    """
    parts: list[bytes] = []
    kind = Opcode.TEXT
    events: list[Any] = list(early)  # frames that came with the handshake response
    while True:
        for event in events:
            if not isinstance(event, Frame) or event.opcode not in _DATA:
                continue
            if event.opcode is not Opcode.CONT:
                kind, parts = event.opcode, []
            parts.append(bytes(event.data))
            if event.fin:
                body = b"".join(parts)
                if kind is Opcode.TEXT:
                    try:
                        text = body.decode("utf-8")
                    except UnicodeDecodeError:
                        protocol.fail(1007, "invalid UTF-8 in a text message")
                        await _flush(protocol, stream)
                        return True
                    await send({"type": "websocket.send", "text": text})
                else:
                    await send({"type": "websocket.send", "bytes": body})
        if protocol.state is State.CLOSED:
            return False
        try:
            data = await stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
            protocol.receive_eof()
        else:
            protocol.receive_data(data)
        await _flush(protocol, stream)  # pongs and the closing handshake
        events = protocol.events_received()


__all__ = ["forward_websocket"]
