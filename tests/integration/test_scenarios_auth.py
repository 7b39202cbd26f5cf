"""Scenarios, full chain: who gets in, checked on the HTTP answer and on the audit trail.

Two services share one issuer and one JWKS (served in memory): every bad token is
refused by both in exactly the same way. The OAuth 2.1 code flow with PKCE runs
against the mock authorization server and its tokens drive the same chain.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator

import httpx
import pytest

from secmw.testing import InMemoryJWKS, MockAuthorizationServer, TokenIssuer
from tests.auth_support import pkce_tokens
from tests.scenario_support import AUDIENCE, ISSUER, LEAKED, MFA, Service, assert_no_credentials

pytestmark = pytest.mark.anyio


@pytest.fixture
def signer() -> TokenIssuer:
    return TokenIssuer(issuer=ISSUER, audience=AUDIENCE, kid="scenario-1")


@pytest.fixture
def jwks(signer: TokenIssuer) -> InMemoryJWKS:
    return InMemoryJWKS(signer)


async def test_authenticated_request_flows_end_to_end(
    signer: TokenIssuer, jwks: InMemoryJWKS
) -> None:
    service = Service(signer, jwks)
    token = signer.mint("alice", tenant="acme", roles=["dev"])
    sent = await service.request("/api/me", token=token)

    assert sent.status == 200
    assert sent.json() == {
        "path": "/api/me",
        "subject": "alice",
        "tenant": "acme",
        "roles": ["dev"],
    }
    assert sent.header("ratelimit-policy") is not None
    (scope,) = service.inner.calls
    assert scope["user"].subject == "alice"
    assert scope["state"]["secmw"].request_id == sent.header("x-request-id")
    (event,) = service.events(sent)
    assert (event.name, event.outcome, event.status) == ("authz_allow", "success", 200)
    assert (event.subject, event.tenant, event.auth_method) == ("alice", "acme", "jwt")
    assert event.rule_ids == ("signed-in",)
    assert jwks.requests == 1  # the keys were fetched once, then cached
    assert_no_credentials(service.audit.lines(), token)


async def test_unauthenticated_request_is_challenged_and_never_reaches_the_app(
    signer: TokenIssuer, jwks: InMemoryJWKS
) -> None:
    service = Service(signer, jwks)
    sent = await service.request("/api/me")

    assert sent.status == 401
    assert sent.header("www-authenticate") == 'Bearer realm="scenario"'
    assert sent.header("content-type") == "application/problem+json"
    assert sent.json()["detail"] == "Authentication is required."
    assert service.inner.calls == []
    (event,) = service.events(sent)
    assert (event.name, event.outcome, event.status, event.subject) == (
        "authn_token_missing",
        "failure",
        401,
        None,
    )
    # The public path needs no credential and is still recorded.
    health = await service.request("/healthz")
    assert health.status == 200
    assert service.event(health).name == "authz_allow"


def _tampered(token: str) -> str:
    """The same signature over a payload whose subject was changed to ``root``."""
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = "root"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


async def test_bad_tokens_are_refused_identically_by_two_services_sharing_the_jwks(
    signer: TokenIssuer, jwks: InMemoryJWKS
) -> None:
    published_stranger = TokenIssuer(issuer="https://elsewhere.test", audience=AUDIENCE)
    jwks.add(published_stranger)  # its key is in the JWKS, but its issuer is not trusted
    unknown_key = TokenIssuer(issuer=ISSUER, audience=AUDIENCE, kid="not-published")
    cases = {
        "expired": (signer.mint("alice", expires_in=-600), "authn_token_expired"),
        "tampered": (_tampered(signer.mint("alice")), "authn_token_invalid"),
        "foreign-issuer": (published_stranger.mint("alice"), "authn_token_invalid"),
        "unknown-key": (unknown_key.mint("alice"), "authn_token_invalid"),
        "wrong-audience": (
            signer.mint("alice", claims={"aud": "https://other.test"}),
            "authn_token_invalid",
        ),
    }
    services = [Service(signer, jwks), Service(signer, jwks)]
    for name, (token, event_name) in cases.items():
        answers = [await service.request("/api/me", token=token) for service in services]
        first, second = answers
        assert first.status == second.status == 401, name
        challenge = first.header("www-authenticate")
        assert challenge is not None and 'error="invalid_token"' in challenge, name
        assert challenge == second.header("www-authenticate"), name
        assert first.json()["detail"] == second.json()["detail"], name
        events = [service.event(sent) for service, sent in zip(services, answers, strict=True)]
        assert {(e.name, e.reason, e.status, e.subject) for e in events} == {
            (event_name, events[0].reason, 401, None)
        }, name
    assert services[0].inner.calls == services[1].inner.calls == []
    # A good token still passes both: the refusals did not poison any cache.
    good = signer.mint("alice")
    for service in services:
        assert (await service.request("/api/me", token=good)).status == 200
        assert_no_credentials(service.audit.lines(), good, *(token for token, _ in cases.values()))


@pytest.fixture
async def auth_server() -> AsyncIterator[tuple[MockAuthorizationServer, httpx.AsyncClient]]:
    mock = MockAuthorizationServer(issuer=ISSUER, resource=AUDIENCE, subject="olivia")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=mock), base_url=mock.issuer
    ) as http:
        yield mock, http


async def test_oauth_code_flow_with_pkce_and_refresh_feeds_the_chain(
    auth_server: tuple[MockAuthorizationServer, httpx.AsyncClient],
) -> None:
    mock, http = auth_server
    service = Service(mock.signer, mock.jwks, revocation=mock.denylist)

    tokens = await pkce_tokens(mock, http, scope="read", resource=AUDIENCE)
    first = await service.request("/api/me", token=tokens["access_token"])
    assert first.status == 200 and first.json()["subject"] == "olivia"

    refreshed = await http.post(
        "/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "client_id": "test-client",
        },
    )
    assert refreshed.status_code == 200
    fresh = refreshed.json()
    assert fresh["access_token"] != tokens["access_token"]
    second = await service.request("/api/me", token=fresh["access_token"])
    assert second.status == 200 and second.json()["subject"] == "olivia"
    # Refresh tokens rotate: the old one is spent.
    replay = await http.post(
        "/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "client_id": "test-client",
        },
    )
    assert replay.status_code == 400

    await http.post("/revoke", data={"token": fresh["access_token"]})
    revoked = await service.request("/api/me", token=fresh["access_token"])
    assert revoked.status == 401
    assert 'error="invalid_token"' in (revoked.header("www-authenticate") or "")

    names = [service.event(sent).name for sent in (first, second, revoked)]
    assert names == ["authz_allow", "authz_allow", "authn_token_revoked"]
    assert {service.event(sent).subject for sent in (first, second)} == {"olivia"}
    assert_no_credentials(
        service.audit.lines(),
        tokens["access_token"],
        tokens["refresh_token"],
        fresh["access_token"],
        fresh["refresh_token"],
        *LEAKED,
    )


async def test_step_up_through_the_authorization_server(
    auth_server: tuple[MockAuthorizationServer, httpx.AsyncClient],
) -> None:
    mock, http = auth_server
    service = Service(mock.signer, mock.jwks, revocation=mock.denylist)
    password = await pkce_tokens(mock, http, scope="tools", resource=AUDIENCE)
    challenged = await service.tool("delete_repo", {"name": "prod"}, token=password["access_token"])
    assert challenged.status == 401
    challenge = challenged.header("www-authenticate") or ""
    assert 'error="insufficient_user_authentication"' in challenge
    assert service.event(challenged).name == "authz_step_up_required"

    # The client sends the user back to the authorization server, which asks for a
    # second factor; the new token carries it.
    mock.acr, mock.amr = MFA, ("pwd", "otp")
    stronger = await pkce_tokens(mock, http, scope="tools", resource=AUDIENCE)
    allowed = await service.tool("delete_repo", {"name": "prod"}, token=stronger["access_token"])
    assert allowed.status == 200
    event = service.event(allowed)
    assert (event.name, event.subject, event.tool) == ("authz_allow", "olivia", "delete_repo")
    assert_no_credentials(service.audit.lines(), password["access_token"], stronger["access_token"])
