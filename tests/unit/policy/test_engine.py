"""The rule engine: every condition type, both combining algorithms, batches, step-up."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secmw.context import Finding, Principal, RequestContext
from secmw.errors import BadRequest, ConfigError
from secmw.policy import Effect, PolicyConfig, PolicyEngine
from tests.support import http_scope

ALICE = Principal(
    subject="alice",
    tenant="acme",
    roles=frozenset({"analyst", "admin"}),
    scopes=frozenset({"read", "write"}),
    claims={"dept": "finance", "groups": ["g1", "g2"], "level": 3, "email": "alice@corp.example"},
    tier="paid",
    auth_method="jwt",
    acr="urn:mfa",
    amr=("pwd", "otp"),
    auth_time=1_000_000.0,
)
# 2026-11-23 is a Monday; 10:30 UTC.
MONDAY_1030 = datetime(2026, 11, 23, 10, 30, tzinfo=UTC).timestamp()


def engine(rules: list[dict[str, Any]], clock: float = MONDAY_1030, **policy: Any) -> PolicyEngine:
    config = PolicyConfig.model_validate({"rules": rules, **policy})
    return PolicyEngine.from_config(config, clock=lambda: clock)


def request(
    path: str = "/x",
    *,
    method: str = "GET",
    principal: Principal | None = ALICE,
    headers: list[tuple[str, str]] | None = None,
    client: str = "10.1.2.3",
    body: Any = None,
    findings: list[Finding] | None = None,
) -> RequestContext:
    all_headers = list(headers or [])
    if body is not None:
        all_headers.append(("content-type", "application/json"))
    ctx = RequestContext.from_scope(
        http_scope(path, method=method, headers=all_headers, client=(client, 1))
    )
    if body is not None:
        ctx.load_body(json.dumps(body).encode())
    if principal is not None:
        ctx.principal = principal
    ctx.findings.extend(findings or [])
    return ctx


def call(tool: str, arguments: dict[str, Any] | None = None, ident: int = 1) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": ident,
        "method": "tools/call",
        "params": {"name": tool, "arguments": arguments or {}},
    }


def allowed(when: dict[str, Any], ctx: RequestContext, clock: float = MONDAY_1030) -> bool:
    return engine([{"id": "r", "effect": "allow", "when": when}], clock).evaluate(ctx).allowed


BOB = Principal(subject="bob", tenant="other", auth_method="api_key", tier="free")

CONDITIONS = [
    # principal
    pytest.param({"authenticated": True}, request(), True, id="authenticated"),
    pytest.param(
        {"authenticated": True}, request(principal=None), False, id="authenticated-anonymous"
    ),
    pytest.param({"authenticated": False}, request(principal=None), True, id="anonymous"),
    pytest.param({"subjects": ["alice"]}, request(), True, id="subject"),
    pytest.param({"subjects": ["alice"]}, request(principal=BOB), False, id="subject-other"),
    pytest.param({"tenants": ["acme"]}, request(), True, id="tenant"),
    pytest.param({"roles_any": ["x", "admin"]}, request(), True, id="roles-any"),
    pytest.param({"roles_any": ["x"]}, request(), False, id="roles-any-miss"),
    pytest.param({"roles_all": ["admin", "analyst"]}, request(), True, id="roles-all"),
    pytest.param({"roles_all": ["admin", "root"]}, request(), False, id="roles-all-miss"),
    pytest.param({"scopes_any": ["write"]}, request(), True, id="scopes-any"),
    pytest.param({"scopes_all": ["read", "delete"]}, request(), False, id="scopes-all-miss"),
    pytest.param({"tiers": ["paid"]}, request(), True, id="tier"),
    pytest.param({"tiers": ["paid"]}, request(principal=BOB), False, id="tier-miss"),
    pytest.param({"auth_methods": ["api_key"]}, request(principal=BOB), True, id="auth-method"),
    pytest.param({"acr": ["urn:mfa"]}, request(), True, id="acr"),
    pytest.param({"amr_any": ["otp", "hwk"]}, request(), True, id="amr"),
    pytest.param({"claims": {"dept": {"equals": "finance"}}}, request(), True, id="claim-equals"),
    pytest.param({"claims": {"level": {"equals": "3"}}}, request(), False, id="claim-equals-typed"),
    pytest.param({"claims": {"level": {"in": [2, 3]}}}, request(), True, id="claim-in"),
    pytest.param({"claims": {"groups": {"contains": "g2"}}}, request(), True, id="claim-contains"),
    pytest.param(
        {"claims": {"email": {"regex": "@corp\\.example$"}}}, request(), True, id="claim-regex"
    ),
    pytest.param(
        {"claims": {"email": {"regex": "@evil$"}}}, request(), False, id="claim-regex-miss"
    ),
    pytest.param({"claims": {"email": {"prefix": "alice@"}}}, request(), True, id="claim-prefix"),
    pytest.param({"claims": {"missing": {"present": False}}}, request(), True, id="claim-absent"),
    pytest.param({"claims": {"dept": {"present": True}}}, request(), True, id="claim-present"),
    # request
    pytest.param({"methods": ["get", "HEAD"]}, request(), True, id="method"),
    pytest.param({"methods": ["POST"]}, request(), False, id="method-miss"),
    pytest.param({"paths": ["/x"]}, request("/x"), True, id="path"),
    pytest.param(
        {"paths": ["/admin/**"]}, request("/administrator"), False, id="path-segment-aware"
    ),
    pytest.param(
        {"paths": ["/t/{t}/**"], "path_params": {"t": {"equals": "acme"}}},
        request("/t/acme/a"),
        True,
        id="path-param",
    ),
    pytest.param(
        {"paths": ["/t/{t}/**"], "principal_matches_path": {"tenant": "t"}},
        request("/t/acme"),
        True,
        id="tenant-match",
    ),
    pytest.param(
        {"paths": ["/t/{t}/**"], "principal_matches_path": {"tenant": "t"}},
        request("/t/evil"),
        False,
        id="tenant-mismatch",
    ),
    pytest.param(
        {"hosts": ["*.example.com"]},
        request(headers=[("host", "API.example.com:8443")]),
        True,
        id="host-glob-port",
    ),
    pytest.param(
        {"hosts": ["api.example.com"]},
        request(headers=[("host", "evil.com")]),
        False,
        id="host-miss",
    ),
    pytest.param({"hosts": ["api.example.com"]}, request(), False, id="host-absent"),
    pytest.param(
        {"hosts": ["api.example.com"]},
        request(headers=[("host", "api.example.com.:443")]),
        True,
        id="host-trailing-dot",
    ),
    pytest.param({"client_ips": ["10.0.0.0/8"]}, request(), True, id="cidr"),
    pytest.param(
        {"client_ips": ["192.168.0.0/16", "2001:db8::/32"]}, request(), False, id="cidr-miss"
    ),
    pytest.param(
        {"headers": {"x-env": {"equals": "prod"}}},
        request(headers=[("X-Env", "prod")]),
        True,
        id="header",
    ),
    pytest.param(
        {"headers": {"x-env": {"equals": "prod"}}},
        request(headers=[("x-env", "prod"), ("x-env", "dev")]),
        False,
        id="header-duplicate-combined",
    ),
    pytest.param({"headers": {"x-env": {"present": False}}}, request(), True, id="header-absent"),
    pytest.param(
        {"time": {"days": ["mon", "tue"], "between": "09:00-17:00"}},
        request(),
        True,
        id="time-inside",
    ),
    pytest.param({"time": {"days": ["sat", "sun"]}}, request(), False, id="time-weekend"),
    pytest.param(
        {"time": {"between": "22:00-06:00"}}, request(), False, id="time-overnight-outside"
    ),
    pytest.param(
        {"time": {"between": "10:00-11:00", "tz": "Asia/Tokyo"}}, request(), False, id="time-zone"
    ),
    pytest.param({"transport": "http"}, request(), True, id="transport"),
    # MCP / JSON-RPC
    pytest.param(
        {"rpc_methods": ["tools/*"]},
        request("/mcp", method="POST", body=call("a")),
        True,
        id="rpc-method-glob",
    ),
    pytest.param({"rpc_methods": ["tools/call"]}, request(), False, id="rpc-method-not-rpc"),
    pytest.param(
        {"tools": ["read_*"]},
        request("/mcp", method="POST", body=call("read_file")),
        True,
        id="tool-glob",
    ),
    pytest.param(
        {"tools": ["read_*"]},
        request("/mcp", method="POST", body=call("delete_file")),
        False,
        id="tool-miss",
    ),
    pytest.param(
        {"tools": ["a"], "arguments": {"/path": {"prefix": "/tmp/"}}},
        request("/mcp", method="POST", body=call("a", {"path": "/tmp/x"})),
        True,
        id="argument-prefix",
    ),
    pytest.param(
        {"arguments": {"/opts/0/mode": {"equals": "rw"}}},
        request("/mcp", method="POST", body=call("a", {"opts": [{"mode": "rw"}]})),
        True,
        id="argument-pointer-array",
    ),
    pytest.param(
        {"arguments": {"/a~1b": {"equals": 1}}},
        request("/mcp", method="POST", body=call("a", {"a/b": 1})),
        True,
        id="argument-pointer-escape",
    ),
    pytest.param(
        {"arguments": {"/path": {"regex": "^/etc"}}},
        request("/mcp", method="POST", body=call("a", {"path": "/home"})),
        False,
        id="argument-regex-miss",
    ),
    pytest.param(
        {"arguments": {"/nope": {"present": False}}},
        request("/mcp", method="POST", body=call("a")),
        True,
        id="argument-absent",
    ),
    # Arguments as pydantic (the MCP SDK) converts them: "true"/1 are True, "5" is 5.
    pytest.param(
        {"arguments": {"/force": {"equals": True}}},
        request("/mcp", method="POST", body=call("a", {"force": "TRUE"})),
        True,
        id="argument-bool-as-string",
    ),
    pytest.param(
        {"arguments": {"/force": {"in": [True]}}},
        request("/mcp", method="POST", body=call("a", {"force": 1})),
        True,
        id="argument-bool-as-number",
    ),
    pytest.param(
        {"arguments": {"/force": {"equals": True}}},
        request("/mcp", method="POST", body=call("a", {"force": 2})),
        False,
        id="argument-bool-not-two",
    ),
    pytest.param(
        {"arguments": {"/count": {"equals": 5}}},
        request("/mcp", method="POST", body=call("a", {"count": " 5.0 "})),
        True,
        id="argument-number-as-string",
    ),
    pytest.param(
        {"arguments": {"/name": {"equals": "5"}}},
        request("/mcp", method="POST", body=call("a", {"name": 5})),
        False,
        id="argument-number-is-never-a-string",
    ),
    pytest.param(
        {"arguments": {"/path": {"equals": "[x"}}},
        request("/mcp", method="POST", body=call("a", {"path": "[x"})),
        True,
        id="argument-string-that-is-not-json",
    ),
    # findings
    pytest.param(
        {"findings": [{"source": "inspector", "kind": "override*", "min_score": 0.5}]},
        request(findings=[Finding("inspector", "override_phrase", 0.8)]),
        True,
        id="finding",
    ),
    pytest.param(
        {"findings": [{"kind": "*", "min_score": 0.9}]},
        request(findings=[Finding("inspector", "x", 0.8)]),
        False,
        id="finding-low-score",
    ),
]


@pytest.mark.parametrize(("when", "ctx", "expected"), CONDITIONS)
def test_each_condition_type(when: dict[str, Any], ctx: RequestContext, expected: bool) -> None:
    assert allowed(when, ctx) is expected


def test_time_window_at_the_boundaries() -> None:
    window = {"time": {"between": "10:30-11:00"}}
    assert allowed(window, request(), clock=MONDAY_1030)
    assert not allowed(window, request(), clock=MONDAY_1030 - 1)
    assert not allowed(window, request(), clock=MONDAY_1030 + 1800)


def test_overlong_value_for_a_regex_denies_rather_than_skips() -> None:
    rules = [
        {"id": "all", "effect": "allow", "when": {"authenticated": True}},
        {"id": "no-etc", "effect": "deny", "when": {"arguments": {"/p": {"regex": "^/etc"}}}},
    ]
    ctx = request("/mcp", method="POST", body=call("a", {"p": "x" * 4097}))
    decision = engine(rules).evaluate(ctx)
    assert decision.effect is Effect.DENY
    assert decision.rule_ids == ("policy:undecidable",)
    fits = request("/mcp", method="POST", body=call("a", {"p": "x" * 4096}))
    assert engine(rules).evaluate(fits).effect is Effect.ALLOW


@pytest.mark.parametrize("method", ["HEAD", "head", "get", "Get"])
def test_a_rule_on_get_judges_head_and_every_spelling_of_the_method(method: str) -> None:
    rules = [
        {"id": "all", "effect": "allow", "when": {"authenticated": True}},
        {"id": "no-reports", "effect": "deny", "when": {"methods": ["get"], "paths": ["/r/**"]}},
    ]
    decision = engine(rules).evaluate(request("/r/q1", method=method))
    assert (decision.effect, decision.rule_ids) == (Effect.DENY, ("no-reports",))


@pytest.mark.parametrize("method", ["delete", "Delete"])
def test_a_lower_case_method_is_judged_as_its_upper_case_name(method: str) -> None:
    rules = [
        {"id": "all", "effect": "allow", "when": {"authenticated": True}},
        {"id": "no-delete", "effect": "deny", "when": {"methods": ["DELETE"]}},
    ]
    assert engine(rules).evaluate(request("/items/1", method=method)).effect is Effect.DENY
    assert engine(rules).evaluate(request("/items/1", method="POST")).effect is Effect.ALLOW


@pytest.mark.parametrize(
    ("pointer", "test", "arguments"),
    [
        ("/paths/0", {"prefix": "/etc"}, {"paths": '["/etc/passwd"]'}),
        ("/opts/path", {"equals": "/etc/shadow"}, {"opts": ' {"path": "/etc/shadow"}'}),
        ("/paths", {"contains": "/etc/passwd"}, {"paths": '["/etc/passwd"]'}),
        ("/id", {"in": [0, 1]}, {"id": " " * 64 + "0" * 70 + "1"}),
        ("/id", {"equals": 9007199254740993}, {"id": "9007199254740993"}),
        ("/ratio", {"equals": 0.5}, {"ratio": "0" * 80 + ".5"}),
        # For a float or Decimal parameter: exponents, rounding, any Unicode digits.
        ("/level", {"equals": 5}, {"level": "5e0"}),
        ("/level", {"in": [5, 6]}, {"level": "5.0000000000000001"}),
        ("/amount", {"equals": 5}, {"amount": "\uff15"}),
        ("/amount", {"equals": 5}, {"amount": "\u0665"}),
    ],
)
def test_a_deny_rule_judges_an_argument_as_the_sdk_hands_it_to_the_tool(
    pointer: str, test: dict[str, Any], arguments: dict[str, Any]
) -> None:
    # The SDK parses a string holding a JSON array or object (for parameters not
    # declared as strings); pydantic reads numeric strings with any padding.
    rules = [
        {"id": "all", "effect": "allow", "when": {"authenticated": True}},
        {"id": "no", "effect": "deny", "when": {"arguments": {pointer: test}}},
    ]
    ctx = request("/mcp", method="POST", body=call("a", arguments))
    assert engine(rules).evaluate(ctx).rule_ids == ("no",)


def test_claims_and_headers_compare_type_and_value_as_written() -> None:
    # Only tool arguments are converted (by the server, before the tool runs).
    rules = [{"id": "a", "effect": "allow", "when": {"headers": {"x-n": {"equals": "1"}}}}]
    assert engine(rules).evaluate(request(headers=[("x-n", "1")])).effect is Effect.ALLOW
    rules = [{"id": "a", "effect": "allow", "when": {"headers": {"x-n": {"equals": 1}}}}]
    assert engine(rules).evaluate(request(headers=[("x-n", "1")])).effect is Effect.DENY


def test_an_allow_on_a_number_is_not_granted_by_a_loose_spelling() -> None:
    rules = [{"id": "five", "effect": "allow", "when": {"arguments": {"/n": {"equals": 5}}}}]
    loose = request("/mcp", method="POST", body=call("a", {"n": "5e0"}))
    assert engine(rules).evaluate(loose).effect is Effect.DENY  # an int parameter refuses it
    exact = request("/mcp", method="POST", body=call("a", {"n": " 005 "}))
    assert engine(rules).evaluate(exact).effect is Effect.ALLOW
    for refused in ("5.", "5_", "_5", "5__0"):  # pydantic refuses these for an int
        odd = request("/mcp", method="POST", body=call("a", {"n": refused}))
        assert engine(rules).evaluate(odd).effect is Effect.DENY, refused


def test_numbers_in_strings_are_compared_exactly() -> None:
    rules = [{"id": "one", "effect": "allow", "when": {"arguments": {"/n": {"equals": 2**53}}}}]
    near = request("/mcp", method="POST", body=call("a", {"n": str(2**53 + 1)}))
    assert engine(rules).evaluate(near).effect is Effect.DENY  # default deny: no match


@pytest.mark.parametrize(
    "rules",
    [
        [  # an exception to a deny
            {"id": "all", "effect": "allow", "when": {"authenticated": True}},
            {
                "id": "deploy",
                "effect": "deny",
                "when": {"tools": ["deploy"]},
                "unless": {"arguments": {"/flags": {"contains": "--dry-run"}}},
            },
        ],
        [  # an allow
            {
                "id": "dry",
                "effect": "allow",
                "when": {"tools": ["deploy"], "arguments": {"/flags": {"contains": "--dry-run"}}},
            }
        ],
    ],
)
def test_what_lets_a_call_through_must_hold_under_every_reading(
    rules: list[dict[str, Any]],
) -> None:
    # Read as a string, the words include --dry-run; the SDK hands the tool the list
    # ["--force", "x --dry-run y"], which does not: neither reading may grant.
    sneaky = request(
        "/mcp", method="POST", body=call("deploy", {"flags": '["--force", "x --dry-run y"]'})
    )
    plain = request("/mcp", method="POST", body=call("deploy", {"flags": ["--dry-run"]}))
    assert engine(rules).evaluate(sneaky).effect is Effect.DENY
    assert engine(rules).evaluate(plain).effect is Effect.ALLOW


@pytest.mark.parametrize(
    ("values", "denied"),
    [
        pytest.param(["full"], True, id="once"),
        pytest.param(["full", "full"], True, id="twice"),
        pytest.param(["raw", "x"], True, id="first-matches"),
        pytest.param(["x", "full"], True, id="last-matches"),
        pytest.param(["x", "y"], False, id="neither"),
        pytest.param([], False, id="absent"),
    ],
)
def test_a_header_sent_twice_is_judged_as_each_value_an_app_may_read(
    values: list[str], denied: bool
) -> None:
    # Starlette reads the first value, others the last or all joined: a deny must
    # hold if any reading matches, an allow only if every reading does.
    rules = [
        {"id": "all", "effect": "allow", "when": {"authenticated": True}},
        {
            "id": "no-export",
            "effect": "deny",
            "when": {"headers": {"x-mode": {"in": ["full", "raw"]}}},
        },
    ]
    decision = engine(rules).evaluate(request(headers=[("x-mode", v) for v in values]))
    assert (decision.effect is Effect.DENY) is denied


@pytest.mark.parametrize(
    ("values", "allowed"),
    [
        pytest.param(["yes"], True, id="once"),
        pytest.param(["yes", "no"], False, id="one-reading-fails"),
        # Joined, as some apps read it, "yes, yes" is not "yes".
        pytest.param(["yes", "yes"], False, id="twice"),
    ],
)
def test_a_header_that_grants_must_hold_under_every_reading(
    values: list[str], allowed: bool
) -> None:
    rules = [
        {"id": "opted-in", "effect": "allow", "when": {"headers": {"x-ok": {"equals": "yes"}}}}
    ]
    decision = engine(rules).evaluate(request(headers=[("x-ok", v) for v in values]))
    assert (decision.effect is Effect.ALLOW) is allowed


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param([("x_mode", "full")], id="underscore"),
        pytest.param([("x-mode", "part"), ("x_mode", "full")], id="after-the-dashed-one"),
    ],
)
def test_a_header_spelt_with_an_underscore_is_judged_as_the_dashed_one(
    headers: list[tuple[str, str]],
) -> None:
    # Django (and asgiref's or a2wsgi's WSGI bridges) read X_Mode as X-Mode:
    # request.headers["X-Mode"] is "full" for such an app.
    rules = [
        {"id": "all", "effect": "allow", "when": {"authenticated": True}},
        {"id": "no-export", "effect": "deny", "when": {"headers": {"x-mode": {"equals": "full"}}}},
    ]
    decision = engine(rules).evaluate(request(headers=headers))
    assert decision.effect is Effect.DENY
    assert decision.rule_ids == ("no-export",)
    granting = [
        {"id": "opted-in", "effect": "allow", "when": {"headers": {"x-ok": {"equals": "yes"}}}}
    ]
    assert engine(granting).evaluate(request(headers=[("x_ok", "yes")])).effect is Effect.ALLOW
    both = request(headers=[("x-ok", "yes"), ("x_ok", "no")])
    assert engine(granting).evaluate(both).effect is Effect.DENY


def test_json_too_long_to_decode_in_an_argument_denies_rather_than_skips() -> None:
    rules = [
        {"id": "all", "effect": "allow", "when": {"authenticated": True}},
        {"id": "no-etc", "effect": "deny", "when": {"arguments": {"/p/0": {"prefix": "/etc"}}}},
    ]
    padded = '["/home/x", "' + "y" * 70_000 + '"]'
    decision = engine(rules).evaluate(request("/mcp", method="POST", body=call("a", {"p": padded})))
    assert decision.effect is Effect.DENY
    assert decision.rule_ids == ("policy:undecidable",)


def test_json_nested_too_deeply_in_an_argument_denies_rather_than_skips() -> None:
    # Python gives up at a depth that depends on its stack; a server parsing on a
    # shallower one hands the tool the nested list.
    rules = [
        {"id": "all", "effect": "allow", "when": {"authenticated": True}},
        {"id": "no-etc", "effect": "deny", "when": {"arguments": {"/p/0": {"prefix": "/etc"}}}},
    ]
    deep = '["/etc/passwd", ' + "[" * 3000 + "]" * 3000 + "]"
    not_json = '["/home/x", ' + "[" * 3000
    decide = engine(rules).evaluate
    decision = decide(request("/mcp", method="POST", body=call("a", {"p": deep})))
    assert (decision.effect, decision.rule_ids) == (Effect.DENY, ("policy:undecidable",))
    # Brackets that cannot pair up are no JSON any server reads: a plain string.
    decision = decide(request("/mcp", method="POST", body=call("a", {"p": not_json})))
    assert decision.effect is Effect.ALLOW


RULES = [
    {"id": "allow-all", "effect": "allow", "when": {"authenticated": True}},
    {
        "id": "deny-admin",
        "effect": "deny",
        "when": {"paths": ["/admin/**"]},
        "unless": {"roles_any": ["root"]},
    },
    {
        "id": "allow-admin-for-admins",
        "effect": "allow",
        "when": {"paths": ["/admin/**"], "roles_any": ["admin"]},
    },
]


def test_deny_overrides_and_first_applicable_disagree_on_order() -> None:
    ctx = request("/admin/panel")
    overriding = engine(RULES).evaluate(ctx)
    assert (overriding.effect, overriding.rule_ids) == (Effect.DENY, ("deny-admin",))
    first = engine(RULES, combining="first_applicable").evaluate(ctx)
    assert (first.effect, first.rule_ids) == (Effect.ALLOW, ("allow-all",))


def test_default_decision_when_nothing_applies() -> None:
    ctx = request(principal=None)
    decision = engine(RULES).evaluate(ctx)
    assert (decision.effect, decision.rule_ids) == (Effect.DENY, ("policy:default",))
    assert engine(RULES, default="allow").evaluate(ctx).allowed


def test_decisions_carry_reason_scopes_and_obligations() -> None:
    rules = [
        {
            "id": "need-write",
            "effect": "deny",
            "when": {"methods": ["POST"]},
            "unless": {"scopes_any": ["admin"]},
            "scopes": ["admin"],
            "reason": "writes need admin",
            "obligations": {"audit": "critical"},
        }
    ]
    decision = engine(rules).evaluate(request(method="POST"))
    assert decision.reason == "writes need admin"
    assert decision.scopes == ("admin",)
    assert decision.obligations["audit"] == "critical"


def test_batch_is_denied_whole_when_one_call_is_denied() -> None:
    rules = [
        {
            "id": "rpc",
            "effect": "allow",
            "when": {"rpc_methods": ["tools/call"], "tools": ["safe"]},
        },
    ]
    ok = request("/mcp", method="POST", body=[call("safe", ident=1), call("safe", ident=2)])
    assert engine(rules).evaluate(ok).allowed
    mixed = request("/mcp", method="POST", body=[call("safe", ident=1), call("danger", ident=2)])
    decision = engine(rules).evaluate(mixed)
    assert not decision.allowed
    assert decision.rule_ids == ("policy:default",)


def test_responses_in_a_batch_are_not_judged_as_actions() -> None:
    rules = [{"id": "rpc", "effect": "allow", "when": {"tools": ["safe"]}}]
    body = [{"jsonrpc": "2.0", "id": "s1", "result": {}}, call("safe")]
    assert engine(rules).evaluate(request("/mcp", method="POST", body=body)).allowed


STEP_UP = [
    {"id": "all", "effect": "allow", "when": {"authenticated": True}},
    {
        "id": "mfa-delete",
        "effect": "step_up",
        "acr_values": ["urn:gold"],
        "max_age": 300,
        "amr_mfa": [],
        "when": {"tools": ["delete_*"]},
    },
]


@pytest.mark.parametrize(
    ("principal", "now", "effect"),
    [
        pytest.param(
            Principal(subject="a", acr="urn:gold", auth_time=1000.0),
            1200.0,
            Effect.ALLOW,
            id="strong-and-fresh",
        ),
        pytest.param(
            Principal(subject="a", acr="urn:gold", auth_time=1000.0),
            1400.0,
            Effect.STEP_UP,
            id="stale",
        ),
        pytest.param(
            Principal(subject="a", acr="urn:bronze", auth_time=1000.0),
            1200.0,
            Effect.STEP_UP,
            id="weak",
        ),
        pytest.param(
            Principal(subject="a", acr="urn:gold"), 1200.0, Effect.STEP_UP, id="no-auth-time"
        ),
    ],
)
def test_step_up_applies_only_while_unmet(principal: Principal, now: float, effect: Effect) -> None:
    ctx = request("/mcp", method="POST", principal=principal, body=call("delete_file"))
    decision = engine(STEP_UP, clock=now).evaluate(ctx)
    assert decision.effect is effect
    if effect is Effect.STEP_UP:
        assert decision.acr_values == ("urn:gold",) and decision.max_age == 300


def test_mfa_amr_satisfies_an_acr_requirement_by_default() -> None:
    rules = [dict(STEP_UP[0]), {**STEP_UP[1], "amr_mfa": None, "max_age": None}]
    rules[1].pop("amr_mfa")
    principal = Principal(subject="a", amr=("pwd", "otp"))
    ctx = request("/mcp", method="POST", principal=principal, body=call("delete_file"))
    assert engine(rules).evaluate(ctx).allowed


def test_deny_beats_step_up_beats_allow() -> None:
    rules = [
        *STEP_UP,
        {"id": "no-delete-prod", "effect": "deny", "when": {"tools": ["delete_prod"]}},
    ]
    weak = Principal(subject="a", acr="urn:bronze")
    assert engine(rules).evaluate(
        request("/mcp", method="POST", principal=weak, body=call("delete_prod"))
    ).rule_ids == ("no-delete-prod",)
    assert (
        engine(rules)
        .evaluate(request("/mcp", method="POST", principal=weak, body=call("delete_x")))
        .effect
        is Effect.STEP_UP
    )


def test_mcp_headers_must_agree_with_the_body() -> None:
    body = call("read")
    good = request(
        "/mcp",
        method="POST",
        headers=[("mcp-method", "tools/call"), ("mcp-name", "read")],
        body=body,
    )
    assert good.rpc[0].tool == "read"
    for headers in (
        [("mcp-method", "tools/list")],
        [("mcp-name", "delete")],
        [("mcp-method", "tools/call"), ("mcp-method", "tools/call")],
    ):
        with pytest.raises(BadRequest):
            request("/mcp", method="POST", headers=headers, body=body)
    with pytest.raises(BadRequest):
        request(
            "/mcp",
            method="POST",
            headers=[("mcp-method", "tools/call")],
            body=[body, call("x", ident=2)],
        )


@pytest.mark.parametrize(
    ("rules", "key"),
    [
        pytest.param(
            [{"id": "a", "effect": "allow", "when": {"paths": ["admin"]}}],
            "policy.rules[0].when.paths[0]",
            id="relative-path",
        ),
        pytest.param(
            [{"id": "a", "effect": "allow", "when": {"paths": ["/a/b**"]}}],
            "policy.rules[0].when.paths[0]",
            id="bad-glob",
        ),
        pytest.param(
            [{"id": "a", "effect": "allow", "when": {"claims": {"x": {"regex": "(a+)+"}}}}],
            "policy.rules[0].when.claims.x.regex",
            id="redos",
        ),
        pytest.param(
            [{"id": "a", "effect": "allow", "when": {"headers": {"x": {"regex": "("}}}}],
            "policy.rules[0].when.headers.x.regex",
            id="bad-regex",
        ),
        pytest.param(
            [{"id": "a", "effect": "allow", "when": {"client_ips": ["10.0.0.300/8"]}}],
            "policy.rules[0].when.client_ips[0]",
            id="cidr-typo",
        ),
        pytest.param(
            [{"id": "a", "effect": "allow", "when": {"client_ips": ["10.0.0.1/8"]}}],
            "policy.rules[0].when.client_ips[0]",
            id="cidr-host-bits",
        ),
        pytest.param(
            [{"id": "a", "effect": "allow", "when": {"time": {"tz": "Mars/Olympus"}}}],
            "policy.rules[0].when.time.tz",
            id="time-zone",
        ),
        pytest.param(
            [{"id": "a", "effect": "allow", "when": {"time": {"between": "25:00-26:00"}}}],
            "policy.rules[0].when.time.between",
            id="time-range",
        ),
        pytest.param(
            [{"id": "a", "effect": "allow", "when": {"tools": ["[x]"]}}],
            "policy.rules[0].when.tools[0]",
            id="tool-class",
        ),
        pytest.param(
            [{"id": "a", "effect": "allow", "when": {"arguments": {"path": {"equals": 1}}}}],
            "policy.rules[0].when.arguments.path",
            id="not-a-pointer",
        ),
        pytest.param(
            [
                {
                    "id": "a",
                    "effect": "allow",
                    "when": {"paths": ["/x"], "path_params": {"t": {"equals": "1"}}},
                }
            ],
            "policy.rules[0].when.path_params",
            id="unknown-param",
        ),
        pytest.param(
            [{"id": "a", "effect": "allow", "when": {"findings": [{"kind": "[a]"}]}}],
            "policy.rules[0].when.findings[0].kind",
            id="finding-kind",
        ),
        pytest.param(
            [
                {
                    "id": "a",
                    "effect": "allow",
                    "when": {"paths": ["/t/{t}"], "principal_matches_path": {"email": "t"}},
                }
            ],
            "policy.rules[0].when.principal_matches_path.email",
            id="principal-attr",
        ),
    ],
)
def test_load_time_errors_name_rule_and_key(rules: list[dict[str, Any]], key: str) -> None:
    from secmw.config import build_pipeline, parse_config

    with pytest.raises(ConfigError) as info:
        build_pipeline(parse_config({"policy": {"rules": rules}}))
    assert key in [issue.key for issue in info.value.issues], info.value


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        pytest.param({"id": "a", "effect": "permit"}, "Input should be", id="effect"),
        pytest.param({"id": "a b", "effect": "allow"}, "String should match", id="id-chars"),
        pytest.param(
            {"id": "a", "effect": "step_up"}, "needs acr_values or max_age", id="step-up-empty"
        ),
        pytest.param(
            {"id": "a", "effect": "allow", "acr_values": ["x"]},
            "belong to step_up",
            id="acr-on-allow",
        ),
        pytest.param(
            {"id": "a", "effect": "allow", "scopes": ["x"]}, "belong to deny", id="scopes-on-allow"
        ),
        pytest.param(
            {"id": "a", "effect": "allow", "when": {"nope": 1}},
            "unknown key",
            id="unknown-condition",
        ),
        pytest.param(
            {"id": "a", "effect": "allow", "when": {"claims": {"x": {"equals": 1, "prefix": "a"}}}},
            "exactly one",
            id="two-tests",
        ),
        pytest.param(
            {"id": "a", "effect": "allow", "obligations": {"audit": "loud"}},
            "obligations.audit",
            id="audit-level",
        ),
    ],
)
def test_rule_shape_errors(rule: dict[str, Any], message: str) -> None:
    from secmw.config import parse_config

    with pytest.raises(ConfigError) as info:
        parse_config({"policy": {"rules": [rule]}})
    assert message in str(info.value)
    assert all(issue.key.startswith("policy.rules[0]") for issue in info.value.issues)


def deny_when(**when: Any) -> dict[str, Any]:
    return {"id": "dead", "effect": "deny", "when": when}


@pytest.mark.parametrize(
    ("rule", "key", "message"),
    [
        # Each would be accepted and silently never match a request.
        pytest.param(deny_when(paths=["/docs/%7Euser"]), "paths", "canonical", id="escaped-path"),
        pytest.param(deny_when(paths=["/admin;x"]), "paths", "canonical", id="path-params"),
        pytest.param(deny_when(paths=["/a\\b"]), "paths", "canonical", id="backslash"),
        pytest.param(deny_when(hosts=["admin.example.com:8443"]), "hosts", "host name", id="port"),
        pytest.param(deny_when(hosts=["https://admin.example.com"]), "hosts", "host", id="scheme"),
        pytest.param(deny_when(hosts=["[::1]:8443"]), "hosts", "host name", id="ipv6-port"),
        pytest.param(deny_when(methods=["*"]), "methods", "leave methods out", id="star-method"),
        pytest.param(deny_when(methods=[" delete"]), "methods", "not an HTTP method", id="space"),
        pytest.param(deny_when(paths=[]), "paths", "empty list", id="empty-paths"),
        pytest.param(deny_when(tools=[]), "tools", "empty list", id="empty-tools"),
        pytest.param(deny_when(roles_all=[]), "roles_all", "empty list", id="empty-all-of"),
        pytest.param(
            deny_when(time={"between": "09:00-09:00"}), "time.between", "empty window", id="window"
        ),
    ],
)
def test_conditions_that_could_never_match_are_refused(
    rule: dict[str, Any], key: str, message: str
) -> None:
    from secmw.config import build_pipeline, parse_config

    with pytest.raises(ConfigError) as info:
        build_pipeline(parse_config({"policy": {"rules": [rule]}}))
    assert message in str(info.value)
    assert any(issue.key.startswith(f"policy.rules[0].when.{key}") for issue in info.value.issues)


def test_a_host_with_the_root_dot_matches_the_host_without_it() -> None:
    rules = [
        {"id": "all", "effect": "allow", "when": {"authenticated": True}},
        {"id": "no-admin", "effect": "deny", "when": {"hosts": ["admin.example.com."]}},
    ]
    decision = engine(rules).evaluate(request(headers=[("host", "admin.example.com")]))
    assert decision.effect is Effect.DENY


def test_duplicate_rule_ids_are_refused() -> None:
    from secmw.config import parse_config

    with pytest.raises(ConfigError, match="used twice"):
        parse_config(
            {"policy": {"rules": [{"id": "a", "effect": "allow"}, {"id": "a", "effect": "deny"}]}}
        )


def test_needs_body_only_when_rules_read_json_rpc() -> None:
    assert not engine(RULES).needs_body
    assert engine([{"id": "t", "effect": "allow", "when": {"tools": ["x"]}}]).needs_body
    assert engine(
        [{"id": "t", "effect": "deny", "when": {"paths": ["/a"]}, "unless": {"rpc_methods": ["x"]}}]
    ).needs_body


# -- properties ------------------------------------------------------------------------

PATHS = st.sampled_from(["/", "/admin", "/admin/x", "/api", "/api/v1", "/t/acme", "/t/evil/z"])
METHODS = st.sampled_from(["GET", "POST", "DELETE"])
RULE = st.fixed_dictionaries(
    {
        "effect": st.sampled_from(["allow", "deny"]),
        "when": st.fixed_dictionaries(
            {},
            optional={
                "paths": st.lists(
                    st.sampled_from(["/admin/**", "/api/*", "/t/{t}", "/**", "/"]),
                    min_size=1,
                    max_size=2,
                ),
                "methods": st.lists(METHODS, min_size=1, max_size=2),
                "roles_any": st.lists(
                    st.sampled_from(["admin", "analyst", "x"]), min_size=1, max_size=2
                ),
            },
        ),
    }
)


@settings(max_examples=200, deadline=None)
@given(st.lists(RULE, min_size=1, max_size=8), PATHS, METHODS)
def test_deny_overrides_never_allows_when_an_applicable_rule_denies(
    rules: list[dict[str, Any]], path: str, method: str
) -> None:
    numbered = [{"id": f"r{i}", **rule} for i, rule in enumerate(rules)]
    policy = engine(numbered)
    ctx = request(path, method=method)
    explanation = policy.explain(ctx)
    denying = [t for t in explanation.traces if t.applied and t.effect == "deny"]
    allowing = [t for t in explanation.traces if t.applied and t.effect == "allow"]
    decision = explanation.decision
    if denying:
        assert decision.effect is Effect.DENY and decision.rule_ids[0] in {
            t.rule_id for t in denying
        }
    elif allowing:
        assert decision.allowed
    else:
        assert decision.rule_ids == ("policy:default",)
    first = engine(numbered, combining="first_applicable").evaluate(ctx)
    applied = [t for t in explanation.traces if t.applied]
    assert first.rule_ids == ((applied[0].rule_id,) if applied else ("policy:default",))


def test_index_is_equivalent_to_a_full_scan() -> None:
    rules = (
        [
            {
                "id": f"deny-{i}",
                "effect": "deny",
                "when": {"paths": [f"/area{i}/**"], "methods": ["POST"]},
            }
            for i in range(50)
        ]
        + [
            {"id": f"tool-{i}", "effect": "deny", "when": {"tools": [f"tool{i}"]}}
            for i in range(50)
        ]
        + [{"id": "all", "effect": "allow", "when": {"authenticated": True}}]
    )
    policy = engine(rules)
    cases = [
        ("/area7/x", "POST", None),
        ("/area7/x", "GET", None),
        ("/zzz", "POST", None),
        ("/mcp", "POST", "tool9"),
        ("/mcp", "POST", "tool99"),
        ("/area49", "POST", None),
    ]
    for path, method, tool in cases:
        ctx = request(path, method=method, body=call(tool) if tool else None)
        full = policy.explain(ctx)
        assert policy.evaluate(ctx) == full.decision, (path, method, tool)
    visited = policy._candidates(request("/area7/x", method="POST"), None)
    assert [rule.id for rule in visited] == ["deny-7", "all"]  # 2 of 101 rules
