"""The four algorithms against a fake clock, and against simple reference models."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule

from secmw.ratelimit.algorithms import (
    FIXED_WINDOW,
    GCRA,
    MOVING_WINDOW,
    SLIDING_WINDOW_COUNTER,
    STEPS,
    Limit,
)
from secmw.ratelimit.memory import MemoryStore


def make(algorithm: str, amount: int, window: float, burst: int | None = None) -> Limit:
    return Limit("t", "t:1", "t", algorithm, amount, window, burst or amount)


class Driver:
    """One key in a MemoryStore on a fake clock."""

    def __init__(self, limit: Limit, start: float = 0.0) -> None:
        self.limit = limit
        self.now = start
        self.store = MemoryStore(clock=lambda: self.now)

    def hit(self, cost: int = 1) -> Any:
        return self.store.apply([(self.limit, "k", cost)], self.now)[0]

    def at(self, now: float, cost: int = 1) -> Any:
        self.now = now
        return self.hit(cost)


def test_fixed_window_boundaries_and_retry_after() -> None:
    d = Driver(make(FIXED_WINDOW, 3, 10.0), start=100.0)
    assert [d.hit().allowed for _ in range(3)] == [True, True, True]
    refused = d.hit()
    assert not refused.allowed and refused.retry_after == 10.0 and refused.remaining == 0
    refused = d.at(109.75)
    assert not refused.allowed and refused.retry_after == pytest.approx(0.25)
    fresh = d.at(110.0)
    assert fresh.allowed and fresh.remaining == 2 and fresh.reset == 10.0


def test_moving_window_boundaries_and_retry_after() -> None:
    d = Driver(make(MOVING_WINDOW, 3, 10.0))
    assert d.at(0.0).allowed and d.at(4.0).allowed and d.at(8.0).allowed
    refused = d.at(9.0)
    assert not refused.allowed and refused.retry_after == 1.0  # the hit at 0 leaves at 10
    assert d.at(10.0).allowed
    refused = d.at(10.0, cost=2)
    assert not refused.allowed and refused.retry_after == 8.0  # hits at 4 and 8 must leave


def test_sliding_window_counter_weights_the_previous_window() -> None:
    d = Driver(make(SLIDING_WINDOW_COUNTER, 10, 10.0))
    for _ in range(10):
        assert d.at(5.0).allowed
    # At 15 half of the previous window (10 hits) overlaps: weight 5, so 5 more pass.
    assert [d.at(15.0).allowed for _ in range(5)] == [True] * 5
    refused = d.at(15.0)
    assert not refused.allowed and refused.retry_after == pytest.approx(1.0)
    assert d.at(16.0).allowed


def test_sliding_window_counter_retry_reaches_into_the_next_window() -> None:
    d = Driver(make(SLIDING_WINDOW_COUNTER, 4, 10.0))
    for _ in range(4):
        assert d.at(12.0).allowed
    refused = d.at(12.0)
    # Next window starts at 20 with previous = 4; one more passes once 4*(10-b)/10 + 1 <= 4.
    assert not refused.allowed and refused.retry_after == pytest.approx(8.0 + 2.5)
    assert not d.at(22.4).allowed
    assert d.at(22.5).allowed


def test_gcra_burst_then_one_per_interval() -> None:
    d = Driver(make(GCRA, 5, 60.0))  # T = 12 s, burst 5
    assert [d.at(0.0).allowed for _ in range(5)] == [True] * 5
    refused = d.at(0.0)
    assert not refused.allowed and refused.retry_after == 12.0 and refused.remaining == 0
    assert not d.at(11.5).allowed
    allowed = d.at(12.0)
    assert allowed.allowed and allowed.remaining == 0
    assert d.at(36.0).allowed and d.at(36.0).allowed and not d.at(36.0).allowed


def test_gcra_remaining_counts_the_burst_room_beyond_the_amount() -> None:
    # docs/ratelimit.md: with burst > amount, ``r`` is the bucket's room now and may exceed ``q``.
    d = Driver(make(GCRA, 5, 60.0, burst=10))
    assert [d.at(0.0).remaining for _ in range(3)] == [9, 8, 7]
    assert d.at(24.0).remaining == 8  # two intervals gave two units back, this hit took one


def test_gcra_burst_one_is_a_strict_interval() -> None:
    d = Driver(make(GCRA, 5, 60.0, burst=1))
    assert d.at(0.0).allowed
    refused = d.at(11.875)
    assert not refused.allowed and refused.retry_after == pytest.approx(0.125)
    assert d.at(12.0).allowed


@pytest.mark.parametrize(("rate", "window", "burst"), [(100, 60.0, 4), (6, 5.0, 2), (7, 3.0, 7)])
def test_gcra_a_cost_equal_to_the_burst_passes_on_an_idle_key_at_epoch_times(
    rate: int, window: float, burst: int
) -> None:
    # Epoch-sized times round in their last bit (~2.4e-7 s): the decision must not.
    for start in (1_763_770_000.123456, 1_763_770_123.9, 1_800_000_000.000001):
        d = Driver(make(GCRA, rate, window, burst=burst), start=start)
        first = d.hit(cost=burst)
        assert first.allowed and first.remaining == 0
        refused = d.hit(cost=1)
        assert not refused.allowed
        assert refused.retry_after == pytest.approx(window / rate, abs=1e-5)
        assert d.at(start + window / rate).allowed


def test_gcra_remaining_counts_whole_units_at_epoch_times() -> None:
    d = Driver(make(GCRA, 7, 3.0), start=1_763_770_000.5)
    assert d.hit(cost=2).remaining == 5
    assert d.hit(cost=5).remaining == 0
    assert not d.hit().allowed


@pytest.mark.parametrize("algorithm", list(STEPS))
def test_a_cost_above_the_limit_never_passes(algorithm: str) -> None:
    d = Driver(make(algorithm, 3, 10.0))
    refused = d.hit(cost=4)
    assert not refused.allowed and refused.retry_after == 10.0
    assert d.hit(cost=3).allowed


@pytest.mark.parametrize("algorithm", list(STEPS))
def test_a_refused_hit_consumes_nothing(algorithm: str) -> None:
    d = Driver(make(algorithm, 2, 10.0))
    assert d.hit(cost=1).allowed
    assert not d.hit(cost=5).allowed
    assert d.hit(cost=1).allowed


# -- reference models --------------------------------------------------------


class Reference:
    """Straightforward models written from the definitions, over a log of admitted hits."""

    def __init__(self, limit: Limit) -> None:
        self.limit = limit
        self.log: list[tuple[float, int]] = []
        self.fixed_start: float | None = None
        self.level = 0.0  # GCRA as a leaky bucket: seconds of work queued
        self.level_at = 0.0

    def admits(self, now: float, cost: int) -> bool:
        limit = self.limit
        w, amount = limit.window, limit.amount
        if limit.algorithm == FIXED_WINDOW:
            start = self.fixed_start
            if start is None or now >= start + w:
                used = 0
            else:
                used = sum(c for t, c in self.log if t >= start)
            return used + cost <= amount
        if limit.algorithm == MOVING_WINDOW:
            return sum(c for t, c in self.log if t > now - w) + cost <= amount
        if limit.algorithm == SLIDING_WINDOW_COUNTER:
            index = int(now // w)
            cur = sum(c for t, c in self.log if index * w <= t)
            prev = sum(c for t, c in self.log if (index - 1) * w <= t < index * w)
            weighted = prev * (w - (now - index * w)) / w + cur
            return weighted + cost <= amount
        interval = w / amount
        level = max(0.0, self.level - (now - self.level_at))
        return level + interval * cost <= interval * limit.burst + 1e-9

    def admit(self, now: float, cost: int) -> None:
        limit = self.limit
        if cost == 0:  # a zero-cost hit only looks; it starts no window
            return
        if limit.algorithm == FIXED_WINDOW and (
            self.fixed_start is None or now >= self.fixed_start + limit.window
        ):
            self.fixed_start = now
        interval = limit.window / limit.amount
        self.level = max(0.0, self.level - (now - self.level_at)) + interval * cost
        self.level_at = now
        self.log.append((now, cost))


LIMITS = [
    pytest.param((3, 6.0, None), id="3-per-6s"),
    pytest.param((5, 60.0, 2), id="5-per-60s"),
    pytest.param((4, 2.0, None), id="4-per-2s"),
]


def machine_for(algorithm: str, amount: int, window: float, burst: int | None) -> type:
    class AlgorithmMatchesReference(RuleBasedStateMachine):
        @initialize()
        def setup(self) -> None:
            self.limit = make(algorithm, amount, window, burst)
            self.now = 1000.0 * window
            self.store = MemoryStore(clock=lambda: self.now, max_keys=10)
            self.reference = Reference(self.limit)

        @rule(dt=st.sampled_from([0.0, 0.125, 0.5, 1.0, 2.0, window / 2, window, 2 * window]))
        def wait(self, dt: float) -> None:
            self.now += dt

        @rule(cost=st.integers(0, 3))
        def hit(self, cost: int) -> None:
            expected = self.reference.admits(self.now, cost)
            outcome = self.store.apply([(self.limit, "k", cost)], self.now)[0]
            assert outcome.allowed == expected, (self.now, cost)
            if expected:
                self.reference.admit(self.now, cost)
                return
            retry = outcome.retry_after
            assert retry > 0
            # Exact retry-after: passes at now + retry, not a moment before.
            if cost <= (self.limit.burst if algorithm == GCRA else amount):
                assert self.reference.admits(self.now + retry + 1e-9, cost)
                assert not self.reference.admits(self.now + retry - 1e-6, cost)

        @precondition(lambda self: True)
        @rule()
        def remaining_is_bounded(self) -> None:
            outcome = self.store.apply([(self.limit, "k", 0)], self.now)[0]
            assert 0 <= outcome.remaining <= max(amount, self.limit.burst)

    AlgorithmMatchesReference.TestCase.settings = settings(
        max_examples=40, stateful_step_count=40, deadline=None
    )
    return AlgorithmMatchesReference


@pytest.mark.parametrize("algorithm", list(STEPS))
@pytest.mark.parametrize("shape", LIMITS)
def test_algorithm_matches_reference_model(
    algorithm: str, shape: tuple[int, float, int | None]
) -> None:
    amount, window, burst = shape
    if algorithm != GCRA:
        burst = None
    machine = machine_for(algorithm, amount, window, burst)
    machine.TestCase().runTest()
