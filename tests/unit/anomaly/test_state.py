"""Bounded per-key state: the cap, the idle expiry and the sliding window."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secmw.anomaly import EventWindow, KeyedState


def test_cap_evicts_the_least_recently_used() -> None:
    state: KeyedState[int] = KeyedState(max_keys=2, ttl=100)
    state.put("a", 0, 1)
    state.put("b", 1, 2)
    assert state.get("a", 2) == 1  # a is now the most recent
    state.put("c", 3, 3)
    assert list(state.keys()) == ["a", "c"] and state.evicted == 1
    assert state.peek("b") is None


def test_idle_entries_expire() -> None:
    state: KeyedState[int] = KeyedState(max_keys=10, ttl=60)
    state.put("a", 0, 1)
    state.put("b", 50, 2)
    assert state.get("a", 60) == 1  # exactly ttl: still alive, and refreshed
    assert state.get("a", 121) is None
    assert state.expire(200) == 1 and len(state) == 0
    assert state.setdefault("z", 0, lambda now: 7) == 7 and state.pop("z") == 7


@pytest.mark.parametrize(
    ("touched", "left"),
    [
        pytest.param(False, ["new-0", "new-1", "new-2"], id="idle-keys-go-as-new-ones-come"),
        pytest.param(True, ["old-1", "new-0", "new-1", "new-2"], id="a-key-in-use-stays"),
    ],
)
def test_new_keys_sweep_idle_ones_without_a_full_expiry(touched: bool, left: list[str]) -> None:
    state: KeyedState[int] = KeyedState(max_keys=100, ttl=60)
    for n in range(3):
        state.put(f"old-{n}", 0, n)
    if touched:
        assert state.get("old-1", 50) == 1
    for n in range(3):  # each new key drops (or requeues) two from the front
        state.put(f"new-{n}", 100 + n, n)
    assert list(state.data) == left  # queue order
    assert state.evicted == 0  # expiry is not eviction


def test_max_keys_must_be_positive() -> None:
    with pytest.raises(ValueError):
        KeyedState(0, 1)


@pytest.mark.parametrize(
    ("times", "fires"),
    [
        pytest.param([0, 1, 2], [False, False, True], id="three-in-window"),
        pytest.param([0, 5, 10], [False, False, False], id="spread-exactly-window"),
        pytest.param([0, 5, 10, 11], [False, False, False, True], id="ring-slides"),
        pytest.param([0, 1, 2, 3, 4, 5], [False, False, True, False, False, True], id="re-arms"),
        pytest.param([0, 20, 40, 41, 42], [False, False, False, False, True], id="wraps-around"),
    ],
)
def test_event_window(times: list[float], fires: list[bool]) -> None:
    window = EventWindow(3)
    assert [window.add(t, 10) for t in times] == fires


def test_event_window_count() -> None:
    window = EventWindow(5)
    for t in (0, 1, 8):
        window.add(t, 10)
    assert window.count(10, 10) == 2


@settings(max_examples=200, deadline=None)
@given(
    threshold=st.integers(1, 6),
    window=st.integers(1, 30),
    gaps=st.lists(st.integers(0, 20), max_size=60),
)
def test_event_window_matches_a_naive_sliding_window(
    threshold: int, window: int, gaps: list[int]
) -> None:
    ring = EventWindow(threshold)
    naive: list[float] = []
    now = 0.0
    for gap in gaps:
        now += gap
        naive.append(now)
        expected = len(naive) >= threshold and now - naive[-threshold] < window
        if expected:
            naive.clear()
        assert ring.add(now, window) is expected


@settings(max_examples=100, deadline=None)
@given(
    cap=st.integers(1, 8),
    ops=st.lists(st.tuples(st.integers(0, 20), st.integers(0, 5)), max_size=80),
)
def test_keyed_state_never_exceeds_its_cap(cap: int, ops: list[tuple[int, int]]) -> None:
    state: KeyedState[int] = KeyedState(cap, ttl=10)
    now = 0.0
    for key, step in ops:
        now += step
        if state.get(key, now) is None:
            state.put(key, now, key)
        assert len(state) <= cap
        assert state.peek(key) == key
