"""Rate spikes against an EWMA baseline, first use of a target, and off-hours access."""

from __future__ import annotations

import pytest

from secmw.anomaly import NewTarget, OffHours, RateSpike
from secmw.context import RequestContext
from tests.anomaly_support import MONDAY_10H, context, principal

DAY = 86_400.0


def _burst(detector: RateSpike, count: int, start: float) -> list[int]:
    """Send ``count`` requests within one interval; the 1-based indexes that fired."""
    who = principal("dave")
    fired = []
    for index in range(1, count + 1):
        if detector.check(context(who=who), None, start + index * 0.001) is not None:
            fired.append(index)
    return fired


def _steady(detector: RateSpike, intervals: int, per_interval: int, start: float) -> float:
    for interval in range(intervals):
        assert _burst(detector, per_interval, start + interval * 60) == []
    return start + intervals * 60


def test_no_spike_before_the_baseline_exists() -> None:
    detector = RateSpike(interval=60, factor=5, min_requests=10, warmup=5)
    # a brand-new principal sending a flood is not compared with anything
    assert _burst(detector, 500, MONDAY_10H) == []
    # nor during the remaining warm-up intervals
    now = MONDAY_10H + 60
    for _ in range(4):
        assert _burst(detector, 500, now) == []
        now += 60


def test_spike_fires_exactly_when_the_threshold_is_crossed_once_per_interval() -> None:
    detector = RateSpike(interval=60, factor=5, min_requests=10, alpha=1.0, warmup=3)
    now = _steady(detector, 3, 4, MONDAY_10H)
    # baseline 4 (alpha 1 keeps the last interval): threshold max(10, 20) = 20
    assert detector.baseline("dave") == pytest.approx(4.0)
    assert _burst(detector, 40, now) == [20]
    # the next interval starts over with the spike in the baseline
    assert _burst(detector, 10, now + 60) == []


def test_min_requests_floors_the_threshold_of_a_quiet_principal() -> None:
    detector = RateSpike(interval=60, factor=5, min_requests=30, alpha=1.0, warmup=2)
    now = _steady(detector, 2, 1, MONDAY_10H)
    assert _burst(detector, 29, now) == []
    assert _burst(detector, 1, now + 0.5) == [1]


def test_idle_intervals_decay_the_baseline() -> None:
    detector = RateSpike(interval=60, factor=2, min_requests=1, alpha=0.5, warmup=1)
    now = _steady(detector, 1, 8, MONDAY_10H)
    _burst(detector, 1, now)  # closes the first interval: baseline 4
    assert detector.baseline("dave") == pytest.approx(4.0)
    _burst(detector, 1, now + 3 * 60)  # one request, then two empty intervals
    assert detector.baseline("dave") == pytest.approx((0.5 * 1 + 0.5 * 4) * 0.25)


def test_anonymous_requests_have_no_baseline() -> None:
    detector = RateSpike(warmup=1)
    assert detector.check(context(), None, MONDAY_10H) is None
    assert detector.tracked_keys() == 0


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"interval": 0}, id="interval"),
        pytest.param({"factor": 1}, id="factor"),
        pytest.param({"alpha": 0}, id="alpha"),
        pytest.param({"warmup": 0}, id="warmup"),
    ],
)
def test_rate_spike_refuses_meaningless_settings(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RateSpike(**kwargs)  # type: ignore[arg-type]


def _call(detector: NewTarget, path: str, now: float, body: bytes | None = None) -> bool:
    ctx = context(path, who=principal("erin"), method="POST" if body else "GET")
    if body is not None:
        _load_rpc(ctx, body)
    return detector.check(ctx, None, now) is not None


def _load_rpc(ctx: RequestContext, body: bytes) -> None:
    ctx.headers.raw = [(b"content-type", b"application/json")]
    ctx.headers._index = None
    ctx.load_body(body)


def _tool(name: str) -> bytes:
    return (
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"'
        + name.encode()
        + b'","arguments":{}}}'
    )


def test_new_route_is_silent_while_learning_then_fires_once() -> None:
    detector = NewTarget(learning_period=7 * DAY, min_requests=3, route_depth=2)
    for day in range(7):
        assert not _call(detector, f"/api/items/{day}", MONDAY_10H + day * DAY)
    assert not _call(detector, "/api/orders", MONDAY_10H + DAY)  # learned during the period
    later = MONDAY_10H + 8 * DAY
    assert not _call(detector, "/api/items/999", later)  # ids below the route depth
    assert not _call(detector, "/api/orders/7", later)
    assert _call(detector, "/admin/users", later)
    assert not _call(detector, "/admin/users", later + 1)  # once


def test_new_target_needs_enough_requests_as_well_as_time() -> None:
    detector = NewTarget(learning_period=DAY, min_requests=10)
    assert not _call(detector, "/a", MONDAY_10H)
    assert not _call(detector, "/b", MONDAY_10H + 2 * DAY)  # only 2 requests so far


def test_new_tool_uses_the_mcp_tool_name() -> None:
    detector = NewTarget(learning_period=DAY, min_requests=1)
    assert not _call(detector, "/mcp", MONDAY_10H, _tool("search"))
    assert not _call(detector, "/mcp", MONDAY_10H + 1, _tool("search"))
    later = MONDAY_10H + 2 * DAY
    assert not _call(detector, "/mcp", later, _tool("search"))
    ctx = context("/mcp", who=principal("erin"), method="POST")
    _load_rpc(ctx, _tool("delete_repo"))
    anomaly = detector.check(ctx, None, later + 1)
    assert anomaly is not None and anomaly.evidence["target"] == "tool:delete_repo"
    assert anomaly.event == "anomaly_new_target"


def test_a_token_in_the_path_is_neither_a_route_nor_written_into_the_alert() -> None:
    detector = NewTarget(learning_period=DAY, min_requests=0)
    assert not _call(detector, "/api/x", MONDAY_10H)
    later = MONDAY_10H + 2 * DAY
    secret = "github_pat_11ABCDEFG0123456789_abcdefghijklmnop"
    ctx = context(f"/tokens/{secret}/revoke", who=principal("erin"))
    anomaly = detector.check(ctx, None, later)
    assert anomaly is not None and anomaly.evidence["target"] == "GET /tokens/*"
    assert secret not in anomaly.reason
    other = context(
        "/tokens/ghp_0123456789abcdefghij0123456789abcdef/revoke", who=principal("erin")
    )
    assert detector.check(other, None, later + 1) is None  # the same route, not a new one
    # A token that does not start its segment (a Telegram bot path) is hidden too.
    bot = "bot5928374610:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
    anomaly = detector.check(context(f"/{bot}/sendMessage", who=principal("erin")), None, later + 2)
    assert anomaly is not None and anomaly.evidence["target"] == "GET /*/sendMessage"
    assert "AAHdq" not in anomaly.reason


def test_a_full_target_profile_stops_growing_and_alerting() -> None:
    detector = NewTarget(learning_period=DAY, min_requests=0, max_targets=2)
    assert not _call(detector, "/a", MONDAY_10H)
    assert not _call(detector, "/b", MONDAY_10H)
    assert not _call(detector, "/c", MONDAY_10H + 2 * DAY)


def _hours(detector: OffHours, now: float) -> bool:
    return detector.check(context(who=principal("frank")), None, now) is not None


def test_weekday_only_principal_on_a_weekend() -> None:
    detector = OffHours(learning_period=7 * DAY, min_requests=5)
    for week in range(2):
        for day in range(5):  # Monday..Friday 10:00
            assert not _hours(detector, MONDAY_10H + week * 7 * DAY + day * DAY)
    saturday = MONDAY_10H + 12 * DAY
    anomaly = detector.check(context(who=principal("frank")), None, saturday)
    assert anomaly is not None
    assert anomaly.evidence["day"] == "sat" and anomaly.evidence["hour"] == 10
    assert anomaly.evidence["usual_days"] == ["mon", "tue", "wed", "thu", "fri"]
    assert not _hours(detector, saturday + 60)  # the day is now part of the profile


def test_unusual_hour_fires_and_learning_is_silent() -> None:
    detector = OffHours(learning_period=DAY, min_requests=2)
    assert not _hours(detector, MONDAY_10H)
    assert not _hours(detector, MONDAY_10H + 3600)  # 11h, still learning
    next_monday = MONDAY_10H + 7 * DAY
    assert not _hours(detector, next_monday)
    assert _hours(detector, next_monday - 7 * 3600)  # Monday 03:00


def test_off_hours_uses_the_configured_time_zone() -> None:
    detector = OffHours(learning_period=DAY, min_requests=0, timezone="America/New_York")
    # 10:00 UTC is 05:00 in New York (EST): learned as hour 5 on Monday
    assert not _hours(detector, MONDAY_10H)
    anomaly = detector.check(context(who=principal("frank")), None, MONDAY_10H + DAY + 4 * 3600)
    assert anomaly is not None and anomaly.evidence["hour"] == 9


@pytest.mark.parametrize(("alpha", "interval", "back"), [(1.0, 60, 3600.0), (0.1, 1, 20_000.0)])
def test_a_clock_that_steps_back_or_far_ahead_never_breaks_the_detector(
    alpha: float, interval: float, back: float
) -> None:
    detector = RateSpike(interval=interval, factor=5, min_requests=10, alpha=alpha, warmup=2)
    now = MONDAY_10H
    for _ in range(3):
        assert _burst(detector, 4, now) == []
        now += interval
    baseline = detector.baseline("dave")
    assert _burst(detector, 4, now - back) == []  # counted into the open interval
    assert detector.baseline("dave") == baseline
    assert _burst(detector, 4, now + 1e9) == []  # a huge gap only decays the baseline
    assert detector.baseline("dave") == pytest.approx(0.0, abs=1e-9)


def test_new_target_remembers_no_more_than_256_characters_of_a_client_path() -> None:
    detector = NewTarget(learning_period=DAY, min_requests=1)
    who = principal("erin")
    for n in range(50):
        detector.check(context(f"/x{n}" + "a" * 8000, who=who), None, MONDAY_10H + n)
    remembered = [key for routes in detector._routes.values() for key in routes]
    assert remembered and max(map(len, remembered)) <= 256
    profile = detector._state.peek("erin")
    assert profile is not None and max(map(len, profile.targets)) <= 256 + len("GET ")


@pytest.mark.parametrize(
    ("utc", "hour"),
    [("05:29", 1), ("05:30", 3), ("05:45", 3), ("05:59", 3), ("06:00", 3), ("06:30", 4)],
)
def test_local_hours_follow_a_dst_change_in_the_middle_of_a_utc_hour(utc: str, hour: int) -> None:
    from datetime import UTC, datetime

    # St. John's (UTC-3:30) springs forward at 02:00 local = 05:30 UTC on 2026-03-08.
    detector = OffHours(learning_period=DAY, min_requests=1, timezone="America/St_Johns")
    hh, mm = map(int, utc.split(":"))
    now = datetime(2026, 3, 8, hh, mm, tzinfo=UTC).timestamp()
    detector._local(now - 3600)  # an offset already looked up earlier in the hour
    assert detector._local(now)[1] == hour
