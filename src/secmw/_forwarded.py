"""The client address behind trusted proxies: ``X-Forwarded-For`` and RFC 7239 ``Forwarded``.

See docs/request-flow.md ("Client address") for the rules and their trade-offs.
"""

from __future__ import annotations

import ipaddress
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from secmw._headers import Headers
    from secmw.context import ContextSettings


def forwarded_client(headers: Headers, peer: str | None, settings: ContextSettings) -> str | None:
    """The client address as seen by the outermost trusted proxy, or ``None``.

    With ``trusted_hops = N`` the N-th address from the right of the combined
    forwarding header is the client; a header with fewer entries, or a peer outside
    ``trusted_proxies``, means the header is ignored and the socket peer is used
    (werkzeug's ProxyFix makes the same trade-off). An ``X-Forwarded-For`` entry
    that is no address does the same; a ``Forwarded`` element without a usable
    ``for`` gives :data:`UNKNOWN_CLIENT` (no address: the peer is the proxy). A
    server on a unix socket names no peer: trusted only with ``trust_unix_socket``.
    """
    if settings.trusted_proxies:
        if peer is None:
            if not settings.trust_unix_socket:
                return None
        else:
            try:
                peer_ip = ipaddress.ip_address(peer)
            except ValueError:
                return None
            if isinstance(peer_ip, ipaddress.IPv6Address) and peer_ip.ipv4_mapped is not None:
                peer_ip = peer_ip.ipv4_mapped  # a dual-stack socket reports IPv4 peers this way
            if not any(peer_ip in network for network in settings.trusted_proxies):
                return None
    fields = headers.get_all(settings.forwarded_header)
    hops = settings.trusted_hops
    if settings.forwarded_header == "forwarded":
        elements = _last_elements(fields, hops)
        if len(elements) < hops:
            return None
        # Written by the outermost trusted proxy: what it says, or nobody knows.
        value = _forwarded_for(elements[hops - 1])
        return (_address(value) if value is not None else None) or UNKNOWN_CLIENT
    values = [part.strip() for header in fields for part in header.split(",")]
    if len(values) < hops:
        return None
    return _address(values[-hops])


# ``forwarded_client``'s answer when the trusted proxies' header names no usable
# client: not the peer (that is the proxy), but no address at all.
UNKNOWN_CLIENT = ""


def _last_elements(fields: list[str], count: int) -> list[str]:
    """Up to ``count`` ``Forwarded`` elements from the right, nearest first.

    Read right to left: the trusted proxies' elements come after anything the
    client sent, so a client's unbalanced quote or stray text further left cannot
    change where they begin (their own quotes are balanced; an escaped ``\\"`` is
    no quote). Empty elements are skipped (RFC 9110 list syntax), a long run of
    them only so far: proxies do not write those, and the scan stays short.
    """
    found: list[str] = []
    empties, budget = 0, _MAX_SEPARATORS
    for text in reversed(fields):
        end = len(text)
        inside = False
        # The previous quote and comma, each searched again only once passed: linear.
        quote, comma = text.rfind('"'), text.rfind(",")
        while quote >= 0 or comma >= 0:
            budget -= 1
            if budget < 0:
                return found  # past the proxies' own few elements: client junk
            if quote > comma:
                back = quote - 1
                while back >= 0 and text[back] == "\\":
                    back -= 1
                if (quote - 1 - back) % 2 == 0:  # not escaped
                    inside = not inside
                quote = text.rfind('"', 0, quote)
                continue
            position = comma
            comma = text.rfind(",", 0, position)
            if inside:
                continue
            element = text[position + 1 : end].strip()
            end = position
            if element:
                found.append(element)
                if len(found) == count:
                    return found
            else:
                empties += 1
                if empties > _MAX_EMPTY_ELEMENTS:
                    return found
        element = text[:end].strip()
        if element:
            found.append(element)
            if len(found) == count:
                return found
    return found


_MAX_EMPTY_ELEMENTS = 64
# Quotes and commas looked at: far more than trusted proxies write (a few each).
_MAX_SEPARATORS = 1024


# RFC 7239 section 4: element *( ";" pair ), pair = token "=" ( token / quoted-string ).
# A value may also be an unquoted [v6] or v4:port, as some proxies write it.
_PAIR = re.compile(
    r"[ \t]*([!#$%&'*+.^_`|~0-9A-Za-z-]+)="
    r"""([!#$%&'*+.^_`|~0-9A-Za-z:\[\]-]+|"(?:[^"\\]|\\.)*")[ \t]*"""
)


def _forwarded_for(element: str) -> str | None:
    """The one ``for`` value of an element, unquoted; ``None`` off the grammar or
    without exactly one ``for`` (a quoted ``host`` holding ``;for=`` is a host)."""
    value: str | None = None
    position, end = 0, len(element)
    while position < end:
        match = _PAIR.match(element, position)
        if match is None:
            return None
        if match.group(1).lower() == "for":
            if value is not None:
                return None
            raw = match.group(2)
            value = re.sub(r"\\(.)", r"\1", raw[1:-1]) if raw.startswith('"') else raw
        position = match.end()
        if position < end:
            if element[position] != ";":
                return None
            position += 1
    return value


def unmapped(address: str) -> str:
    """An IPv4 client as a dual-stack socket reports it (``::ffff:a.b.c.d``), as IPv4:
    otherwise ``client_ips`` rules, address blocks and ``ip`` tiers would miss it."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    mapped = parsed.ipv4_mapped if isinstance(parsed, ipaddress.IPv6Address) else None
    return str(mapped) if mapped is not None else address


def _address(entry: str) -> str | None:
    """An IP address from a forwarding entry: bare, ``v4:port``, ``[v6]`` or ``[v6]:port``."""
    if entry.startswith("["):
        inside, bracket, rest = entry[1:].partition("]")
        if not bracket or (rest and not (rest[0] == ":" and rest[1:].isdigit())):
            return None
        entry = inside
    elif entry.count(":") == 1:
        host, _, port = entry.partition(":")
        if not port.isdigit():
            return None
        entry = host
    # A zone id names an interface of the proxy, not the client, and may hold any
    # text (a comma too, which a gateway would forward): dropped.
    entry = entry.partition("%")[0]
    try:
        return str(ipaddress.ip_address(entry))
    except ValueError:
        return None


__all__ = ["UNKNOWN_CLIENT", "forwarded_client", "unmapped"]
