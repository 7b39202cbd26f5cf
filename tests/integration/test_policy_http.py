"""The policy engine behind SecurityMiddleware: bypass table, responses, audit lines."""

from __future__ import annotations

import json
from typing import Any

import pytest

from secmw import SecurityMiddleware
from secmw.testing import AuditCapture, TokenIssuer
from tests.integration.test_path_bypass import HOSTILE, uvicorn_scope
from tests.support import EchoApp, Receiver, call, http_scope

pytestmark = pytest.mark.anyio

ISSUER = TokenIssuer()
RULES: list[dict[str, Any]] = [
    {"id": "everyone", "effect": "allow"},
    {
        "id": "admin-area",
        "effect": "deny",
        "when": {"paths": ["/admin/**"]},
        "reason": "admin area",
    },
    {
        "id": "writers",
        "effect": "deny",
        "when": {"methods": ["POST"], "paths": ["/docs/**"]},
        "unless": {"scopes_any": ["docs:write"]},
        "scopes": ["docs:write"],
    },
    {
        "id": "audited",
        "effect": "allow",
        "when": {"paths": ["/payroll/**"], "roles_any": ["hr"]},
        "obligations": {"audit": "critical"},
    },
    {
        "id": "payroll",
        "effect": "deny",
        "when": {"paths": ["/payroll/**"]},
        "unless": {"roles_any": ["hr"]},
    },
    {
        "id": "tenant-isolation",
        "effect": "deny",
        "when": {"paths": ["/t/{tenant}/**"]},
        "unless": {"principal_matches_path": {"tenant": "tenant"}},
    },
]


def app(audit: AuditCapture | None = None, root: Any = None) -> tuple[SecurityMiddleware, EchoApp]:
    echo = EchoApp()
    config = {"auth": {"jwt": ISSUER.jwt_config()}, "policy": {"rules": RULES}}
    return SecurityMiddleware(root or echo, config, audit=audit or AuditCapture()), echo


def bearer(**claims: Any) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {ISSUER.mint(**claims)}")]


@pytest.mark.parametrize("target", HOSTILE)
async def test_no_spelling_of_the_admin_area_gets_through(target: str) -> None:
    middleware, echo = app()
    scope = uvicorn_scope(target)
    scope["headers"] = [(b"authorization", f"Bearer {ISSUER.mint('u')}".encode())]
    sent = await call(middleware, scope)
    assert sent.status in (400, 403), target
    assert echo.scopes == []


@pytest.mark.parametrize("target", ["/admin", "//admin/x", "/%61dmin", "/x/../admin"])
async def test_no_bypass_under_a_root_path_mount(target: str) -> None:
    middleware, echo = app()
    scope = uvicorn_scope(target, root_path="/api")
    scope["headers"] = [(b"authorization", f"Bearer {ISSUER.mint('u')}".encode())]
    assert (await call(middleware, scope)).status == 403
    assert echo.scopes == []


async def test_anonymous_denial_is_a_challenge_known_denial_a_403() -> None:
    audit = AuditCapture()
    middleware, _ = app(audit)
    anonymous = await call(middleware, http_scope("/admin"))
    assert anonymous.status == 401
    assert anonymous.header("www-authenticate") == 'Bearer realm="secmw"'
    known = await call(middleware, http_scope("/admin", headers=bearer(subject="u")))
    assert known.status == 403
    assert known.json()["detail"] == "You are not allowed to perform this request."
    assert "admin area" not in known.body.decode()  # the reason is for the audit line only
    event = audit.last
    assert (event.name, event.rule_ids, event.reason, event.subject) == (
        "authz_fail",
        ("admin-area",),
        "admin area",
        "u",
    )


async def test_missing_scope_gets_insufficient_scope_challenge() -> None:
    middleware, _ = app()
    sent = await call(
        middleware, http_scope("/docs/a", method="POST", headers=bearer(scopes=["docs:read"]))
    )
    assert sent.status == 403
    assert 'error="insufficient_scope"' in (sent.header("www-authenticate") or "")
    assert 'scope="docs:write"' in (sent.header("www-authenticate") or "")
    ok = await call(
        middleware, http_scope("/docs/a", method="POST", headers=bearer(scopes=["docs:write"]))
    )
    assert ok.status == 200


async def test_obligation_raises_the_audit_severity() -> None:
    audit = AuditCapture()
    middleware, _ = app(audit)
    assert (
        await call(middleware, http_scope("/payroll/2026", headers=bearer(roles=["hr"])))
    ).status == 200
    assert audit.last.severity == "critical"
    assert (
        await call(middleware, http_scope("/payroll/2026", headers=bearer(roles=["dev"])))
    ).status == 403


async def test_tenant_isolation() -> None:
    middleware, _ = app()
    assert (
        await call(middleware, http_scope("/t/acme/orders", headers=bearer(tenant="acme")))
    ).status == 200
    assert (
        await call(middleware, http_scope("/t/globex/orders", headers=bearer(tenant="acme")))
    ).status == 403
    assert (
        await call(middleware, http_scope("/t/acme", headers=bearer()))
    ).status == 403  # no tenant claim


async def test_denied_json_rpc_batch_gets_one_error_per_call() -> None:
    rules = [{"id": "ok", "effect": "allow", "when": {"tools": ["safe"]}}]
    middleware = SecurityMiddleware(
        EchoApp(),
        {
            "auth": {"jwt": ISSUER.jwt_config()},
            "policy": {"rules": rules},
            "audit": {"sink": "none"},
        },
    )
    batch = [
        {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "safe"}},
        {"jsonrpc": "2.0", "id": "b", "method": "tools/call", "params": {"name": "danger"}},
        {"jsonrpc": "2.0", "method": "notifications/x"},
    ]
    headers = [*bearer(), ("content-type", "application/json")]
    sent = await call(
        middleware,
        http_scope("/mcp", method="POST", headers=headers),
        Receiver.body(json.dumps(batch).encode()),
    )
    assert sent.status == 403
    assert sent.header("content-type") == "application/json"
    errors = sent.json()
    assert [error["id"] for error in errors] == [1, "b"]
    assert errors[0]["error"]["code"] == -32003
    assert errors[0]["error"]["data"]["status"] == 403


@pytest.mark.parametrize("content_type", [None, "text/plain; x=application/json"])
async def test_undeclared_tool_call_with_an_over_long_integer_is_refused(
    content_type: str | None,
) -> None:
    # json.loads refuses integers over 4,300 digits; Node's JSON.parse (which many
    # servers use, checking only that the type includes "application/json") and
    # Go read them: the call must not pass as "not JSON".
    rules = [
        {"id": "signed-in", "effect": "allow", "when": {"authenticated": True}},
        {"id": "no-admin", "effect": "deny", "when": {"tools": ["admin_*"]}},
    ]
    echo = EchoApp()
    middleware = SecurityMiddleware(
        echo,
        {
            "auth": {"jwt": ISSUER.jwt_config()},
            "policy": {"rules": rules},
            "audit": {"sink": "none"},
        },
    )
    body = (
        b'{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "admin_reset",'
        b' "arguments": {}, "_meta": {"n": 1' + b"0" * 5000 + b"}}}"
    )
    headers = [*bearer(), *([("content-type", content_type)] if content_type else [])]
    sent = await call(
        middleware, http_scope("/mcp", method="POST", headers=headers), Receiver.body(body)
    )
    assert sent.status == 400
    assert "integer too long" in sent.body.decode()
    assert echo.scopes == []


async def test_policy_default_allow_is_a_recorded_fail_open() -> None:
    audit = AuditCapture()
    config = {"auth": {"allow_anonymous": False}, "policy": {"default": "allow"}}
    middleware = SecurityMiddleware(EchoApp(), config, audit=audit)
    assert (await call(middleware, http_scope("/anything"))).status == 200
    assert audit.named("sys_startup")[0].details["fail_open"] == ["policy.default"]


async def test_step_up_tool_gets_the_rfc9470_challenge_then_passes_with_mfa() -> None:
    rules = [
        {"id": "signed-in", "effect": "allow", "when": {"authenticated": True}},
        {
            "id": "mfa-delete",
            "effect": "step_up",
            "acr_values": ["urn:mfa"],
            "max_age": 300,
            "amr_mfa": [],
            "when": {"tools": ["delete_*"]},
        },
    ]
    audit = AuditCapture()
    middleware = SecurityMiddleware(
        EchoApp(), {"auth": {"jwt": ISSUER.jwt_config()}, "policy": {"rules": rules}}, audit=audit
    )
    body = json.dumps(
        {"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {"name": "delete_file"}}
    ).encode()

    async def attempt(**claims: Any) -> Any:
        headers = [*bearer(**claims), ("content-type", "application/json")]
        return await call(
            middleware, http_scope("/mcp", method="POST", headers=headers), Receiver.body(body)
        )

    weak = await attempt(acr="urn:pwd")
    assert weak.status == 401
    assert weak.header("www-authenticate") == (
        'Bearer realm="secmw", error="insufficient_user_authentication", error_description="A stronger or '
        'more recent authentication is required.", acr_values="urn:mfa", max_age=300'
    )
    assert weak.json()["error"]["code"] == -32001
    assert audit.last.name == "authz_step_up_required"
    import time

    strong = await attempt(acr="urn:mfa", claims={"auth_time": int(time.time()) - 10})
    assert strong.status == 200
    stale = await attempt(acr="urn:mfa", claims={"auth_time": int(time.time()) - 900})
    assert stale.status == 401
