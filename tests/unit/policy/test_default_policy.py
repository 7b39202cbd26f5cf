"""The default policy: authenticated in, anonymous out unless public or allowed."""

from __future__ import annotations

import pytest

from secmw.context import Principal, RequestContext
from secmw.errors import ConfigError
from secmw.policy import AuthenticatedPolicy, Decision, Effect
from tests.support import http_scope


def ctx(path: str, authenticated: bool = False) -> RequestContext:
    context = RequestContext.from_scope(http_scope(path))
    if authenticated:
        context.principal = Principal(subject="u", auth_method="jwt")
    return context


@pytest.mark.parametrize(
    ("patterns", "path", "public"),
    [
        pytest.param(["/health"], "/health", True, id="exact"),
        pytest.param(["/health"], "/health/x", False, id="exact-not-below"),
        pytest.param(["/health/"], "/health", True, id="exact-trailing-slash"),
        pytest.param(["/docs/**"], "/docs", True, id="prefix-itself"),
        pytest.param(["/docs/**"], "/docs/a/b", True, id="prefix-below"),
        pytest.param(["/docs/**"], "/docsx", False, id="prefix-not-segment"),
        pytest.param(["/**"], "/anything", True, id="everything"),
        pytest.param(["/"], "/", True, id="root"),
        pytest.param(["/"], "/x", False, id="root-only"),
        pytest.param([], "/", False, id="none"),
    ],
)
def test_public_path_matching(patterns: list[str], path: str, public: bool) -> None:
    policy = AuthenticatedPolicy(patterns)
    assert policy.is_public(path) is public
    decision = policy.evaluate(ctx(path))
    assert decision.allowed is public
    assert decision.rule_ids == (
        ("default:public_path",) if public else ("default:authentication_required",)
    )


def test_authenticated_always_passes_and_anonymous_only_when_allowed() -> None:
    assert AuthenticatedPolicy().evaluate(ctx("/x", authenticated=True)).rule_ids == (
        "default:authenticated",
    )
    assert not AuthenticatedPolicy().evaluate(ctx("/x")).allowed
    assert AuthenticatedPolicy(allow_anonymous=True).evaluate(ctx("/x")).allowed


@pytest.mark.parametrize("pattern", ["health", "/a/*", "/a/**/b", "/a//b", "/a/./b", "/*"])
def test_bad_patterns_name_their_index(pattern: str) -> None:
    with pytest.raises(ConfigError) as info:
        AuthenticatedPolicy(["/fine", pattern])
    assert info.value.issues[0].key == "public_paths[1]"


def test_decision_defaults() -> None:
    decision = Decision(Effect.STEP_UP, acr_values=("mfa",), max_age=60)
    assert not decision.allowed
    assert decision.obligations == {}
    assert Effect("deny") is Effect.DENY
