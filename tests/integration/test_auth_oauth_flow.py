"""End to end: mock authorization server -> PKCE -> token -> protected route; refresh, revocation."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest

from secmw import SecurityMiddleware
from secmw.auth.build import build_jwt, credential_settings
from secmw.auth.stepup import step_up_needed
from secmw.config import parse_config
from secmw.context import RequestContext
from secmw.policy.base import Decision, Effect
from secmw.testing import AuditCapture, MockAuthorizationServer
from tests.auth_support import pkce_tokens
from tests.support import EchoApp

pytestmark = pytest.mark.anyio

RESOURCE = {
    "resource": "https://api.example.test/mcp",
    "authorization_servers": ["https://auth.example.test"],
    "scopes_supported": ["read", "write"],
    "resource_name": "Example MCP",
}


class Setup:
    def __init__(self, mock: MockAuthorizationServer, **auth: Any) -> None:
        self.mock = mock
        self.audit = AuditCapture()
        config = parse_config(
            {
                "auth": {
                    "jwt": mock.jwt_config(
                        keys=[],
                        jwks_url=f"{mock.issuer}/jwks",
                        jwks_min_ttl=0,
                        jwks_cooldown=0.05,
                    ),
                    "protected_resource": RESOURCE,
                    **auth,
                }
            }
        )
        assert config.auth.jwt is not None
        authenticator = build_jwt(
            config.auth.jwt,
            credentials=credential_settings(config.auth),
            revocation=mock.denylist,
            fetcher=mock.jwks.fetcher(),
        )
        self.app = SecurityMiddleware(
            EchoApp(), config, authenticator=authenticator, audit=self.audit
        )
        self.api = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url="https://api.example.test"
        )

    async def get(self, token: str | None, path: str = "/mcp") -> httpx.Response:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        return await self.api.get(path, headers=headers)


@pytest.fixture
async def auth_server() -> AsyncIterator[tuple[MockAuthorizationServer, httpx.AsyncClient]]:
    mock = MockAuthorizationServer(resource="https://api.example.test/mcp")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=mock), base_url=mock.issuer
    ) as http:
        yield mock, http


async def test_pkce_flow_refresh_and_revocation(auth_server: Any) -> None:
    mock, http = auth_server
    setup = Setup(mock)
    # Discovery: the 401 points at the metadata, the metadata at the authorization server.
    anonymous = await setup.get(None)
    assert anonymous.status_code == 401
    challenge = anonymous.headers["www-authenticate"]
    assert "error=" not in challenge
    assert (
        'resource_metadata="https://api.example.test/.well-known/oauth-protected-resource/mcp"'
        in challenge
    )
    metadata = await setup.api.get("/.well-known/oauth-protected-resource/mcp")
    assert metadata.status_code == 200
    assert metadata.json()["authorization_servers"] == ["https://auth.example.test"]
    assert (await http.get("/.well-known/oauth-authorization-server")).json()[
        "code_challenge_methods_supported"
    ] == ["S256"]

    tokens = await pkce_tokens(mock, http, scope="read")
    answer = await setup.get(tokens["access_token"])
    assert answer.status_code == 200 and answer.json()["subject"] == "user-1"

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
    assert (await setup.get(fresh["access_token"])).status_code == 200
    reuse = await http.post(
        "/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "client_id": "test-client",
        },
    )
    assert reuse.status_code == 400 and reuse.json()["error"] == "invalid_grant"

    await http.post("/revoke", data={"token": fresh["access_token"]})
    revoked = await setup.get(fresh["access_token"])
    assert revoked.status_code == 401
    assert 'error="invalid_token"' in revoked.headers["www-authenticate"]
    assert setup.audit.last.name == "authn_token_revoked"
    assert (await setup.get(tokens["access_token"])).status_code == 200  # another jti


async def test_signing_key_removed_from_jwks_is_401(auth_server: Any) -> None:
    mock, http = auth_server
    mock.jwks.max_age = 0  # keys are re-read once per cooldown (0.05 s here)
    setup = Setup(mock)
    tokens = await pkce_tokens(mock, http)
    assert (await setup.get(tokens["access_token"])).status_code == 200
    mock.jwks.remove(mock.signer.kid)
    mock.jwks.add(__import__("secmw.testing", fromlist=["TokenIssuer"]).TokenIssuer())
    await anyio.sleep(0.06)
    answer = await setup.get(tokens["access_token"])
    assert answer.status_code == 401
    assert setup.audit.last.reason == "unknown kid"


async def test_token_for_another_resource_is_refused(auth_server: Any) -> None:
    mock, http = auth_server
    setup = Setup(mock)
    elsewhere = await pkce_tokens(mock, http, resource="https://other.example.test/mcp")
    answer = await setup.get(elsewhere["access_token"])
    assert answer.status_code == 401
    assert setup.audit.last.reason == "audience mismatch"
    named = await pkce_tokens(mock, http, login_hint="erin")
    assert (await setup.get(named["access_token"])).json()["subject"] == "erin"


@pytest.mark.parametrize(
    ("change", "error"),
    [
        pytest.param({"code_verifier": "x" * 43}, "invalid_grant", id="wrong-verifier"),
        pytest.param({"code_verifier": "short"}, "invalid_grant", id="short-verifier"),
        pytest.param({"client_id": "other"}, "invalid_grant", id="other-client"),
        pytest.param({"redirect_uri": "http://evil/cb"}, "invalid_grant", id="other-redirect"),
        pytest.param({"grant_type": "password"}, "unsupported_grant_type", id="password-grant"),
    ],
)
async def test_code_exchange_is_strict(
    auth_server: Any, change: dict[str, str], error: str
) -> None:
    from urllib.parse import parse_qs, urlsplit

    mock, http = auth_server
    verifier, challenge = mock.pkce_pair()
    redirect = "http://127.0.0.1:9/cb"
    answer = await http.get(
        "/authorize",
        params={
            "response_type": "code",
            "client_id": "c",
            "redirect_uri": redirect,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        },
    )
    code = parse_qs(urlsplit(answer.headers["location"]).query)["code"][0]
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect,
        "client_id": "c",
        "code_verifier": verifier,
        **change,
    }
    refused = await http.post("/token", data=form)
    assert refused.status_code == 400 and refused.json()["error"] == error


async def test_plain_pkce_and_bad_redirects_are_refused(auth_server: Any) -> None:
    mock, http = auth_server
    plain = await http.get(
        "/authorize",
        params={
            "response_type": "code",
            "client_id": "c",
            "redirect_uri": "http://127.0.0.1:9/cb",
            "code_challenge": "abc",
            "code_challenge_method": "plain",
        },
    )
    assert plain.status_code == 302 and "error=invalid_request" in plain.headers["location"]
    nowhere = await http.get(
        "/authorize", params={"client_id": "c", "redirect_uri": "javascript:x"}
    )
    assert nowhere.status_code == 400
    assert (await http.get("/nope")).status_code == 404


class StepUpPolicy:
    """A policy double: /admin needs MFA within 5 minutes, expressed with step_up_needed."""

    needs_body = False

    def evaluate(self, ctx: RequestContext) -> Decision:
        if not ctx.principal.is_authenticated:
            return Decision(Effect.DENY, ("test:authn",), "authentication required")
        if ctx.path == "/admin" and step_up_needed(
            ctx.principal, acr_values=("urn:mfa",), max_age=300, now=time.time()
        ):
            return Decision(
                Effect.STEP_UP, ("test:mfa",), "mfa required", acr_values=("urn:mfa",), max_age=300
            )
        return Decision(Effect.ALLOW, ("test:allow",), "ok")


async def test_step_up_challenge_then_mfa_token_passes(auth_server: Any) -> None:
    mock, http = auth_server
    setup = Setup(mock)
    setup.app.pipeline.policy = StepUpPolicy()
    weak = await pkce_tokens(mock, http)
    answer = await setup.get(weak["access_token"], "/admin")
    assert answer.status_code == 401
    challenge = answer.headers["www-authenticate"]
    assert 'error="insufficient_user_authentication"' in challenge
    assert 'acr_values="urn:mfa"' in challenge and "max_age=300" in challenge
    assert setup.audit.last.name == "authz_step_up_required"
    mock.amr = ("pwd", "otp")
    strong = await pkce_tokens(mock, http)
    assert (await setup.get(strong["access_token"], "/admin")).status_code == 200


async def test_introspection_endpoint_through_the_middleware(auth_server: Any) -> None:
    mock, http = auth_server
    from secmw.auth.introspection import IntrospectionAuthenticator

    introspection = IntrospectionAuthenticator(
        f"{mock.issuer}/introspect",
        client_id="resource-server",
        client_secret="rs-secret",
        audience=mock.resource,
        client=http,
    )
    app = SecurityMiddleware(EchoApp(), authenticator=introspection, audit=AuditCapture())
    api = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://api.test")
    tokens = await pkce_tokens(mock, http)
    ok = await api.get("/x", headers={"authorization": f"Bearer {tokens['access_token']}"})
    assert ok.status_code == 200
    bad = await api.get("/x", headers={"authorization": "Bearer not-a-token"})
    assert bad.status_code == 401


async def test_jwt_and_introspection_split_bearer_tokens_by_shape(auth_server: Any) -> None:
    from secmw.auth import CompositeAuthenticator
    from secmw.auth.introspection import IntrospectionAuthenticator

    mock, http = auth_server
    config = parse_config({"auth": {"jwt": mock.jwt_config()}})
    assert config.auth.jwt is not None
    introspection = IntrospectionAuthenticator(
        f"{mock.issuer}/introspect",
        client_id="resource-server",
        client_secret="rs-secret",
        audience=mock.resource,
        client=http,
    )
    composite = CompositeAuthenticator([build_jwt(config.auth.jwt, jws_only=True), introspection])
    audit = AuditCapture()
    app = SecurityMiddleware(EchoApp(), authenticator=composite, audit=audit)
    api = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://api.test")
    tokens = await pkce_tokens(mock, http)
    ok = await api.get("/x", headers={"authorization": f"Bearer {tokens['access_token']}"})
    assert ok.status_code == 200 and audit.last.auth_method == "jwt"
    assert introspection.requests == 0
    opaque = await api.get("/x", headers={"authorization": "Bearer opaque-reference-token"})
    assert opaque.status_code == 401 and introspection.requests == 1
    assert audit.last.reason == "token inactive"
