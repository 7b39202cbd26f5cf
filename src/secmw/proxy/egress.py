"""The egress guard: which upstream URLs and addresses a proxy may connect to.

Two checks, both before a connection is made:

1. The URL: scheme, host and port must match the allow-list. Numeric hosts that
   are not canonical IP literals (``2130706433``, ``0177.0.0.1``, ``0x7f.1``) are
   refused outright: ``inet_aton`` reads them as addresses, so they are only ever
   a way to smuggle one past a host check.
2. Every resolved address: loopback, private, link-local (cloud metadata at
   169.254.169.254), shared (100.64.0.0/10), unique-local (``fc00::/7``, which
   holds ``fd00::/8``), multicast, reserved and unspecified addresses are refused
   unless a configured network allows them. IPv4-mapped, 6to4 and NAT64 IPv6
   addresses are judged by the IPv4 address they carry.

The caller then connects to the address that was checked (see
:mod:`secmw.proxy.transport`), so a second DNS answer cannot change the
destination (DNS rebinding).
"""

from __future__ import annotations

import ipaddress
import re
import socket
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import anyio
import idna

from secmw.errors import Denial

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]

# Always refused, even when ``is_global`` would say otherwise (or a future
# Python changes its registry): metadata endpoints of the big clouds.
ALWAYS_BLOCKED: tuple[IPNetwork, ...] = (
    ipaddress.ip_network("169.254.169.254/32"),
    ipaddress.ip_network("fd00:ec2::254/128"),
    ipaddress.ip_network("100.100.100.200/32"),
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_HEX_LABEL = re.compile(r"0[xX][0-9a-fA-F]*")
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


class EgressDenied(Denial):
    """A connection the egress guard refused (SSRF protection)."""

    status = 502
    title = "Bad Gateway"
    event = "egress_denied"

    def __init__(self, reason: str) -> None:
        super().__init__("The upstream destination is not allowed.", reason=reason)


@dataclass(frozen=True, slots=True)
class HostRule:
    """One allow-list entry: a scheme, a host (exact or ``*.suffix``) and ports."""

    scheme: str
    host: str
    ports: frozenset[int]

    def matches(self, scheme: str, host: str, port: int) -> bool:
        """True when the URL parts fall under this rule."""
        if scheme != self.scheme or (self.ports and port not in self.ports):
            return False
        if self.host == "*":
            return True
        if self.host.startswith("*."):
            return host.endswith(self.host[1:]) and host != self.host[2:]
        return host == self.host


def parse_rule(text: str) -> HostRule:
    """Parse ``scheme://host[:port]`` (host may be ``*.example.com``, port ``*``)."""
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise ValueError(f"{text!r}: the scheme must be http, https, ws or wss")
    netloc = parts.netloc.lower()
    if "@" in netloc or not netloc or parts.path not in ("", "/") or parts.query:
        raise ValueError(f"{text!r} is not scheme://host[:port]")
    host, port_text = netloc, ""
    if netloc.startswith("["):
        end = netloc.find("]")
        host, port_text = netloc[1:end], netloc[end + 2 :]
    elif ":" in netloc:
        host, port_text = netloc.rsplit(":", 1)
    if port_text == "*":
        ports: frozenset[int] = frozenset()
    elif port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError(f"{text!r}: bad port")
        ports = frozenset({int(port_text)})
    else:
        ports = frozenset({_DEFAULT_PORTS[scheme]})
    if host.startswith("*."):
        host = "*." + _a_label(host[2:].rstrip("."))
    elif host != "*":
        # Compared with the canonical form of each URL's host: stored the same way
        # (``[0:0::1]`` is ``::1``, ``example.com.`` is ``example.com``). Odd numeric
        # spellings are refused here too.
        host = canonical_host(host)
    return HostRule(scheme, host, ports)


def canonical_host(host: str) -> str:
    """The lower-cased host, a name in IDNA A-labels (``xn--``); raises
    :class:`EgressDenied` for ambiguous numeric hosts and invalid international names."""
    host = _a_label(host.lower().rstrip("."))
    if not host:
        raise EgressDenied("empty host")
    if ":" in host:
        try:
            return str(ipaddress.IPv6Address(host.strip("[]")))
        except ValueError:
            raise EgressDenied("malformed IPv6 literal") from None
    last = host.rsplit(".", 1)[-1]
    if last.isdigit() or _HEX_LABEL.fullmatch(last):
        # The WHATWG URL rule: a host whose last label is a number is an IPv4
        # address. Only the canonical dotted quad is accepted.
        try:
            return str(ipaddress.IPv4Address(host))
        except ValueError:
            raise EgressDenied("non-canonical numeric host") from None
    return host


def _a_label(host: str) -> str:
    """``host`` with international labels in A-label form, as it is resolved and sent.

    httpx hands over a URL's host decoded (``faß.de``) whichever way it was written:
    rules, checks, the resolver and the TLS name all use the encoded form
    (``xn--fa-hia.de``, IDNA 2008 as httpx encodes it), so both spellings match.
    """
    if host.isascii() and "xn--" not in host:
        return host  # the common case; ``idna`` would refuse ``_`` in DNS names
    try:
        return idna.encode(host).decode("ascii")
    except idna.IDNAError:
        raise EgressDenied("invalid international host name") from None


# Not public, whatever the running Python's ``is_global`` says about them: they
# carry an IPv4 address in ways no router should forward to the internet
# (IPv4-compatible, IPv4-translated, local-use NAT64), or are deprecated
# site-local space, or IETF protocol assignments.
_NOT_PUBLIC = tuple(
    ipaddress.ip_network(net)
    for net in ("::/96", "::ffff:0:0/96", "64:ff9b:1::/48", "fec0::/10", "192.0.0.0/24")
)


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, 6to4, NAT64), if any."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


class EgressGuard:
    """Checks upstream URLs and resolved addresses; built once from configuration.

    ``allow`` is the URL allow-list (empty: any scheme/host/port is allowed, the
    address check still applies); ``allow_networks`` re-allows otherwise refused
    networks (e.g. ``127.0.0.0/8`` for a sidecar upstream); ``block_networks``
    refuses more. ``resolver`` is ``async (host, port) -> [address, ...]``
    (default: the system resolver through anyio); resolved answers are cached
    for ``cache_seconds``.
    """

    __slots__ = (
        "_allow_networks",
        "_block",
        "_cache",
        "_cache_seconds",
        "_clock",
        "_literals",
        "_resolver",
        "_urls",
        "rules",
    )

    def __init__(
        self,
        *,
        allow: Iterable[str | HostRule] = (),
        allow_networks: Iterable[str] = (),
        block_networks: Iterable[str] = (),
        resolver: Resolver | None = None,
        cache_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rules = tuple(
            rule if isinstance(rule, HostRule) else parse_rule(rule) for rule in allow
        )
        self._allow_networks = tuple(
            ipaddress.ip_network(net, strict=False) for net in allow_networks
        )
        self._block = ALWAYS_BLOCKED + tuple(
            ipaddress.ip_network(net, strict=False) for net in block_networks
        )
        self._resolver = resolver or system_resolver
        self._cache: dict[tuple[str, int], tuple[float, tuple[IPAddress, ...]]] = {}
        self._cache_seconds = cache_seconds
        self._clock = clock
        # Verdicts that cannot change for this guard: allowed URL parts and IP literals.
        self._urls: dict[tuple[str, str, int | None], tuple[str, int]] = {}
        self._literals: dict[str, tuple[IPAddress, ...]] = {}

    def check_url(self, scheme: str, host: str, port: int | None) -> tuple[str, int]:
        """Check the URL parts; returns the canonical host and the effective port."""
        key = (scheme, host, port)
        known = self._urls.get(key)
        if known is not None:
            return known
        checked = self._check_url(scheme, host, port)
        if len(self._urls) > 1024:
            self._urls.clear()
        self._urls[key] = checked
        return checked

    def _check_url(self, scheme: str, host: str, port: int | None) -> tuple[str, int]:
        scheme = scheme.lower()
        if scheme not in _DEFAULT_PORTS:
            raise EgressDenied(f"scheme {scheme} not allowed")
        canonical = canonical_host(host)
        effective = port if port is not None else _DEFAULT_PORTS[scheme]
        if self.rules and not any(
            rule.matches(scheme, canonical, effective) for rule in self.rules
        ):
            raise EgressDenied(f"{scheme}://{canonical}:{effective} not on the allow-list")
        return canonical, effective

    def check_address(self, address: IPAddress) -> None:
        """Refuse ``address`` unless it is public or explicitly allowed."""
        if any(address in net for net in self._block if net.version == address.version):
            raise EgressDenied(f"address {address} is blocked")
        inner = embedded_ipv4(address)
        if inner is not None and any(inner in net for net in self._block if net.version == 4):
            # An allowed IPv6 range (NAT64, ::ffff:0:0/96, 6to4) must not carry a blocked
            # IPv4 address, the metadata endpoints above all.
            raise EgressDenied(f"address {address} is blocked")
        if any(address in net for net in self._allow_networks if net.version == address.version):
            return
        if inner is not None:
            self.check_address(inner)
            return
        if (
            not address.is_global
            or address.is_multicast
            or address.is_reserved
            or any(address in net for net in _NOT_PUBLIC if net.version == address.version)
        ):
            raise EgressDenied(f"address {address} is not public")

    async def resolve(self, host: str, port: int) -> tuple[IPAddress, ...]:
        """Resolve ``host`` and check every answer; an IP literal is checked directly."""
        known = self._literals.get(host)
        if known is not None:
            return known
        try:
            literal = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            pass
        else:
            self.check_address(literal)
            if len(self._literals) > 1024:
                self._literals.clear()
            self._literals[host] = (literal,)
            return (literal,)
        key = (host, port)
        now = self._clock()
        cached = self._cache.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            answers = await self._resolver(host, port)
        except (OSError, ValueError):
            # ValueError: a name the resolver's IDNA encoding refuses (UnicodeError).
            raise EgressDenied(f"cannot resolve {host}") from None
        addresses: list[IPAddress] = []
        for answer in answers:
            try:
                addresses.append(ipaddress.ip_address(answer.split("%", 1)[0]))
            except ValueError:
                raise EgressDenied(f"resolver returned a non-address for {host}") from None
        if not addresses:
            raise EgressDenied(f"no address for {host}")
        # One refused answer refuses the host: a mixed answer is how rebinding starts.
        for address in addresses:
            self.check_address(address)
        result = tuple(addresses)
        if self._cache_seconds > 0:
            if len(self._cache) > 1024:
                self._cache.clear()
            self._cache[key] = (now + self._cache_seconds, result)
        return result


async def system_resolver(host: str, port: int) -> list[str]:
    """Resolve with the system resolver (``getaddrinfo``) in a worker thread."""
    infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


__all__ = [
    "ALWAYS_BLOCKED",
    "EgressDenied",
    "EgressGuard",
    "HostRule",
    "canonical_host",
    "embedded_ipv4",
    "parse_rule",
    "system_resolver",
]
