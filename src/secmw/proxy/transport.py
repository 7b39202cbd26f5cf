"""An httpx transport that connects only where the egress guard allows.

Each request's URL is checked, its host resolved and every answer checked; the
request then goes to the checked address itself (the URL's host replaced by the
IP literal), with the original ``Host`` header and, for TLS, the original name
as SNI and for certificate verification (httpcore's ``sni_hostname``
extension). No second DNS lookup happens between check and connect, so DNS
rebinding cannot redirect the connection. Redirects followed by the client pass
through here again and are checked like the first request.

The reverse proxy talks to upstreams through the small :class:`Upstream`
interface: :class:`~secmw.proxy.h1.H1Client` (the default) or
:class:`HttpxUpstream`, an ``httpx.AsyncClient`` of your own (for example on
an ``EgressTransport``, or with HTTP/2 or a proxy of its own).
"""

from __future__ import annotations

import random
from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import Any, Protocol

import httpx

from secmw.proxy.egress import EgressGuard
from secmw.proxy.redirects import send_following

# Transports kept for distinct TLS names (targets and the hosts redirects lead to).
MAX_TLS_NAMES = 64


class EgressTransport(httpx.AsyncBaseTransport):
    """Wraps an httpx transport (default ``AsyncHTTPTransport``) with an :class:`EgressGuard`.

    ``httpx.AsyncClient(transport=EgressTransport(guard))`` is all a custom proxy
    needs. Refusals raise :class:`~secmw.proxy.egress.EgressDenied` from
    ``send``; no connection is attempted.

    httpcore pools connections by the URL's origin, here the checked address: a
    connection whose certificate was verified for ``a.example`` would carry a
    request for ``b.example`` at the same address. So without ``transport``
    every TLS name gets a transport of its own (built from ``options``; each has
    the ``limits`` given; at most :data:`MAX_TLS_NAMES`, the least recently used
    closed beyond). A ``transport`` you give sees every request: it must not
    reuse a TLS connection for another ``sni_hostname`` extension.
    """

    def __init__(
        self, guard: EgressGuard, transport: httpx.AsyncBaseTransport | None = None, **options: Any
    ) -> None:
        self.guard = guard
        self._transport = transport
        self._options = options
        # TLS name (None: plain HTTP) -> its transport, least recently used first.
        self._by_name: OrderedDict[str | None, httpx.AsyncBaseTransport] = OrderedDict()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Check, pin the address, and forward to the wrapped transport."""
        url = request.url
        host, port = self.guard.check_url(url.scheme, url.host, url.port)
        addresses = await self.guard.resolve(host, port)
        # Several checked answers: spread connections over them.
        address = addresses[0] if len(addresses) == 1 else random.choice(addresses)  # noqa: S311 - load spreading, not security
        # The request itself is pointed at the checked address for the call (no
        # copy: the Host header it already carries names the original host).
        extensions = request.extensions
        name: str | None = None
        if url.scheme in ("https", "wss"):
            name = str(extensions.get("sni_hostname") or host)
            request.extensions = {**extensions, "sni_hostname": name}
        request.url = url.copy_with(host=str(address))
        try:
            return await (await self._for(name)).handle_async_request(request)
        finally:
            request.url = url
            request.extensions = extensions

    async def _for(self, name: str | None) -> httpx.AsyncBaseTransport:
        """The transport for TLS name ``name``: never one that verified another name."""
        if self._transport is not None:
            return self._transport
        transports = self._by_name
        transport = transports.get(name)
        if transport is not None:
            transports.move_to_end(name)
            return transport
        transport = transports[name] = httpx.AsyncHTTPTransport(**self._options)
        if len(transports) > MAX_TLS_NAMES:
            _, oldest = transports.popitem(last=False)
            await oldest.aclose()
        return transport

    async def aclose(self) -> None:
        """Close the wrapped transport (or every one built here)."""
        if self._transport is not None:
            await self._transport.aclose()
        transports = list(self._by_name.values())
        self._by_name.clear()
        for transport in transports:
            await transport.aclose()


Header = tuple[bytes, bytes]


class UpstreamResponse(Protocol):
    """What the proxy reads of an upstream response."""

    status_code: int
    headers: list[Header]

    @property
    def is_closed(self) -> bool:
        """True once the connection was released (the body read, or the response closed)."""

    def header(self, name: bytes) -> bytes:
        """The first value of field ``name`` (lower case), or ``b""``."""

    def aiter_raw(self) -> AsyncIterator[bytes]:
        """The body as it arrives: de-chunked, never decoded."""

    async def aclose(self) -> None:
        """Release the connection (closed unless the body was read to its end)."""


class Upstream(Protocol):
    """The HTTP client the reverse proxy forwards with."""

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
    ) -> UpstreamResponse:
        """Send a request for ``target`` (path and query) at ``origin``; body still to read."""

    async def get(self, url: httpx.URL) -> int:
        """GET ``url``, read the answer, return its status (health probes)."""

    async def aclose(self) -> None:
        """Close the client's connections."""


class HttpxResponse:
    """An ``httpx.Response`` seen through :class:`UpstreamResponse`."""

    __slots__ = ("_response", "headers", "status_code")

    def __init__(self, response: httpx.Response) -> None:
        self._response = response
        self.status_code = response.status_code
        self.headers = [(name.lower(), value) for name, value in response.headers.raw]

    def header(self, name: bytes) -> bytes:
        """The first value of field ``name`` (lower case), or ``b""``."""
        for key, value in self.headers:
            if key == name:
                return value
        return b""

    @property
    def is_closed(self) -> bool:
        """True once the response was closed."""
        return self._response.is_closed

    def aiter_raw(self) -> AsyncIterator[bytes]:
        """The body as it arrives."""
        return self._response.aiter_raw()

    async def aclose(self) -> None:
        """Close the response."""
        await self._response.aclose()


class _Body(httpx.AsyncByteStream):
    """A request body for httpx: bytes or an async iterator, as a plain iterator.

    httpx's own wrapper is an async generator, which trio reports when a failed
    upload leaves it unfinished.
    """

    def __init__(self, content: bytes | AsyncIterator[bytes] | None) -> None:
        self._content = content
        self._sent = False

    def __aiter__(self) -> _Body:
        self._sent = False
        return self

    async def __anext__(self) -> bytes:
        content = self._content
        if content is None or isinstance(content, bytes):
            if self._sent or not content:
                raise StopAsyncIteration
            self._sent = True
            return content
        return await content.__anext__()


class HttpxUpstream:
    """Forward with an ``httpx.AsyncClient`` (its transport decides where it connects).

    For the egress guarantees, give the client an :class:`EgressTransport`; this
    is what ``ReverseProxy(client=...)`` does with the client it is given.
    """

    __slots__ = ("client",)

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

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
    ) -> HttpxResponse:
        """Send with httpx; redirects are followed by :func:`~secmw.proxy.redirects.send_following`.

        Not by httpx itself: it would carry the upstream's injected credentials
        (``credentials``) to another origin.
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

    async def _send(
        self,
        method: str,
        origin: httpx.URL,
        target: bytes,
        headers: list[Header],
        content: bytes | AsyncIterator[bytes] | None,
    ) -> HttpxResponse:
        client = self.client
        url = origin.copy_with(raw_path=target)
        if content is None or isinstance(content, bytes):
            request = client.build_request(method, url, headers=headers, content=content)
        else:
            request = client.build_request(method, url, headers=headers)
        request.stream = _Body(content)
        try:
            response = await client.send(request, stream=True, follow_redirects=False)
        except httpx.InvalidURL as exc:
            # httpx parses a redirect's Location even when it does not follow it: an
            # unusable one (``http:evil``) is a malformed answer, as the builtin client says.
            raise httpx.RemoteProtocolError("unusable redirect location") from exc
        return HttpxResponse(response)

    async def get(self, url: httpx.URL) -> int:
        """GET ``url``; its status."""
        response = await self.client.get(url)
        return response.status_code

    async def aclose(self) -> None:
        """Close the client."""
        await self.client.aclose()


__all__ = [
    "MAX_TLS_NAMES",
    "EgressTransport",
    "HttpxResponse",
    "HttpxUpstream",
    "Upstream",
    "UpstreamResponse",
]
