"""The windows' fast success path counts exactly as recording outcome 0 does."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from secmw.breaker.window import FAILED, SLOW, CountWindow, TimeWindow

OUTCOMES = st.lists(st.sampled_from([0, FAILED, SLOW, FAILED | SLOW, "reset"]), max_size=120)


@given(st.integers(min_value=1, max_value=12), OUTCOMES)
def test_ok_is_add_zero_in_a_count_window(size: int, outcomes: list[int | str]) -> None:
    fast, plain = CountWindow(size), CountWindow(size)
    for now, outcome in enumerate(outcomes):
        if outcome == "reset":
            fast.reset()
            plain.reset()
            continue
        assert isinstance(outcome, int)
        if outcome == 0:
            fast.ok(float(now))
        else:
            fast.add(outcome, float(now))
        plain.add(outcome, float(now))
        assert fast.totals(now) == plain.totals(now)


@given(st.integers(min_value=1, max_value=6), OUTCOMES)
def test_ok_is_add_zero_in_a_time_window(size: int, outcomes: list[int | str]) -> None:
    fast, plain = TimeWindow(size), TimeWindow(size)
    for step, outcome in enumerate(outcomes):
        now = step * 0.4
        if outcome == "reset":
            fast.reset()
            plain.reset()
            continue
        assert isinstance(outcome, int)
        if outcome == 0:
            fast.ok(now)
        else:
            fast.add(outcome, now)
        plain.add(outcome, now)
        assert fast.totals(now) == plain.totals(now)
