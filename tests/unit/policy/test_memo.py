"""The decision memo of static rules: it never carries one request's decision to another
that differs in anything the rules read, and it stays bounded."""

from __future__ import annotations

import dataclasses

from secmw.context import ANONYMOUS
from secmw.policy import Effect
from tests.unit.policy.test_engine import ALICE, engine, request

BOB = dataclasses.replace(ALICE, subject="bob", roles=frozenset({"viewer"}))
ANON = ANONYMOUS


def rpc(tool: str) -> dict[str, object]:
    return {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool}}


def test_static_rules_answer_each_principal_and_path_for_itself() -> None:
    rules = [
        {"id": "admin", "effect": "allow", "when": {"paths": ["/x/**"], "roles_any": ["admin"]}},
        {"id": "read", "effect": "allow", "when": {"paths": ["/x/public"], "methods": ["GET"]}},
    ]
    policy = engine(rules)
    for _ in range(2):  # the second round is answered from the memo
        assert policy.evaluate(request("/x/a", principal=ALICE)).effect is Effect.ALLOW
        assert policy.evaluate(request("/x/a", principal=BOB)).effect is Effect.DENY
        assert policy.evaluate(request("/x/a", principal=ANON)).effect is Effect.DENY
        assert policy.evaluate(request("/x/public", principal=BOB)).effect is Effect.ALLOW
        post = request("/x/public", method="POST", principal=BOB)
        assert policy.evaluate(post).effect is Effect.DENY
    assert policy._memo  # the rules are static: decisions were remembered


def test_tool_calls_are_told_apart() -> None:
    rules = [{"id": "t", "effect": "allow", "when": {"paths": ["/mcp"], "tools": ["search"]}}]
    policy = engine(rules)
    for _ in range(2):
        assert policy.evaluate(request("/mcp", method="POST", body=rpc("search"))).allowed
        assert not policy.evaluate(request("/mcp", method="POST", body=rpc("delete"))).allowed


def test_rules_reading_anything_else_are_never_remembered() -> None:
    rules = [
        {"id": "dept", "effect": "allow", "when": {"claims": {"dept": {"equals": "finance"}}}},
        {"id": "hdr", "effect": "allow", "when": {"headers": {"x-team": {"equals": "blue"}}}},
        {
            "id": "own",
            "effect": "allow",
            "when": {"paths": ["/u/{user}"], "principal_matches_path": {"subject": "user"}},
        },
    ]
    policy = engine(rules)
    other = dataclasses.replace(BOB, claims={"dept": "sales"})
    for _ in range(2):
        assert policy.evaluate(request("/y", principal=ALICE)).allowed
        assert not policy.evaluate(request("/y", principal=other)).allowed
        assert policy.evaluate(request("/y", principal=other, headers=[("x-team", "blue")])).allowed
        assert policy.evaluate(request("/u/bob", principal=other)).allowed
        assert not policy.evaluate(request("/u/alice", principal=other)).allowed
    assert not policy._memo


def test_step_up_rules_are_never_remembered() -> None:
    rules = [
        {"id": "read", "effect": "allow", "when": {"paths": ["/pay/**"]}},
        {"id": "mfa", "effect": "step_up", "when": {"paths": ["/pay/**"]}, "acr_values": ["gold"]},
    ]
    policy = engine(rules)
    weak = dataclasses.replace(ALICE, acr=None, amr=())
    for _ in range(2):
        assert policy.evaluate(request("/pay/1", principal=weak)).effect is Effect.STEP_UP
        strong = dataclasses.replace(ALICE, acr="gold")
        assert policy.evaluate(request("/pay/1", principal=strong)).effect is Effect.ALLOW
    assert not policy._memo


def test_the_memo_is_bounded_by_its_size() -> None:
    policy = engine([{"id": "all", "effect": "allow", "when": {"paths": ["/**"]}}])
    policy.memo_size = 50
    for index in range(500):
        assert policy.evaluate(request(f"/p/{index}")).allowed
    assert len(policy._memo) == 50


def test_a_method_named_only_in_unless_is_part_of_the_key() -> None:
    rules = [
        {"id": "signed-in", "effect": "allow", "when": {"authenticated": True}},
        {
            "id": "admin-read-only",
            "effect": "deny",
            "when": {"paths": ["/admin/**"]},
            "unless": {"methods": ["GET"]},
        },
    ]
    for order in (["GET", "DELETE", "POST"], ["DELETE", "GET", "POST"]):
        policy = engine(rules)
        for method in order:
            decision = policy.evaluate(request("/admin/users", method=method, principal=ALICE))
            assert decision.allowed is (method == "GET"), (order, method)
