"""Token introspection (RFC 7662) against the mock authorization server, in memory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from secmw.auth.introspection import IntrospectionAuthenticator, IntrospectionError
from secmw.errors import AuthenticationError
from secmw.testing import MockAuthorizationServer
from tests.auth_support import FakeClock, ctx_with, pkce_tokens

pytestmark = pytest.mark.anyio


@pytest.fixture
async def server() -> AsyncIterator[tuple[MockAuthorizationServer, httpx.AsyncClient]]:
    mock = MockAuthorizationServer()
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=mock), base_url=mock.issuer
    ) as http:
        yield mock, http


def introspector(
    mock: MockAuthorizationServer, http: httpx.AsyncClient, **options: Any
) -> IntrospectionAuthenticator:
    settings: dict[str, Any] = {
        "client_id": "resource-server",
        "client_secret": "rs-secret",
        "audience": mock.resource,
        "issuer": mock.issuer,
        "client": http,
    }
    settings.update(options)
    return IntrospectionAuthenticator(f"{mock.issuer}/introspect", **settings)


async def test_active_token_maps_claims_and_is_cached(server: Any) -> None:
    mock, http = server
    tokens = await pkce_tokens(mock, http, scope="read write")
    auth = introspector(mock, http)
    ctx = ctx_with(("authorization", f"Bearer {tokens['access_token']}"))
    principal = await auth.authenticate(ctx)
    assert principal is not None and principal.subject == "user-1"
    assert principal.scopes == {"read", "write"} and principal.auth_method == "introspection"
    await auth.authenticate(ctx)
    assert auth.requests == 1
    assert await auth.authenticate(ctx_with()) is None


async def test_inactive_tokens_are_401_and_negatively_cached(server: Any) -> None:
    mock, http = server
    auth = introspector(mock, http)
    for _ in range(3):
        with pytest.raises(AuthenticationError, match="inactive") as info:
            await auth.check("opaque-unknown")
        assert info.value.status == 401
    assert auth.requests == 1


async def test_revocation_bites_after_the_cache(server: Any) -> None:
    mock, http = server
    tokens = await pkce_tokens(mock, http)
    clock = FakeClock(__import__("time").time())
    auth = introspector(mock, http, cache_ttl=5, clock=clock)
    await auth.check(tokens["access_token"])
    await http.post("/revoke", data={"token": tokens["access_token"]})
    await auth.check(tokens["access_token"])  # still cached: the documented trade-off
    clock.advance(6)
    with pytest.raises(AuthenticationError, match="inactive"):
        await auth.check(tokens["access_token"])


async def test_foreign_audience_and_issuer_are_refused(server: Any) -> None:
    mock, http = server
    tokens = await pkce_tokens(mock, http)
    with pytest.raises(AuthenticationError, match="audience"):
        await introspector(mock, http, audience="https://other").check(tokens["access_token"])
    with pytest.raises(AuthenticationError, match="issuer"):
        await introspector(mock, http, issuer="https://other").check(tokens["access_token"])


async def test_endpoint_failures_are_component_errors(server: Any) -> None:
    mock, http = server
    with pytest.raises(IntrospectionError, match="401"):
        await introspector(mock, http, client_secret="wrong").check("tok")

    def broken(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectTimeout("slow", request=request)

    def garbage(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"<html>")

    def no_active(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"active": "yes"})

    for handler, match in (
        (broken, "ConnectTimeout"),
        (garbage, "non-JSON"),
        (no_active, "boolean"),
    ):
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            with pytest.raises(IntrospectionError, match=match):
                await introspector(mock, http, client=client).check("tok")


async def test_oversized_tokens_are_refused_before_any_request(server: Any) -> None:
    mock, http = server
    auth = introspector(mock, http, max_token_bytes=16)
    with pytest.raises(AuthenticationError, match="max_token_bytes"):
        await auth.check("x" * 17)
    assert auth.requests == 0
