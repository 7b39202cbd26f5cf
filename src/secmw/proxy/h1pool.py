"""Keep-alive connections for :mod:`secmw.proxy.h1`: at most ``max_connections`` open.

A connection is keyed by (TLS, checked address, port, host name): it is only
reused for the same address and the same certificate name. An idle connection
that became readable (the upstream closed it, or sent something unasked) is
discarded instead of reused.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
from collections import deque

import anyio
import httpx
from anyio.abc import ByteStream, SocketAttribute
from anyio.streams.tls import TLSAttribute

from secmw.proxy.h1wire import ClientConnection

Key = tuple[bool, str, int, str]

_CLOSE_FAILURES = (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError)


class Connection:
    """One upstream connection and its HTTP/1.1 state."""

    __slots__ = ("answered", "key", "reused", "socket", "state", "stream")

    def __init__(self, key: Key, stream: ByteStream) -> None:
        self.key = key
        self.stream = stream
        self.socket: socket.socket | None = stream.extra(SocketAttribute.raw_socket, None)  # noqa: S610 - anyio, not Django
        self.state = ClientConnection()
        self.reused = False
        self.answered = False
        if self.socket is not None and self.socket.family in (socket.AF_INET, socket.AF_INET6):
            # Small requests go out at once, never held back by Nagle's algorithm (an
            # event loop's pseudo-socket may refuse: the loop set the option already).
            with contextlib.suppress(OSError):
                self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def closed_by_peer(self) -> bool:
        """True when the idle connection is readable: at EOF, or holding unasked bytes.

        Over TLS the bytes may already have left the socket: the TLS layer reads
        records ahead into its own buffers, where a socket poll cannot see them.
        """
        if self._tls_buffered():
            return True
        sock = self.socket
        if sock is None:
            return False
        try:
            fd = sock.fileno()
            if fd < 0:
                return True
            if _poll is not None:
                poller = _poll()
                poller.register(fd, select.POLLIN)
                return bool(poller.poll(0))
            return bool(select.select([fd], [], [], 0)[0])  # pragma: no cover - no poll()
        except (OSError, ValueError):
            return True

    def _tls_buffered(self) -> bool:
        ssl_object = self.stream.extra(TLSAttribute.ssl_object, None)  # noqa: S610 - anyio
        if ssl_object is None:
            return False
        if ssl_object.pending():
            return True  # decrypted, not yet read
        # Records read off the socket, not decrypted yet (anyio's TLS stream keeps
        # them in a MemoryBIO it does not expose).
        incoming = getattr(self.stream, "_read_bio", None)
        return bool(getattr(incoming, "pending", 0))


_poll = getattr(select, "poll", None)


class ConnectionPool:
    """Idle connections by key, and the count of open ones (idle or in use)."""

    __slots__ = ("_closed", "_connect", "_idle", "_max", "_open", "_ssl", "_wait", "_waiters")

    def __init__(
        self,
        *,
        connect: float,
        wait: float,
        max_connections: int,
        ssl_context: ssl.SSLContext | None,
    ) -> None:
        self._connect = connect
        self._wait = wait
        self._max = max_connections
        self._ssl = ssl_context
        self._idle: dict[Key, list[Connection]] = {}
        self._open = 0
        self._waiters: deque[anyio.Event] = deque()
        self._closed = False

    @property
    def open_connections(self) -> int:
        """Connections open now, idle or in use."""
        return self._open

    async def checkout(self, key: Key, *, fresh: bool = False) -> Connection:
        """A live idle connection for ``key``, else a new one (waiting at most ``pool``)."""
        conn = await self._take(key, fresh)
        if conn is not None:
            return conn
        with anyio.move_on_after(self._wait):
            while True:
                if not await self._evict():
                    await self._wait_for_change()
                conn = await self._take(key, fresh)
                if conn is not None:
                    return conn
        raise httpx.PoolTimeout("no upstream connection free in time")

    async def _take(self, key: Key, fresh: bool) -> Connection | None:
        """An idle connection, or a new one while under the bound; None when full."""
        idle = self._idle.get(key)
        while idle and not fresh:
            conn = idle.pop()
            if conn.closed_by_peer():
                await self.discard(conn)
                continue
            conn.reused, conn.answered = True, False
            return conn
        if self._open < self._max:
            self._open += 1
            return await self._new(key)
        return None

    async def _wait_for_change(self) -> None:
        event = anyio.Event()
        self._waiters.append(event)
        try:
            await event.wait()
        except BaseException:
            if event.is_set():
                self._notify()  # woken but leaving: wake the next one instead
            else:
                self._waiters.remove(event)
            raise

    def _notify(self) -> None:
        if self._waiters:
            self._waiters.popleft().set()

    async def _evict(self) -> bool:
        """Close one idle connection (of any key) to make room; False when none."""
        for idle in self._idle.values():
            if idle:
                await self.discard(idle.pop(0))
                return True
        return False

    async def _new(self, key: Key) -> Connection:
        tls, address, port, host = key
        try:
            with anyio.fail_after(self._connect):
                if tls:
                    stream: ByteStream = await anyio.connect_tcp(
                        address,
                        port,
                        ssl_context=self._ssl_context(),
                        tls_hostname=host,
                        # An upstream's ragged TLS close ends a body like a TCP close.
                        tls_standard_compatible=False,
                    )
                else:
                    stream = await anyio.connect_tcp(address, port)
        except TimeoutError:
            self._free()
            raise httpx.ConnectTimeout("upstream connect timed out") from None
        except (OSError, anyio.BrokenResourceError) as exc:
            self._free()
            raise httpx.ConnectError(f"cannot connect upstream: {type(exc).__name__}") from exc
        except BaseException:
            self._free()
            raise
        return Connection(key, stream)

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            # The same default trust store as httpx (and as the websocket side).
            self._ssl = httpx.create_ssl_context()
        return self._ssl

    def _free(self) -> None:
        self._open -= 1
        self._notify()

    async def release(self, conn: Connection) -> None:
        """Back to the pool after a complete exchange, or closed when it cannot be reused."""
        state = conn.state
        if self._closed or not state.reusable or conn.closed_by_peer():
            # Bytes after the answer (in the socket or the TLS buffers) would be read
            # as the next request's answer.
            await self.discard(conn)
            return
        state.start_next_cycle()
        self._idle.setdefault(conn.key, []).append(conn)
        self._notify()

    async def discard(self, conn: Connection) -> None:
        """Close ``conn`` and free its place."""
        self._free()
        with anyio.CancelScope(shield=True):
            with contextlib.suppress(*_CLOSE_FAILURES):
                await conn.stream.aclose()

    async def aclose(self) -> None:
        """Close the idle connections; those in use close when released."""
        self._closed = True
        idle = [conn for conns in self._idle.values() for conn in conns]
        self._idle.clear()
        for conn in idle:
            await self.discard(conn)


__all__ = ["Connection", "ConnectionPool", "Key"]
