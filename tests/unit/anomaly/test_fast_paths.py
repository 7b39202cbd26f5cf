"""The per-request shortcuts keep behaviour: recency eviction, cached local hours, event routing."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secmw.anomaly import (
    AnomalyMonitor,
    AuthFailureBurst,
    KeyedState,
    NewTarget,
    OffHours,
    RepeatedDenials,
)
from secmw.anomaly.base import Anomaly
from secmw.anomaly.profile import _ROUTE_CACHE
from secmw.audit.base import AuditEvent
from secmw.context import RequestContext
from tests.anomaly_support import MONDAY_10H, FakeClock, context, event, principal


def test_a_key_in_use_survives_a_flood_of_new_keys() -> None:
    state: KeyedState[int] = KeyedState(max_keys=50, ttl=10_000)
    state.put("hot", 0, 1)
    for index in range(1, 5000):
        assert state.get("hot", index) == 1
        state.put(f"new-{index}", index, index)
        assert len(state) <= 50
    assert state.peek("hot") == 1
    assert state.evicted == 5000 - 50


@settings(max_examples=100, deadline=None)
@given(cap=st.integers(1, 6), keys=st.lists(st.integers(0, 12), max_size=60))
def test_without_hits_eviction_is_least_recently_put(cap: int, keys: list[int]) -> None:
    state: KeyedState[int] = KeyedState(max_keys=cap, ttl=1e9)
    order: list[int] = []  # exact LRU by hand
    for now, key in enumerate(keys):
        state.put(key, now, key)
        if key in order:
            order.remove(key)
        order.append(key)
        del order[:-cap]
        assert sorted(state.data) == sorted(order)
        assert list(state.keys()) == order


def test_expire_finds_idle_entries_anywhere_in_the_queue() -> None:
    state: KeyedState[int] = KeyedState(max_keys=10, ttl=60)
    state.put("a", 0, 1)
    state.put("b", 10, 2)
    state.put("c", 20, 3)
    state.get("a", 50)  # used again: stays, though queued first
    assert state.expire(75) == 1 and sorted(state.data) == ["a", "c"]


ZONES = ["UTC", "Asia/Kolkata", "America/New_York", "Australia/Lord_Howe", "Asia/Kathmandu"]


@settings(max_examples=60, deadline=None)
@given(
    zone=st.sampled_from(ZONES),
    start=st.floats(1_700_000_000, 1_900_000_000),
    steps=st.lists(st.floats(0, 5000), min_size=1, max_size=40),
)
def test_off_hours_cached_hour_matches_the_calendar(
    zone: str, start: float, steps: list[float]
) -> None:
    detector = OffHours(learning_period=1, min_requests=0, timezone=zone)
    tz = ZoneInfo(zone)
    now = start
    for step in steps:
        now += step
        # A fresh subject each time: the first request is learned, the check is the bits.
        ctx = context(who=principal(f"s{now}"))
        detector.check(ctx, None, now)
        local = datetime.fromtimestamp(int(now), tz)
        weekday, hour, _, _ = detector._bits
        assert (weekday, hour) == (local.weekday(), local.hour), (zone, now)


def test_off_hours_across_a_daylight_saving_change() -> None:
    detector = OffHours(learning_period=1, min_requests=0, timezone="America/New_York")
    # 2026-11-01 06:00 UTC is 01:00 EST, the repeated hour after the fall-back.
    for offset in range(-7200, 7200, 600):
        now = 1793512800.0 + offset
        detector.check(context(who=principal(f"dst{offset}")), None, now)
        local = datetime.fromtimestamp(now, ZoneInfo("America/New_York"))
        assert detector._bits[:2] == (local.weekday(), local.hour)


class _EveryEvent:
    """A custom outcome detector that declares no events: it must see them all."""

    name = "every"
    event = "custom"
    phase = "outcome"
    key_kind = "client"
    response = "alert"
    cool_down = 60.0

    def __init__(self) -> None:
        self.seen: list[str] = []

    def check(self, ctx: RequestContext, event: AuditEvent | None, now: float) -> Anomaly | None:
        assert event is not None
        self.seen.append(event.name)
        return None

    def tracked_keys(self) -> int:
        return 0


@pytest.mark.parametrize("count_app_401", [True, False])
def test_outcome_events_reach_every_detector_that_can_count_them(count_app_401: bool) -> None:
    fired: list[str] = []
    every = _EveryEvent()
    monitor = AnomalyMonitor(
        [
            AuthFailureBurst(threshold=1, window=60, count_app_401=count_app_401),
            RepeatedDenials(threshold=1, window=60),
            every,  # type: ignore[list-item]
        ],
        clock=FakeClock(MONDAY_10H),
        on_anomaly=lambda anomaly: fired.append(anomaly.detector),
    )
    cases = [
        event("authz_allow"),
        event("authz_allow", status=401),  # the app answered 401 (a failed login form)
        event("authn_token_invalid"),
        event("authz_fail", subject="bob", status=403),
        event("authn_token_missing"),
        event("something_else", outcome="error", status=500),
    ]
    for item in cases:
        monitor.observe(context(), item)
    assert every.seen == [item.name for item in cases]
    expected = ["auth_failures_by_client"] if count_app_401 else []
    expected += ["auth_failures_by_client", "repeated_denials"]
    assert fired == expected


def test_new_target_route_cache_is_bounded_and_changes_no_answer() -> None:
    detector = NewTarget(learning_period=1, min_requests=0)
    who = principal("kim")
    for index in range(10_000):  # an id in every path: the whole-path cache gives up
        assert detector.check(context(f"/api/items/{index}", who=who), None, MONDAY_10H) is None
        assert sum(len(paths) for paths in detector._routes.values()) <= _ROUTE_CACHE + 1
    later = MONDAY_10H + 2
    for path, method, target in [
        ("/api/items/10001", "GET", None),
        ("/api/other/1", "GET", "GET /api/other"),
        ("/api/items/7", "POST", "POST /api/items"),
        ("/api", "GET", "GET /api"),
        ("/api/other/2", "GET", None),
    ]:
        anomaly = detector.check(context(path, who=who, method=method), None, later)
        assert (anomaly.evidence["target"] if anomaly else None) == target, path


def test_new_target_few_paths_are_remembered_whole() -> None:
    detector = NewTarget(learning_period=1, min_requests=0, route_depth=1)
    who = principal("lee")
    for _ in range(3):
        for path in ("/a/b", "/a/c", "/d"):
            detector.check(context(path, who=who), None, MONDAY_10H)
    assert detector._routes == {
        "GET": {"/a": "GET /a", "/a/b": "GET /a", "/a/c": "GET /a", "/d": "GET /d"}
    }
