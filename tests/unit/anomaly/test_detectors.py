"""Count-in-a-window detectors with a fake clock: exactly at the threshold, reset after."""

from __future__ import annotations

import pytest

from secmw.anomaly import AuthFailureBurst, RepeatedDenials, TokenReuse
from tests.anomaly_support import MONDAY_10H, context, event, principal


def _fire_times(detector: AuthFailureBurst, times: list[float], **kw: object) -> list[int]:
    fired = []
    for index, now in enumerate(times, 1):
        ctx = context()
        if detector.check(ctx, event("authn_token_invalid", **kw), now) is not None:  # type: ignore[arg-type]
            fired.append(index)
    return fired


def test_burst_fires_exactly_at_the_threshold() -> None:
    detector = AuthFailureBurst(threshold=5, window=60)
    times = [MONDAY_10H + i for i in range(12)]
    assert _fire_times(detector, times) == [5, 10]


def test_burst_does_not_fire_when_failures_are_spread_beyond_the_window() -> None:
    detector = AuthFailureBurst(threshold=3, window=60)
    # three failures, but the first is 60 s before the third: outside the window
    assert _fire_times(detector, [MONDAY_10H, MONDAY_10H + 30, MONDAY_10H + 60]) == []
    # one more within 60 s of the previous two completes a burst
    assert _fire_times(detector, [MONDAY_10H + 61]) == [1]


def test_burst_resets_after_the_window() -> None:
    detector = AuthFailureBurst(threshold=3, window=60)
    assert _fire_times(detector, [MONDAY_10H, MONDAY_10H + 1]) == []
    later = MONDAY_10H + 1000
    assert _fire_times(detector, [later, later + 1]) == []
    assert _fire_times(detector, [later + 2]) == [1]


def test_burst_evidence_names_the_key_and_counts_not_the_credential() -> None:
    detector = AuthFailureBurst(threshold=2, window=60, response="block")
    ctx = context()
    assert detector.check(ctx, event("authn_login_fail"), MONDAY_10H) is None
    anomaly = detector.check(ctx, event("authn_login_fail"), MONDAY_10H + 1)
    assert anomaly is not None
    assert (anomaly.event, anomaly.key_kind, anomaly.key, anomaly.response) == (
        "authn_brute_force",
        "client",
        "198.51.100.1",
        "block",
    )
    assert anomaly.evidence == {"count": 2, "window_s": 60, "last": "authn_login_fail"}


@pytest.mark.parametrize(
    ("name", "outcome", "status", "counted"),
    [
        pytest.param("authn_token_invalid", "failure", 401, True, id="invalid-token"),
        pytest.param("authn_login_fail", "failure", 400, True, id="malformed-credential"),
        pytest.param("authn_token_missing", "failure", 401, False, id="no-token-is-not-a-guess"),
        pytest.param("authn_token_expired", "failure", 401, False, id="expired-refreshes"),
        pytest.param("authz_allow", "success", 401, True, id="app-login-form-401"),
        pytest.param("authz_allow", "success", 200, False, id="success"),
        pytest.param("authn_brute_force", "failure", 429, False, id="own-block-not-counted"),
    ],
)
def test_what_counts_as_an_authentication_failure(
    name: str, outcome: str, status: int, counted: bool
) -> None:
    detector = AuthFailureBurst(threshold=1, window=60)
    found = detector.check(context(), event(name, outcome=outcome, status=status), MONDAY_10H)
    assert (found is not None) is counted


def test_app_401_counting_can_be_switched_off() -> None:
    detector = AuthFailureBurst(threshold=1, window=60, count_app_401=False)
    assert detector.check(context(), event("authz_allow", status=401), MONDAY_10H) is None


def test_burst_by_subject_uses_the_event_subject_or_a_claimed_subject() -> None:
    detector = AuthFailureBurst(key_kind="subject", threshold=2, window=60)
    ctx = context()
    ctx.state["claimed_subject"] = "bob"
    assert detector.check(ctx, event("authn_login_fail", client="192.0.2.1"), MONDAY_10H) is None
    other = context(client="192.0.2.2")
    other.state["claimed_subject"] = "bob"
    anomaly = detector.check(other, event("authn_login_fail", client="192.0.2.2"), MONDAY_10H + 1)
    assert anomaly is not None and (anomaly.key_kind, anomaly.key) == ("subject", "bob")
    # no subject known: nothing to count
    assert detector.check(context(), event("authn_login_fail"), MONDAY_10H + 2) is None


def test_burst_key_kind_must_be_client_or_subject() -> None:
    with pytest.raises(ValueError):
        AuthFailureBurst(key_kind="credential")


def test_burst_state_is_capped() -> None:
    detector = AuthFailureBurst(threshold=5, window=60, max_keys=100)
    for index in range(1000):
        detector.check(
            context(),
            event("authn_login_fail", client=f"10.0.{index // 250}.{index % 250}"),
            MONDAY_10H,
        )
    assert detector.tracked_keys() == 100


def test_repeated_denials_fire_at_the_threshold_per_principal() -> None:
    detector = RepeatedDenials(threshold=3, window=60)
    results = [
        detector.check(context(), event(name, subject="carol", status=403), MONDAY_10H + i)
        for i, name in enumerate(
            ["authz_fail", "excess_rate_limit_exceeded", "authz_allow", "authz_fail"]
        )
    ]
    assert [r is not None for r in results] == [False, False, False, True]
    last = results[-1]
    assert last is not None and last.key == "carol" and last.event == "anomaly_repeated_denials"
    # anonymous refusals are not a principal's
    assert detector.check(context(), event("authz_fail", status=403), MONDAY_10H) is None


def test_token_reuse_fires_at_the_distinct_address_threshold() -> None:
    detector = TokenReuse(threshold=3, window=600)
    who = principal(credential="sha256:0011")
    found = []
    for index, client in enumerate(
        ["192.0.2.1", "192.0.2.1", "192.0.2.2", "192.0.2.2", "192.0.2.3"]
    ):
        anomaly = detector.check(context(client=client, who=who), None, MONDAY_10H + index)
        found.append(anomaly is not None)
    assert found == [False, False, False, False, True]
    assert anomaly is not None
    assert (anomaly.key_kind, anomaly.key, anomaly.event) == (
        "credential",
        "sha256:0011",
        "authn_token_reuse",
    )
    assert anomaly.evidence == {"addresses": 3, "window_s": 600}


def test_token_reuse_forgets_addresses_outside_the_window() -> None:
    detector = TokenReuse(threshold=3, window=600)
    who = principal(credential="jti:1")
    assert detector.check(context(client="192.0.2.1", who=who), None, MONDAY_10H) is None
    assert detector.check(context(client="192.0.2.2", who=who), None, MONDAY_10H + 10) is None
    # 192.0.2.1 was last seen 600 s ago: it no longer counts
    assert detector.check(context(client="192.0.2.3", who=who), None, MONDAY_10H + 600) is None
    assert detector.check(context(client="192.0.2.4", who=who), None, MONDAY_10H + 601) is not None


def test_token_reuse_ignores_requests_without_a_credential() -> None:
    detector = TokenReuse(threshold=2, window=600)
    for index in range(5):
        assert detector.check(context(client=f"192.0.2.{index}"), None, MONDAY_10H) is None
    assert detector.tracked_keys() == 0


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::/64"),
        ("2001:db8:1:2::1", "2001:db8:1:2::/64"),
        ("fe80::1%eth0", "fe80::/64"),
        ("::ffff:203.0.113.7", "203.0.113.7"),
        ("::ffff:0:203.0.113.9", "203.0.113.9"),  # IPv4-translated
        ("64:ff9b::203.0.113.9", "203.0.113.9"),  # NAT64: IPv4 clients of an IPv6-only server
        ("::203.0.113.9", "203.0.113.9"),  # IPv4-compatible
        ("2002:cb00:7109::1", "203.0.113.9"),  # 6to4
        ("::1", "::1"),
        ("not-an-address", "not-an-address"),
    ],
)
def test_client_keys_group_an_ipv6_subscriber_by_its_64(address: str, key: str) -> None:
    from secmw.anomaly.base import client_key

    assert client_key(address) == key


@pytest.mark.parametrize(
    ("claimed", "key"),
    [
        pytest.param("alice", "alice", id="short-kept-whole"),
        pytest.param("a" * 100, "a" * 100, id="100-kept-whole"),
        pytest.param("b" * 101, "b" * 48 + "\u2026sha256:", id="101-head-and-digest"),
        pytest.param("c" * 65_536, "c" * 48 + "\u2026sha256:", id="64k-head-and-digest"),
    ],
)
def test_a_long_claimed_subject_is_held_as_its_head_and_a_digest(claimed: str, key: str) -> None:
    detector = AuthFailureBurst(key_kind="subject", threshold=2)
    fired = None
    for offset in range(2):
        ctx = context()
        ctx.state["claimed_subject"] = claimed
        fired = detector.check(ctx, event("authn_login_fail"), MONDAY_10H + offset)
    assert fired is not None and fired.key.startswith(key) and len(fired.key) <= 100


def test_long_claimed_subjects_that_share_a_head_are_counted_apart() -> None:
    detector = AuthFailureBurst(key_kind="subject", threshold=2)
    fired = []
    for name in ("x" * 200 + "1", "x" * 200 + "2"):
        ctx = context()
        ctx.state["claimed_subject"] = name
        fired.append(detector.check(ctx, event("authn_login_fail"), MONDAY_10H))
    assert fired == [None, None] and detector.tracked_keys() == 2


def test_many_long_claimed_subjects_cost_memory_by_count_not_by_length() -> None:
    import tracemalloc

    detector = AuthFailureBurst(key_kind="subject", threshold=10)
    failed = event("authn_login_fail")
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(300):
            ctx = context()
            ctx.state["claimed_subject"] = f"{i:08d}" + "A" * 65_536  # a form field's worth
            detector.check(ctx, failed, MONDAY_10H)
            del ctx
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert detector.tracked_keys() == 300
    assert held < 1_000_000  # about 20 MB when the names were held whole
