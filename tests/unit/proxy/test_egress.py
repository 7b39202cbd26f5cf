"""The egress guard: URL allow-list, address classes, odd spellings, resolution."""

from __future__ import annotations

import ipaddress

import httpx
import pytest

from secmw.proxy import EgressDenied, EgressGuard, canonical_host
from secmw.proxy.egress import parse_rule
from tests.gateway_support import static_resolver

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    "host",
    [
        pytest.param("2130706433", id="decimal"),
        pytest.param("0177.0.0.1", id="octal"),
        pytest.param("0x7f.1", id="hex-short"),
        pytest.param("0x7f000001", id="hex"),
        pytest.param("127.1", id="short-form"),
        pytest.param("017700000001", id="octal-whole"),
        pytest.param("1.2.3.04", id="leading-zero"),
    ],
)
def test_non_canonical_numeric_hosts_are_refused(host: str) -> None:
    with pytest.raises(EgressDenied, match="non-canonical"):
        canonical_host(host)


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("Example.COM.", "example.com"),
        ("a1.be", "a1.be"),
        ("deadbeef.cafe", "deadbeef.cafe"),
        ("8.8.8.8", "8.8.8.8"),
        ("[::FFFF:7F00:1]", "::ffff:7f00:1"),
    ],
)
def test_canonical_hosts(host: str, expected: str) -> None:
    assert canonical_host(host) == expected


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.5.5.5",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "169.254.1.1",
        "100.64.0.1",
        "100.100.100.200",
        "0.0.0.0",
        "255.255.255.255",
        "224.0.0.1",
        "240.0.0.1",
        "::1",
        "::",
        "fe80::1",
        "fd00::1",
        "fc00::1",
        "fd00:ec2::254",
        "ff02::1",
        "::ffff:127.0.0.1",
        "::ffff:169.254.169.254",
        "64:ff9b::a00:1",
        "2002:a00:1::1",
        "::127.0.0.1",  # IPv4-compatible
        "::8.8.8.8",
        "::ffff:0:7f00:1",  # IPv4-translated
        "64:ff9b:1::7f00:1",  # local-use NAT64 (RFC 8215)
        "fec0::1",  # site-local
        "192.0.0.8",  # IETF protocol assignments
    ],
)
def test_non_public_addresses_are_refused(address: str) -> None:
    with pytest.raises(EgressDenied):
        EgressGuard().check_address(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111"])
def test_public_addresses_pass(address: str) -> None:
    EgressGuard().check_address(ipaddress.ip_address(address))


def test_allowed_networks_reopen_only_what_they_name_and_metadata_stays_shut() -> None:
    guard = EgressGuard(
        allow_networks=["127.0.0.0/8", "169.254.0.0/16"], block_networks=["8.8.8.0/24"]
    )
    guard.check_address(ipaddress.ip_address("127.0.0.1"))
    guard.check_address(ipaddress.ip_address("169.254.1.1"))
    for refused in ("169.254.169.254", "10.0.0.1", "8.8.8.8", "::1"):
        with pytest.raises(EgressDenied):
            guard.check_address(ipaddress.ip_address(refused))


@pytest.mark.parametrize(
    ("allowed", "address", "neighbour"),
    [
        ("64:ff9b::/96", "64:ff9b::a9fe:a9fe", "64:ff9b::a9fe:101"),
        ("::ffff:0:0/96", "::ffff:169.254.169.254", "::ffff:169.254.1.1"),
        ("::/0", "::ffff:169.254.169.254", "::ffff:169.254.1.1"),
        ("2002::/16", "2002:a9fe:a9fe::1", "2002:a9fe:101::1"),
        ("::ffff:0:0/96", "::ffff:8.8.8.8", "::ffff:8.8.9.9"),  # a block_networks entry
    ],
)
def test_an_allowed_ipv6_range_does_not_reopen_a_blocked_ipv4_inside_it(
    allowed: str, address: str, neighbour: str
) -> None:
    guard = EgressGuard(allow_networks=[allowed], block_networks=["8.8.8.0/24"])
    with pytest.raises(EgressDenied, match="blocked"):
        guard.check_address(ipaddress.ip_address(address))
    guard.check_address(ipaddress.ip_address(neighbour))  # the range itself is allowed


def test_url_allow_list() -> None:
    guard = EgressGuard(
        allow=["https://api.example.com", "http://*.internal.test:8080", "https://any.test:*"]
    )
    assert guard.check_url("https", "API.example.com", None) == ("api.example.com", 443)
    assert guard.check_url("http", "svc.internal.test", 8080) == ("svc.internal.test", 8080)
    assert guard.check_url("https", "any.test", 9999)[1] == 9999
    for scheme, host, port in [
        ("http", "api.example.com", None),
        ("https", "api.example.com", 8443),
        ("http", "internal.test", 8080),
        ("http", "evil-internal.test", 8080),
        ("ftp", "api.example.com", None),
        ("https", "other.example.com", None),
    ]:
        with pytest.raises(EgressDenied):
            guard.check_url(scheme, host, port)


@pytest.mark.parametrize(
    "rule",
    [
        "api.example.com",
        "ftp://x",
        "https://u:p@x",
        "https://x/path",
        "https://x:99999",
        "http://2130706433",
    ],
)
def test_bad_rules(rule: str) -> None:
    with pytest.raises((ValueError, EgressDenied)):
        parse_rule(rule)


async def test_resolution_checks_every_answer_and_caches() -> None:
    calls: list[str] = []
    table = {
        "public.test": ["93.184.216.34"],
        "private.test": ["10.0.0.5"],
        "mixed.test": ["93.184.216.34", "127.0.0.1"],
        "metadata.test": ["169.254.169.254"],
        "six.test": ["::1"],
        "junk.test": ["not-an-ip"],
        "empty.test": [],
    }
    base = static_resolver(table)

    async def counting(host: str, port: int) -> list[str]:
        calls.append(host)
        return await base(host, port)

    guard = EgressGuard(resolver=counting)
    assert [str(a) for a in await guard.resolve("public.test", 443)] == ["93.184.216.34"]
    await guard.resolve("public.test", 443)
    assert calls == ["public.test"]
    for host in (
        "private.test",
        "mixed.test",
        "metadata.test",
        "six.test",
        "junk.test",
        "empty.test",
        "nx.test",
    ):
        with pytest.raises(EgressDenied):
            await guard.resolve(host, 443)
    with pytest.raises(EgressDenied):
        await guard.resolve("127.0.0.1", 80)  # literals are checked without a lookup
    assert "127.0.0.1" not in calls


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(UnicodeError("label not allowed by IDNA"), id="idna"),
        pytest.param(ValueError("bad name"), id="value-error"),
        pytest.param(OSError("no such host"), id="os-error"),
    ],
)
async def test_every_resolver_failure_is_a_refusal(error: Exception) -> None:
    async def failing(host: str, port: int) -> list[str]:
        raise error

    guard = EgressGuard(resolver=failing)
    with pytest.raises(EgressDenied, match="cannot resolve"):
        await guard.resolve("bad.example", 80)


async def test_a_name_the_system_resolver_cannot_encode_is_a_refusal() -> None:
    # U+200D (zero width joiner) is refused by IDNA 2008 before any lookup is made.
    with pytest.raises(EgressDenied, match="cannot resolve"):
        await EgressGuard().resolve("bad\u200d.example", 80)


@pytest.mark.parametrize(
    ("rule", "host"),
    [
        pytest.param("http://[0:0:0:0:0:0:0:1]:8080", "::1", id="ipv6-long-form"),
        pytest.param("http://[::1]:8080", "0:0::1", id="ipv6-url-long-form"),
        pytest.param("http://[::FFFF:1.2.3.4]:8080", "::ffff:1.2.3.4", id="ipv4-mapped"),
        pytest.param("http://api.example.com.:8080", "api.example.com", id="rule-trailing-dot"),
        pytest.param("http://api.example.com:8080", "api.example.com.", id="url-trailing-dot"),
        pytest.param("http://*.example.com.:8080", "api.example.com", id="wildcard-trailing-dot"),
        # httpx hands the host over decoded (faß.de) whichever way the URL spelt it.
        pytest.param("http://xn--fa-hia.de:8080", "faß.de", id="rule-a-label"),
        pytest.param("http://FAß.de:8080", "xn--fa-hia.de", id="rule-u-label"),
        pytest.param("http://*.bücher.de:8080", "shop.xn--bcher-kva.de", id="wildcard-u-label"),
        pytest.param("http://*.xn--bcher-kva.de:8080", "shop.bücher.de", id="wildcard-a-label"),
    ],
)
def test_allow_list_hosts_match_every_spelling_of_themselves(rule: str, host: str) -> None:
    guard = EgressGuard(allow=[rule])
    assert guard.check_url("http", host, 8080)[1] == 8080


def test_international_names_are_resolved_and_sent_in_a_label_form() -> None:
    # The resolver and the TLS name get what DNS and certificates hold (IDNA 2008:
    # ß stays ß, so not the fass.de Python's own IDNA 2003 codec would pick).
    guard = EgressGuard(allow=["https://faß.de"])
    url = httpx.URL("https://xn--fa-hia.de/")
    assert guard.check_url(url.scheme, url.host, url.port) == ("xn--fa-hia.de", 443)
    with pytest.raises(EgressDenied, match="invalid international host name"):
        guard.check_url("https", "xn--zz.de", None)
