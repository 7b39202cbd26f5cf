"""The ``ratelimit`` section: validation names the key, building, fail-open listing."""

from __future__ import annotations

from typing import Any

import pytest

from secmw.config import build_pipeline, parse_config
from secmw.errors import ConfigError
from secmw.ratelimit import TieredRateLimiter

TIER = {"name": "user", "key": "principal", "rate": "5/minute"}


def issues(section: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ConfigError) as caught:
        build_pipeline(parse_config({"ratelimit": section}))
    return {issue.key: issue.message for issue in caught.value.issues}


@pytest.mark.parametrize(
    ("section", "key", "fragment"),
    [
        pytest.param(
            {"tiers": [{**TIER, "key": "user"}]}, "ratelimit.tiers[0].key", "'user'", id="key-part"
        ),
        pytest.param(
            {"tiers": [{**TIER, "key": "global+ip"}]},
            "ratelimit.tiers[0].key",
            "global",
            id="global-combined",
        ),
        pytest.param(
            {"tiers": [{**TIER, "rate": "lots"}]},
            "ratelimit.tiers[0].rate",
            "not a rate",
            id="rate",
        ),
        pytest.param(
            {"tiers": [{**TIER, "rate": "99999999999999999999/second"}]},
            "ratelimit.tiers[0].rate",
            "more than 1,000,000,000,000",
            id="rate-beyond-exact-counts",
        ),
        pytest.param(
            {"tiers": [{**TIER, "rate": "1/2 years"}]},
            "ratelimit.tiers[0].rate",
            "longer than a year",
            id="window-too-long",
        ),
        pytest.param(
            {
                "tiers": [
                    {**TIER, "name": "api", "rate": "5/second;100/hour"},
                    {**TIER, "name": "api-1s", "key": "global", "rate": "2/second"},
                ]
            },
            "ratelimit.tiers",
            "tiers 'api' and 'api-1s' both name 'api-1s'",
            id="policy-name-taken-by-another-tier",
        ),
        pytest.param(
            {"tiers": [{**TIER, "rate": "5/0 minutes"}]},  # limits reads it as 5/minute
            "ratelimit.tiers[0].rate",
            "window of zero length",
            id="zero-window",
        ),
        pytest.param(
            {"tiers": [{**TIER, "rate": "5/minute", "plans": {"pro": "50 per 0 hours"}}]},
            "ratelimit.tiers[0].plans",
            "window of zero length",
            id="zero-window-plan",
        ),
        pytest.param(
            {"tiers": [{**TIER, "rate": "5/minute;10/60 seconds"}]},
            "ratelimit.tiers[0].rate",
            "one window length twice",
            id="window-twice",
        ),
        pytest.param(
            {"tiers": [{**TIER, "plans": {"free": "x/y"}}]},
            "ratelimit.tiers[0].plans",
            "not a rate",
            id="plan-rate",
        ),
        pytest.param(
            {"tiers": [{**TIER, "burst": 3}]}, "ratelimit.tiers[0]", "gcra", id="burst-needs-gcra"
        ),
        pytest.param(
            {"tiers": [{**TIER, "key": "connection"}]},
            "ratelimit.tiers[0]",
            "messages",
            id="connection-needs-messages",
        ),
        pytest.param(
            {"tiers": [{**TIER, "key": "principal+tool", "applies_to": "messages"}]},
            "ratelimit.tiers[0]",
            "websocket messages",
            id="tool-never-counts-messages",
        ),
        pytest.param({"tiers": [TIER, TIER]}, "ratelimit.tiers", "unique", id="duplicate-names"),
        pytest.param(
            {"tiers": [{**TIER, "algorithm": "leaky"}]},
            "ratelimit.tiers[0].algorithm",
            "",
            id="algorithm",
        ),
        pytest.param(
            {"tiers": [{**TIER, "rat": "1/s"}]}, "ratelimit.tiers[0].rat", "unknown key", id="typo"
        ),
        pytest.param(
            {"storage": {"url": "mongodb://x"}}, "ratelimit.storage.url", "redis://", id="scheme"
        ),
        pytest.param({"headers": "ietf"}, "ratelimit.headers", "", id="headers"),
    ],
)
def test_invalid_settings_name_their_key(section: dict[str, Any], key: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"ratelimit": section})
    found = {issue.key: issue.message for issue in caught.value.issues}
    assert key in found, found
    assert fragment in found[key]


def test_builder_errors_are_keyed_under_the_section() -> None:
    found = issues(
        {
            "tiers": [{**TIER, "costs": {"routes": {"/ok": 2, "bad*": 3}}}],
            "storage": {"url": "redis+sentinel://s1:26379"},
        }
    )
    assert set(found) == {"ratelimit.tiers[0].costs.routes[1]", "ratelimit.storage.url"}


def test_no_tiers_means_no_limiter_and_tiers_build_one() -> None:
    assert build_pipeline(parse_config({})).rate_limiter is None
    pipeline = build_pipeline(parse_config({"ratelimit": {"tiers": [TIER]}}))
    assert isinstance(pipeline.rate_limiter, TieredRateLimiter)
    assert pipeline.fail_open == ()
    assert not pipeline.needs_body


def test_tool_tiers_ask_for_the_body() -> None:
    tier = {**TIER, "key": "principal+tool"}
    assert build_pipeline(parse_config({"ratelimit": {"tiers": [tier]}})).needs_body


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        pytest.param(
            {"storage": {"url": "redis://127.0.0.1:1/0", "on_failure": "fail_open"}},
            ("ratelimit.storage.on_failure=fail_open",),
            id="fail_open",
        ),
        pytest.param(
            {"storage": {"url": "redis://127.0.0.1:1/0", "on_failure": "local_fallback"}},
            ("ratelimit.storage.on_failure=local_fallback",),
            id="local_fallback",
        ),
        pytest.param({"storage": {"url": "redis://127.0.0.1:1/0"}}, (), id="fail_closed"),
        pytest.param(
            {"tiers": [{**TIER, "shadow": True}]}, ("ratelimit.tiers[0].shadow",), id="shadow"
        ),
    ],
)
def test_fail_open_settings_are_listed(section: dict[str, Any], expected: tuple[str, ...]) -> None:
    section = {"tiers": [TIER], **section}
    assert build_pipeline(parse_config({"ratelimit": section})).fail_open == expected
