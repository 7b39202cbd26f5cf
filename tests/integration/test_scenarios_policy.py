"""Scenarios, full chain: the policy decides, the audit line names the rule that did."""

from __future__ import annotations

import time

import pytest

from secmw.testing import InMemoryJWKS, TokenIssuer
from tests.scenario_support import AUDIENCE, ISSUER, MFA, Service, assert_no_credentials

pytestmark = pytest.mark.anyio


@pytest.fixture
def signer() -> TokenIssuer:
    return TokenIssuer(issuer=ISSUER, audience=AUDIENCE)


@pytest.fixture
def service(signer: TokenIssuer) -> Service:
    return Service(signer, InMemoryJWKS(signer))


@pytest.mark.parametrize(
    ("roles", "status", "event", "rule_ids"),
    [
        pytest.param(["admin"], 200, "authz_allow", ("signed-in",), id="admin"),
        pytest.param(["dev"], 403, "authz_fail", ("admin-area",), id="developer"),
        pytest.param([], 403, "authz_fail", ("admin-area",), id="no-role"),
    ],
)
async def test_admin_area(
    service: Service,
    signer: TokenIssuer,
    roles: list[str],
    status: int,
    event: str,
    rule_ids: tuple[str, ...],
) -> None:
    token = signer.mint("bob", roles=roles)
    # Spellings that canonicalise to the admin area are judged as the admin area.
    for path, raw in [("/api/admin/users", None), ("/api//admin/./users", None)]:
        sent = await service.request(path, token=token, raw_path=raw)
        assert sent.status == status, path
        record = service.event(sent)
        assert (record.name, record.status, record.rule_ids, record.subject) == (
            event,
            status,
            rule_ids,
            "bob",
        )
        assert record.path == "/api/admin/users"
    if status == 403:
        assert sent.json()["detail"] == "You are not allowed to perform this request."
        assert record.reason == "admin area"
        assert service.inner.calls == []
    assert_no_credentials(service.audit.lines(), token)


async def test_anonymous_admin_request_is_challenged_not_forbidden(service: Service) -> None:
    sent = await service.request("/api/admin/users")
    assert sent.status == 401
    assert service.event(sent).name == "authn_token_missing"


async def test_tenant_isolation(service: Service, signer: TokenIssuer) -> None:
    acme = signer.mint("alice", tenant="acme")
    own = await service.request("/tenants/acme/invoices", token=acme)
    other = await service.request("/tenants/globex/invoices", token=acme)

    assert own.status == 200 and own.json() == {"tenant": "acme", "subject": "alice"}
    assert other.status == 403
    assert [scope["path"] for scope in service.inner.calls] == ["/tenants/acme/invoices"]
    allowed, refused = service.event(own), service.event(other)
    assert (allowed.name, allowed.tenant, allowed.rule_ids) == (
        "authz_allow",
        "acme",
        ("signed-in",),
    )
    assert (refused.name, refused.tenant, refused.rule_ids, refused.reason) == (
        "authz_fail",
        "acme",
        ("tenant-isolation",),
        "another tenant's data",
    )
    # A principal without a tenant reaches no tenant's data.
    loose = await service.request("/tenants/acme/invoices", token=signer.mint("mallory"))
    assert loose.status == 403
    assert service.event(loose).rule_ids == ("tenant-isolation",)


@pytest.mark.parametrize(
    ("tool", "status", "event", "rule_ids"),
    [
        pytest.param("search", 200, "authz_allow", ("signed-in",), id="listed"),
        pytest.param("shell_exec", 403, "authz_fail", ("mcp-allow-list",), id="not-listed"),
    ],
)
async def test_mcp_tool_allow_list(
    service: Service,
    signer: TokenIssuer,
    tool: str,
    status: int,
    event: str,
    rule_ids: tuple[str, ...],
) -> None:
    token = signer.mint("carol")
    sent = await service.tool(tool, {"query": "weather"}, token=token)

    assert sent.status == status
    reply = sent.json()
    assert reply["id"] == 1
    if status == 200:
        assert reply["result"]["content"][0]["text"] == "search done"
    else:  # JSON-RPC clients get a JSON-RPC error, with the problem document in data
        assert reply["error"]["code"] == -32003
        assert reply["error"]["data"]["status"] == 403
        assert service.inner.calls == []
    record = service.event(sent)
    assert (record.name, record.rpc_method, record.tool, record.rule_ids, record.subject) == (
        event,
        "tools/call",
        tool,
        rule_ids,
        "carol",
    )


async def test_tools_list_only_names_callable_tools(service: Service, signer: TokenIssuer) -> None:
    body = b'{"jsonrpc": "2.0", "id": 7, "method": "tools/list"}'
    sent = await service.request("/mcp", method="POST", token=signer.mint("carol"), body=body)
    assert sent.status == 200
    names = [tool["name"] for tool in sent.json()["result"]["tools"]]
    assert names == ["search", "fetch_report", "delete_repo"]  # shell_exec is hidden


async def test_critical_tool_needs_step_up_then_passes_with_an_mfa_token(
    service: Service, signer: TokenIssuer
) -> None:
    password_only = signer.mint("dave", amr=["pwd"], claims={"auth_time": int(time.time())})
    challenged = await service.tool("delete_repo", {"name": "prod"}, token=password_only)

    assert challenged.status == 401
    challenge = challenged.header("www-authenticate") or ""
    assert 'error="insufficient_user_authentication"' in challenge
    assert f'acr_values="{MFA}"' in challenge
    assert "max_age=300" in challenge
    assert challenged.json()["error"]["code"] == -32001
    assert service.inner.calls == []
    refused = service.event(challenged)
    assert (refused.name, refused.status, refused.rule_ids, refused.subject, refused.tool) == (
        "authz_step_up_required",
        401,
        ("mfa-for-critical-tools",),
        "dave",
        "delete_repo",
    )

    # The client logs in again with a second factor and retries the same call.
    mfa = signer.mint("dave", acr=MFA, amr=["pwd", "otp"], claims={"auth_time": int(time.time())})
    retried = await service.tool("delete_repo", {"name": "prod"}, token=mfa)
    assert retried.status == 200
    assert retried.json()["result"]["content"][0]["text"] == "delete_repo done"
    allowed = service.event(retried)
    assert (allowed.name, allowed.subject, allowed.tool) == ("authz_allow", "dave", "delete_repo")

    # An MFA login that is too old does not count for max_age.
    stale = signer.mint("dave", acr=MFA, claims={"auth_time": int(time.time()) - 3600})
    assert (await service.tool("delete_repo", {"name": "prod"}, token=stale)).status == 401
    assert_no_credentials(service.audit.lines(), password_only, mfa, stale)
