"""secmw.fastapi: route requirements, OpenAPI security schemes, identical challenges."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI, Security

from secmw import Principal, SecurityMiddleware
from secmw.fastapi import (
    api_key_scheme,
    bearer_scheme,
    current_principal,
    install,
    oauth2_scheme,
    optional_principal,
    require,
)
from secmw.testing import AuditCapture, TokenIssuer

pytestmark = pytest.mark.anyio

ISSUER = TokenIssuer()
OAUTH = oauth2_scheme("https://login.example.test/authorize", "https://login.example.test/token",
                      {"reports:read": "read reports", "reports:write": "change reports"})  # fmt: skip


def build(audit: AuditCapture | None = None, *, installed: bool = True) -> SecurityMiddleware:
    api = FastAPI()
    if installed:
        install(api)

    @api.get("/me")
    async def me(user: Principal = Depends(current_principal)) -> dict[str, Any]:
        return {"sub": user.subject}

    @api.get("/hello")
    async def hello(user: Principal = Depends(optional_principal)) -> dict[str, Any]:
        return {"anonymous": not user.is_authenticated}

    @api.get("/reports", dependencies=[Security(require(scopes=["reports:read"], schemes=[OAUTH]))])
    async def reports() -> dict[str, str]:
        return {"reports": "ok"}

    @api.post("/reports")
    async def write(
        user: Principal = Security(
            require(scopes=["reports:read", "reports:write"], schemes=[OAUTH])
        ),
    ) -> dict[str, str]:
        return {"by": user.subject}

    @api.get(
        "/admin",
        dependencies=[
            Depends(require(roles=["admin", "root"], schemes=[bearer_scheme, api_key_scheme()]))
        ],
    )
    async def admin() -> dict[str, bool]:
        return {"admin": True}

    @api.post("/wire", dependencies=[Depends(require(acr=["urn:mfa"], max_age=300, mfa_amr=[]))])
    async def wire() -> dict[str, bool]:
        return {"sent": True}

    config = {
        "auth": {
            "jwt": ISSUER.jwt_config(),
            "public_paths": ["/hello", "/docs", "/openapi.json", "/me"],
        }
    }
    return SecurityMiddleware(api, config, audit=audit or AuditCapture())


def client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")


def auth(**claims: Any) -> dict[str, str]:
    return {"authorization": f"Bearer {ISSUER.mint(**claims)}"}


async def test_openapi_declares_schemes_and_per_route_scopes() -> None:
    async with client(build()) as http:
        document = (await http.get("/openapi.json")).json()
    schemes = document["components"]["securitySchemes"]
    assert schemes["HTTPBearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "An OAuth 2.0 / JWT access token.",
    }
    assert (
        schemes["APIKeyHeader"]["in"] == "header" and schemes["APIKeyHeader"]["name"] == "X-API-Key"
    )
    assert schemes["OAuth2"]["flows"]["authorizationCode"]["scopes"] == {
        "reports:read": "read reports",
        "reports:write": "change reports",
    }
    paths = document["paths"]
    assert paths["/reports"]["get"]["security"] == [{"OAuth2": ["reports:read"]}]
    assert paths["/reports"]["post"]["security"] == [{"OAuth2": ["reports:read", "reports:write"]}]
    assert {"HTTPBearer": []} in paths["/admin"]["get"]["security"]
    assert {"APIKeyHeader": []} in paths["/admin"]["get"]["security"]


async def test_dependency_and_middleware_challenges_are_identical() -> None:
    async with client(build()) as http:
        from_route = await http.get("/me")  # public in the middleware, required by the route
        from_middleware = await http.get("/reports")  # not public: the middleware refuses
    assert from_route.status_code == from_middleware.status_code == 401
    assert (
        from_route.headers["www-authenticate"]
        == from_middleware.headers["www-authenticate"]
        == 'Bearer realm="secmw"'
    )
    assert (
        from_route.headers["content-type"]
        == from_middleware.headers["content-type"]
        == "application/problem+json"
    )
    assert from_route.json()["detail"] == from_middleware.json()["detail"]


async def test_scopes_are_enforced_per_route_with_insufficient_scope() -> None:
    audit = AuditCapture()
    async with client(build(audit)) as http:
        reader = auth(scopes=["reports:read"])
        assert (await http.get("/reports", headers=reader)).json() == {"reports": "ok"}
        refused = await http.post("/reports", headers=reader)
        assert refused.status_code == 403
        assert refused.headers["www-authenticate"] == (
            'Bearer realm="secmw", error="insufficient_scope", error_description="The access token lacks '
            'a required scope.", scope="reports:write"'
        )
        writer = auth(scopes=["reports:read", "reports:write"])
        assert (await http.post("/reports", headers=writer)).json() == {"by": "user-1"}
    failure = audit.named("authz_fail")[0]
    assert (failure.status, failure.rule_ids, failure.path) == (403, ("route",), "/reports")


async def test_roles_and_step_up() -> None:
    async with client(build()) as http:
        assert (await http.get("/admin", headers=auth(roles=["dev"]))).status_code == 403
        assert (await http.get("/admin", headers=auth(roles=["root"]))).json() == {"admin": True}
        weak = await http.post("/wire", headers=auth(acr="urn:pwd"))
        assert weak.status_code == 401
        assert 'error="insufficient_user_authentication"' in weak.headers["www-authenticate"]
        assert 'acr_values="urn:mfa", max_age=300' in weak.headers["www-authenticate"]
        fresh = auth(acr="urn:mfa", claims={"auth_time": int(time.time())})
        assert (await http.post("/wire", headers=fresh)).json() == {"sent": True}


async def test_optional_principal_and_fallback_without_install() -> None:
    async with client(build(installed=False)) as http:
        assert (await http.get("/hello")).json() == {"anonymous": True}
        refused = await http.get("/me")
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"] == 'Bearer realm="secmw"'
        assert refused.json() == {"detail": "Authentication is required."}


async def test_dependency_without_the_middleware_fails_closed() -> None:
    api = FastAPI()

    @api.get("/me")
    async def me(user: Principal = Depends(current_principal)) -> dict[str, str]:
        return {"sub": user.subject}

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=api, raise_app_exceptions=False), base_url="http://t"
    ) as http:
        assert (await http.get("/me")).status_code == 500


async def test_an_open_breaker_raised_in_a_route_is_a_503_when_installed() -> None:
    from secmw.breaker import CircuitOpen

    api = FastAPI()
    install(api)

    @api.get("/billing")
    async def billing() -> dict[str, str]:
        raise CircuitOpen("billing", retry_after=4.5)

    audit = AuditCapture()
    app = SecurityMiddleware(api, {"auth": {"allow_anonymous": True}}, audit=audit)
    async with client(app) as c:
        sent = await c.get("/billing")
    assert sent.status_code == 503 and sent.headers["retry-after"] == "5"
    assert sent.json()["detail"] == "The upstream service is temporarily unavailable."
    assert (audit.last.name, audit.last.status) == ("upstream_circuit_open", 503)


SECRET = "sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc"


def raising(denial: Exception) -> tuple[SecurityMiddleware, AuditCapture]:
    """A FastAPI app with secmw's handlers whose ``/x`` raises ``denial``; redaction on."""
    api = FastAPI()
    install(api)

    @api.get("/x")
    async def refuse() -> dict[str, str]:
        raise denial

    audit = AuditCapture()
    config = {"auth": {"allow_anonymous": True}, "redact": {"enabled": True}}
    return SecurityMiddleware(api, config, audit=audit), audit


async def test_an_app_raised_refusals_reason_is_redacted_in_the_trail() -> None:
    from secmw.errors import AccessDenied

    app, audit = raising(AccessDenied("Not allowed.", reason=f"key {SECRET} refused"))
    async with client(app) as c:
        sent = await c.get("/x")
    assert sent.status_code == 403
    assert audit.last.name == "authz_fail" and SECRET not in audit.last.to_json()


async def test_route_refusals_carry_the_request_id_once() -> None:
    async with client(build()) as c:
        sent = await c.get("/me")  # public path, anonymous: the route's own 401
    assert sent.status_code == 401
    assert len(sent.headers.get_list("x-request-id")) == 1


async def test_an_app_raised_challenge_is_redacted_in_www_authenticate_when_installed() -> None:
    from secmw.errors import AuthenticationError

    app, audit = raising(AuthenticationError(f"token {SECRET} was revoked"))
    async with client(app) as c:
        sent = await c.get("/x")
    assert sent.status_code == 401
    assert SECRET not in sent.headers.get("www-authenticate", "") and SECRET not in sent.text
    assert audit.named("secret_redacted")[0].status == 401


async def test_an_app_raised_refusal_with_framing_headers_is_the_apps_error_when_installed() -> (
    None
):
    from secmw.errors import AccessDenied

    api = FastAPI()
    install(api)

    @api.get("/x")
    async def refuse() -> dict[str, str]:
        raise AccessDenied("no", headers=[(b"content-length", b"0")])

    audit = AuditCapture()
    app = SecurityMiddleware(api, {"auth": {"allow_anonymous": True}}, audit=audit)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        sent = await c.get("/x")
    assert sent.status_code == 500
    assert len(sent.headers.get_list("content-length")) <= 1
    assert audit.last.name == "app_error"
