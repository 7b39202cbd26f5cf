"""An httpx transport that connects only where the egress guard allows.

Each request's URL is checked, its host resolved and every answer checked; the
request then goes to the checked address itself (the URL's host replaced by the
IP literal), with the original ``Host`` header and, for TLS, the original name
as SNI and for certificate verification (httpcore's ``sni_hostname``
extension). No second DNS lookup happens between check and connect, so DNS
rebinding cannot redirect the connection. Redirects followed by the client pass
through here again and are checked like the first request.
"""

from __future__ import annotations

import random
from typing import Any

import httpx

from secmw.proxy.egress import EgressGuard


class EgressTransport(httpx.AsyncBaseTransport):
    """Wraps an httpx transport (default ``AsyncHTTPTransport``) with an :class:`EgressGuard`.

    ``httpx.AsyncClient(transport=EgressTransport(guard))`` is all a custom proxy
    needs. Refusals raise :class:`~secmw.proxy.egress.EgressDenied` from
    ``send``; no connection is attempted.
    """

    def __init__(
        self, guard: EgressGuard, transport: httpx.AsyncBaseTransport | None = None, **options: Any
    ) -> None:
        self.guard = guard
        self._transport = transport or httpx.AsyncHTTPTransport(**options)

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
        if url.scheme in ("https", "wss") and "sni_hostname" not in extensions:
            request.extensions = {**extensions, "sni_hostname": host}
        request.url = url.copy_with(host=str(address))
        try:
            return await self._transport.handle_async_request(request)
        finally:
            request.url = url
            request.extensions = extensions

    async def aclose(self) -> None:
        """Close the wrapped transport."""
        await self._transport.aclose()


__all__ = ["EgressTransport"]
