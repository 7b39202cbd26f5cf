"""The egress transport connects to the checked address, keeps Host and SNI, re-checks redirects."""

from __future__ import annotations

import httpx
import pytest

from secmw.proxy import EgressDenied, EgressGuard, EgressTransport
from tests.gateway_support import static_resolver

pytestmark = pytest.mark.anyio


def recorder(seen: list[httpx.Request], redirect_to: str | None = None) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        # A snapshot: the transport points the request back at its host afterwards.
        seen.append(
            httpx.Request(
                request.method, request.url, headers=request.headers, extensions=request.extensions
            )
        )
        if redirect_to is not None and request.url.path == "/start":
            return httpx.Response(302, headers={"location": redirect_to})
        return httpx.Response(200, text="ok")

    return httpx.MockTransport(handle)


async def test_request_goes_to_the_checked_address_with_host_and_sni_kept() -> None:
    seen: list[httpx.Request] = []
    answers = {"api.example.test": ["93.184.216.34"]}
    guard = EgressGuard(resolver=static_resolver(answers), allow=["https://api.example.test"])
    async with httpx.AsyncClient(transport=EgressTransport(guard, recorder(seen))) as client:
        response = await client.get("https://api.example.test/v1?q=1")
        # A later DNS answer (rebinding) is not consulted while the check is cached.
        answers["api.example.test"] = ["127.0.0.1"]
        await client.get("https://api.example.test/v1")
    assert response.text == "ok"
    assert str(response.request.url) == "https://api.example.test/v1?q=1"
    first = seen[0]
    assert first.url.host == "93.184.216.34"
    assert first.url.raw_path == b"/v1?q=1"
    assert first.headers["host"] == "api.example.test"
    assert first.extensions["sni_hostname"] == "api.example.test"
    assert seen[1].url.host == "93.184.216.34"


async def test_rebinding_to_a_private_address_after_the_cache_expires_is_refused() -> None:
    seen: list[httpx.Request] = []
    answers = {"api.example.test": ["93.184.216.34"]}
    guard = EgressGuard(resolver=static_resolver(answers), cache_seconds=0)
    async with httpx.AsyncClient(transport=EgressTransport(guard, recorder(seen))) as client:
        await client.get("http://api.example.test/")
        answers["api.example.test"] = ["10.0.0.8"]
        with pytest.raises(EgressDenied):
            await client.get("http://api.example.test/")
    assert len(seen) == 1


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("http://127.0.0.1/", id="loopback"),
        pytest.param("http://169.254.169.254/latest/meta-data/", id="metadata"),
        pytest.param("http://[::1]/", id="ipv6-loopback"),
        pytest.param("http://2130706433/", id="decimal"),
        pytest.param("http://0177.0.0.1/", id="octal"),
        pytest.param("http://0x7f.1/", id="hex"),
        pytest.param("http://[::ffff:127.0.0.1]/", id="mapped"),
        pytest.param("http://internal.test/", id="dns-to-private"),
        pytest.param("http://[fd00::1]/", id="unique-local"),
        pytest.param("file:///etc/passwd", id="file-scheme"),
    ],
)
async def test_ssrf_targets_are_refused_before_any_connection(url: str) -> None:
    seen: list[httpx.Request] = []
    guard = EgressGuard(resolver=static_resolver({"internal.test": ["192.168.0.10"]}))
    async with httpx.AsyncClient(transport=EgressTransport(guard, recorder(seen))) as client:
        with pytest.raises((EgressDenied, httpx.UnsupportedProtocol, httpx.InvalidURL)):
            await client.get(url)
    assert seen == []


async def test_redirects_are_checked_again() -> None:
    seen: list[httpx.Request] = []
    guard = EgressGuard(resolver=static_resolver({"public.test": ["93.184.216.34"]}))
    transport = EgressTransport(guard, recorder(seen, redirect_to="http://169.254.169.254/latest"))
    async with httpx.AsyncClient(transport=transport, follow_redirects=True) as client:
        with pytest.raises(EgressDenied):
            await client.get("http://public.test/start")
    assert [r.url.path for r in seen] == ["/start"]
