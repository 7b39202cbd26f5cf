"""The gateway's own HTTP/1.1 client over anyio streams, to the checked address only.

Why not httpx here: on loopback its request, response and pool objects cost
about 0.6 ms per request, more than the whole secmw chain; the proxy needs
none of its conveniences. The security behaviour is the one of
:class:`~secmw.proxy.transport.EgressTransport`: each URL is checked, its host
resolved and every answer checked, and the connection goes to the checked
address, with the URL's authority as ``Host`` and, for TLS, the URL's host as
SNI and certificate name. Redirects, when followed, go through the same steps.

Errors are httpx's exception classes (``ConnectError``, ``ReadTimeout``,
``RemoteProtocolError``, ...), so the proxy maps failures and names them in
the audit line the same way whichever client it runs on.
"""

from __future__ import annotations

import math
import random
import ssl
from collections.abc import AsyncIterator

import anyio
import httpx
from anyio.abc import ByteStream

from secmw.proxy import h1wire
from secmw.proxy.egress import EgressGuard
from secmw.proxy.h1pool import Connection, ConnectionPool
from secmw.proxy.redirects import MAX_REDIRECTS, send_following

Header = tuple[bytes, bytes]

_READ_SIZE = 65536
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
# RFC 9110 section 9.2.2: only these may be sent again without the caller knowing.
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
_READ_FAILURES = (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError)
# The schemes this client speaks, and whether each takes TLS.
_TLS = {"http": False, "https": True}


class H1Response:
    """An upstream response whose body is read as it is relayed.

    ``headers`` are the response's fields with lower-cased names. The body is
    an async iterator of raw (de-chunked, never decoded) chunks; the connection
    goes back to the pool when the body has been read to its end, and is closed
    by :meth:`aclose` otherwise.
    """

    __slots__ = ("_client", "_conn", "headers", "status_code")

    def __init__(self, client: H1Client, conn: Connection, head: h1wire.Head) -> None:
        self._client = client
        self._conn: Connection | None = conn
        self.status_code: int = head.status
        self.headers: list[Header] = head.headers

    @property
    def is_closed(self) -> bool:
        """True once the connection went back to the pool or was closed."""
        return self._conn is None

    def header(self, name: bytes) -> bytes:
        """The first value of field ``name`` (lower case), or ``b""``."""
        for key, value in self.headers:
            if key == name:
                return value
        return b""

    def aiter_raw(self) -> H1Response:
        """The body, chunk by chunk."""
        return self

    def __aiter__(self) -> H1Response:
        return self

    async def __anext__(self) -> bytes:
        conn = self._conn
        if conn is None:
            raise StopAsyncIteration
        event = await self._client.next_event(conn)
        if type(event) is bytes:
            return event
        self._conn = None
        if event is h1wire.END:
            await self._client.pool.release(conn)
            raise StopAsyncIteration
        await self._client.pool.discard(conn)
        raise httpx.RemoteProtocolError("unexpected event in a response body")

    async def aread(self) -> bytes:
        """The whole body (for small answers: health probes, redirects)."""
        return b"".join([chunk async for chunk in self])

    async def aclose(self) -> None:
        """Give up the rest of the body: the connection is closed."""
        conn, self._conn = self._conn, None
        if conn is not None:
            await self._client.pool.discard(conn)


class H1Client:
    """HTTP/1.1 to upstreams through an :class:`EgressGuard`, with keep-alive pooling.

    Timeouts are httpx's four: ``connect`` (TCP and TLS), ``read`` (between
    two reads), ``write`` (each write) and ``pool`` (waiting for one of the
    ``max_connections``). ``ssl_context`` verifies upstream certificates
    (default: httpx's trust store).
    """

    __slots__ = ("_read", "_write", "guard", "pool")

    def __init__(
        self,
        guard: EgressGuard,
        *,
        connect: float = 5.0,
        read: float = 30.0,
        write: float = 30.0,
        pool: float = 5.0,
        max_connections: int = 100,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.guard = guard
        self._read = read
        self._write = write
        self.pool = ConnectionPool(
            connect=connect, wait=pool, max_connections=max_connections, ssl_context=ssl_context
        )

    async def send(
        self,
        method: str,
        origin: httpx.URL,
        target: bytes,
        headers: list[Header],
        content: bytes | AsyncIterator[bytes] | None,
        *,
        follow_redirects: bool = False,
        credentials: frozenset[bytes] = frozenset(),
    ) -> H1Response:
        """Send one request; the response's body is still to be read.

        With ``follow_redirects``, redirects are followed as
        :func:`~secmw.proxy.redirects.send_following` describes, each hop checked
        by the guard.
        """
        return await send_following(
            self._send,
            method,
            origin,
            target,
            headers=headers,
            content=content,
            follow_redirects=follow_redirects,
            credentials=credentials,
        )

    async def get(self, url: httpx.URL) -> int:
        """GET ``url`` and read the answer; its status (health probes)."""
        response = await self._send("GET", url, url.raw_path, [], None)
        try:
            await response.aread()
        finally:
            await response.aclose()
        return response.status_code

    async def _send(
        self,
        method: str,
        url: httpx.URL,
        target: bytes,
        headers: list[Header],
        content: bytes | AsyncIterator[bytes] | None,
    ) -> H1Response:
        guard = self.guard
        tls = _TLS.get(url.scheme)
        if tls is None:
            # Never guessed from a list of the plain ones: an unknown scheme (``wss``,
            # which the guard admits for websockets) must not go out in cleartext.
            raise httpx.UnsupportedProtocol(f"scheme {url.scheme!r} is not HTTP")
        host, port = guard.check_url(url.scheme, url.host, url.port)
        addresses = await guard.resolve(host, port)
        # Several checked answers: spread connections over them.
        address = addresses[0] if len(addresses) == 1 else random.choice(addresses)  # noqa: S311 - load spreading, not security
        key = (tls, str(address), port, host)
        head = [(b"host", url.netloc), *headers]
        if isinstance(content, bytes) and (content or method in _BODY_METHODS):
            head.append((b"content-length", b"%d" % len(content)))
        # A reused connection can be closed by the upstream just as a request goes
        # out; an idempotent request with its whole body at hand may be sent again.
        replayable = method in _IDEMPOTENT and (content is None or isinstance(content, bytes))
        conn = await self.pool.checkout(key)
        while True:
            try:
                return await self._exchange(conn, method, target, head, content)
            except _Stale:
                # The upstream closed a pooled connection as we reused it, before any
                # answer: an idempotent request gets one fresh connection.
                await self.pool.discard(conn)
                if not replayable:
                    raise httpx.RemoteProtocolError("upstream closed a reused connection") from None
                replayable = False
                conn = await self.pool.checkout(key, fresh=True)
            except BaseException:
                await self.pool.discard(conn)
                raise

    async def _exchange(
        self,
        conn: Connection,
        method: str,
        target: bytes,
        headers: list[Header],
        content: bytes | AsyncIterator[bytes] | None,
    ) -> H1Response:
        state = conn.state
        try:
            data = state.request(method, target, headers)
            if content is None or isinstance(content, bytes):
                if content:
                    data += state.data(content)
                data += state.end()
        except h1wire.LocalError as exc:
            raise httpx.LocalProtocolError("request cannot be encoded") from exc
        write_failure: httpx.WriteError | None = None
        stream = conn.stream
        # One timer for the writes and the wait for the answer's head, moved at each
        # step (cheaper than a scope per step); the read timeout applies from the end
        # of the request.
        with anyio.CancelScope() as watch:
            reading = False
            try:
                await self._write_all(stream, data, watch)
                if content is not None and not isinstance(content, bytes):
                    async for chunk in content:
                        if chunk:
                            await self._write_all(stream, state.data(chunk), watch)
                    await self._write_all(stream, state.end(), watch)
            except httpx.WriteError as exc:
                # The upstream may have answered early (413, 401) and closed: read that.
                write_failure = exc
            except h1wire.LocalError as exc:
                raise httpx.LocalProtocolError("request body does not match its length") from exc
            reading = True
            try:
                while True:
                    event = await self.next_event(conn, watch)
                    if type(event) is h1wire.Head:
                        return H1Response(self, conn, event)
                    raise httpx.RemoteProtocolError("upstream closed without answering")
            except (httpx.ReadError, httpx.RemoteProtocolError):
                if conn.reused and not conn.answered:
                    raise _Stale from None
                if write_failure is not None:
                    raise write_failure from None
                raise
        if reading:
            raise httpx.ReadTimeout("upstream read timed out")
        raise httpx.WriteTimeout("upstream write timed out")

    async def _write_all(self, stream: ByteStream, data: bytes, watch: anyio.CancelScope) -> None:
        watch.deadline = anyio.current_time() + self._write
        try:
            await stream.send(data)
        except _READ_FAILURES as exc:
            raise httpx.WriteError(f"upstream write failed: {type(exc).__name__}") from exc
        # Waiting for the client's next chunk is not the upstream's delay.
        watch.deadline = math.inf

    async def next_event(self, conn: Connection, watch: anyio.CancelScope | None = None) -> object:
        """The next part of the answer on ``conn``, reading (bounded by ``read``) as needed.

        With ``watch``, that scope's deadline bounds each read and the caller
        turns its expiry into a timeout; without, a read timeout raises here.
        """
        state = conn.state
        while True:
            try:
                event = state.next_event()
            except h1wire.RemoteError as exc:
                raise httpx.RemoteProtocolError(f"malformed upstream response: {exc}") from exc
            if event is not h1wire.NEED_DATA:
                return event
            data = b""
            try:
                if watch is not None:
                    watch.deadline = anyio.current_time() + self._read
                    data = await conn.stream.receive(_READ_SIZE)
                else:
                    with anyio.move_on_after(self._read) as waiting:
                        data = await conn.stream.receive(_READ_SIZE)
                    if waiting.cancelled_caught:
                        raise httpx.ReadTimeout("upstream read timed out")
            except anyio.EndOfStream:
                pass
            except _READ_FAILURES as exc:
                raise httpx.ReadError(f"upstream read failed: {type(exc).__name__}") from exc
            if data:
                conn.answered = True
            state.receive_data(data)

    async def aclose(self) -> None:
        """Close every pooled connection; connections in use close when released."""
        await self.pool.aclose()


class _Stale(Exception):
    """A reused connection turned out closed before any answer."""


__all__ = ["MAX_REDIRECTS", "H1Client", "H1Response"]
