"""Following upstream redirects, the same way for every upstream client.

The proxy's clients send one request at a time; this loop turns a redirect into
the next request. Each hop is a new request through the client, so the egress
guard checks it like the first one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Protocol, TypeVar

import httpx

Header = tuple[bytes, bytes]
Body = bytes | AsyncIterator[bytes] | None

MAX_REDIRECTS = 20
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
FOLLOWED_SCHEMES = frozenset({"http", "https"})
_BODY_FIELDS = frozenset({b"content-length", b"content-type", b"transfer-encoding"})
# Dropped when a redirect leaves the origin (besides the upstream's injected credentials).
ORIGIN_BOUND = frozenset({b"authorization", b"proxy-authorization", b"cookie"})


class _Response(Protocol):
    status_code: int

    def header(self, name: bytes) -> bytes:
        """The first value of field ``name`` (lower case), or ``b""``."""

    async def aclose(self) -> None:
        """Release the connection."""


R = TypeVar("R", bound=_Response)
SendOnce = Callable[[str, httpx.URL, bytes, list[Header], Body], Awaitable[R]]


async def send_following(
    send_once: SendOnce[R],
    method: str,
    origin: httpx.URL,
    target: bytes,
    *,
    headers: list[Header],
    content: Body,
    follow_redirects: bool,
    credentials: frozenset[bytes],
) -> R:
    """Send, then follow up to :data:`MAX_REDIRECTS` redirects when asked to.

    ``303`` (and ``301``/``302`` after a POST) become a bodiless GET; a streamed
    body cannot be replayed, so its ``307``/``308`` goes back to the caller. A
    hop to another origin drops ``Authorization``, ``Proxy-Authorization``,
    ``Cookie`` and the ``credentials`` header names (the upstream's own, injected
    ones). A loop, an unusable ``Location`` or one that is not ``http(s)``
    raises ``httpx.RemoteProtocolError``.
    """
    response = await send_once(method, origin, target, headers, content)
    url = origin
    for _ in range(MAX_REDIRECTS):
        location = response.header(b"location")
        if not follow_redirects or response.status_code not in REDIRECT_STATUSES or not location:
            return response
        status = response.status_code
        if status in (307, 308) and not (content is None or isinstance(content, bytes)):
            return response
        await response.aclose()
        try:
            url = url.copy_with(raw_path=target)
            hop = url.join(location.decode("latin-1"))
        except (httpx.InvalidURL, UnicodeDecodeError) as exc:
            raise httpx.RemoteProtocolError("unusable redirect location") from exc
        if hop.scheme not in FOLLOWED_SCHEMES or not hop.host:
            # ``wss://`` passes the egress guard (websockets), but is no HTTP request.
            raise httpx.RemoteProtocolError("redirect to a scheme that is not http(s)")
        if (status == 303 and method != "HEAD") or (status in (301, 302) and method == "POST"):
            method, content = "GET", None
            headers = [(k, v) for k, v in headers if k.lower() not in _BODY_FIELDS]
        if (hop.scheme, hop.host, hop.port) != (url.scheme, url.host, url.port):
            drop = ORIGIN_BOUND | credentials
            headers = [(k, v) for k, v in headers if k.lower() not in drop]
        url, target = hop, hop.raw_path
        response = await send_once(method, url, target, headers, content)
    await response.aclose()
    raise httpx.RemoteProtocolError("too many redirects")


__all__ = [
    "FOLLOWED_SCHEMES",
    "MAX_REDIRECTS",
    "ORIGIN_BOUND",
    "REDIRECT_STATUSES",
    "send_following",
]
