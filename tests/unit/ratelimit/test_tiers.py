"""What each key part reads from the request, and the costs a tier charges."""

from __future__ import annotations

import json
from typing import Any

import pytest

from secmw.context import Principal, RequestContext
from secmw.ratelimit import Tier, TierConfig
from tests.support import http_scope

ALICE = Principal(subject="alice", tenant="acme", credential_id="key-1", auth_method="api_key")
NO_TENANT = Principal(subject="bob", auth_method="test")
BEARER = Principal(
    subject="carol", credential_id="jti:t1", auth_method="jwt", claims={"iss": "https://a.test"}
)


def ctx_for(principal: Principal | None = None, path: str = "/api", **scope: Any) -> RequestContext:
    ctx = RequestContext.from_scope(http_scope(path, **scope))
    if principal is not None:
        ctx.principal = principal
    return ctx


def tier(**config: Any) -> Tier:
    return Tier(TierConfig.model_validate({"name": "t", "rate": "5/minute", **config}))


@pytest.mark.parametrize(
    ("key", "principal", "expected"),
    [
        pytest.param("global", ALICE, ("*",), id="global"),
        pytest.param("principal", ALICE, ("p:api_key,acme,alice",), id="principal"),
        pytest.param("principal", BEARER, ("p:https://a.test,,carol",), id="principal-issuer"),
        pytest.param("principal", None, ("ip:203.0.113.7",), id="anonymous-by-ip"),
        pytest.param("tenant", ALICE, ("t:acme",), id="tenant"),
        pytest.param("tenant", NO_TENANT, ("p:test,,bob",), id="no-tenant"),
        pytest.param("ip", ALICE, ("203.0.113.7",), id="ip"),
        pytest.param("route", ALICE, ("GET /api",), id="route"),
        pytest.param("api_key", ALICE, ("k:key-1",), id="api-key"),
        pytest.param("api_key", NO_TENANT, ("p:test,,bob",), id="no-api-key"),
        pytest.param("api_key", BEARER, ("p:https://a.test,,carol",), id="bearer-not-per-token"),
        pytest.param("tenant+ip", ALICE, ("t:acme", "203.0.113.7"), id="combined"),
    ],
)
def test_key_parts(key: str, principal: Principal | None, expected: tuple[str, ...]) -> None:
    assert tier(key=key).keys(ctx_for(principal)) == [(expected, 1)]


def rpc_ctx(*tools: str) -> RequestContext:
    ctx = ctx_for(ALICE, method="POST", headers=[("content-type", "application/json")])
    calls = [
        {"jsonrpc": "2.0", "id": i, "method": "tools/call", "params": {"name": name}}
        for i, name in enumerate(tools)
    ]
    ctx.load_body(json.dumps(calls if len(calls) > 1 else calls[0]).encode())
    return ctx


def test_tool_keys_per_tool_and_batch_costs() -> None:
    per_tool = tier(key="principal+tool", costs={"tools": {"big": 4}})
    assert per_tool.keys(rpc_ctx("a", "big", "a")) == [
        (("p:api_key,acme,alice", "tool:a"), 2),
        (("p:api_key,acme,alice", "tool:big"), 4),
    ]
    assert per_tool.keys(ctx_for(ALICE)) == []  # no tools/call: not counted
    overall = tier(key="principal", costs={"tools": {"big": 4}})
    assert overall.keys(rpc_ctx("a", "big")) == [(("p:api_key,acme,alice",), 5)]


@pytest.mark.parametrize(
    "routes",
    [
        pytest.param({"/api/**": 1, "/api/export/**": 10, "/api/export": 2}, id="broad-first"),
        pytest.param({"/api/export": 2, "/api/export/**": 10, "/api/**": 1}, id="specific-first"),
    ],
)
def test_route_costs_do_not_depend_on_the_order_of_the_table(routes: dict[str, int]) -> None:
    # The longest prefix wins, and an exact entry beats the base of a /prefix/**.
    costly = tier(key="ip", costs={"routes": routes})
    assert costly.keys(ctx_for(ALICE, "/api/export/x"))[0][1] == 10
    assert costly.keys(ctx_for(ALICE, "/api/export"))[0][1] == 2
    assert costly.keys(ctx_for(ALICE, "/api/other"))[0][1] == 1
    assert costly.keys(ctx_for(ALICE, "/elsewhere"))[0][1] == 1  # the tier's cost


def test_one_subject_of_two_tenants_or_issuers_is_two_principals() -> None:
    per_principal = tier(key="principal")
    globex = Principal(subject="alice", tenant="globex", auth_method="api_key")
    other_issuer = Principal(subject="alice", auth_method="jwt", claims={"iss": "https://b.test"})
    comma = Principal(subject="x", tenant="acme,alice", auth_method="api_key")
    keys = {per_principal.keys(ctx_for(p))[0][0] for p in (ALICE, globex, other_issuer, comma)}
    assert len(keys) == 4


def test_head_shares_the_get_budget_of_a_route() -> None:
    per_route = tier(key="ip+route")
    get, head = ctx_for(ALICE), ctx_for(ALICE, method="HEAD")
    assert per_route.keys(get) == per_route.keys(head)
    assert per_route.keys(ctx_for(ALICE, method="POST")) != per_route.keys(get)


def test_long_client_chosen_parts_are_counted_under_a_digest() -> None:
    long_path = "/" + "a" * 8000
    keys = tier(key="route").keys(ctx_for(ALICE, path=long_path))
    (part,) = keys[0][0]
    assert part.startswith("sha256:") and len(part) < 80
    other = tier(key="route").keys(ctx_for(ALICE, path=long_path + "b"))
    assert other[0][0] != keys[0][0]
    tool = tier(key="principal+tool").keys(rpc_ctx("t" * 5000))
    assert len(tool[0][0][1]) < 80


def test_plans_pick_the_rate_and_share_counters() -> None:
    t = tier(plans={"paid": "10/minute"})
    free = t.limits_for(ctx_for(Principal(subject="x", tier="free")))
    paid = t.limits_for(ctx_for(Principal(subject="x", tier="paid")))
    assert (free[0].amount, paid[0].amount) == (5, 10)
    assert free[0].slot == paid[0].slot == "t:60"


def test_several_windows_get_their_own_policy_names() -> None:
    limits = tier(rate="10/second;1000/hour").limits
    assert [(lim.policy, lim.descriptor) for lim in limits] == [
        ("t-1s", '"t-1s";q=10;w=1'),
        ("t-3600s", '"t-3600s";q=1000;w=3600'),
    ]


def test_a_short_part_spelt_like_a_digest_does_not_alias_a_long_one() -> None:
    import hashlib

    long_tool = "t" * 5000
    alias = "sha256:" + hashlib.sha256(long_tool.encode()).hexdigest()[:32]
    per_tool = tier(key="principal+tool")
    assert per_tool.keys(rpc_ctx(long_tool)) != per_tool.keys(rpc_ctx(alias))


@pytest.mark.parametrize(
    ("key", "shared"),
    [
        pytest.param("global", True, id="global"),
        pytest.param("tenant", True, id="tenant-members"),
        pytest.param("route+tool", True, id="route-tool"),
        pytest.param("ip", True, id="ip-everyone-behind-one-nat"),
        pytest.param("ip+route", True, id="ip-route"),
        pytest.param("principal", False, id="principal"),
        pytest.param("api_key", False, id="api-key"),
        pytest.param("tenant+principal", False, id="tenant-principal"),
        pytest.param("ip+principal", False, id="ip-principal"),
    ],
)
def test_a_tier_is_shared_unless_only_the_caller_can_fill_it(key: str, shared: bool) -> None:
    assert tier(key=key).limits[0].shared is shared


def test_a_sessions_message_tier_is_its_own() -> None:
    assert not tier(key="connection", applies_to="messages").limits[0].shared
