"""The four counting algorithms, as pure functions over a small per-key state.

Each ``step`` looks at the stored state of one key, the time and the request's
cost, and returns what would happen without storing anything, so a composite
check can look at every tier first and commit only when all of them admit the
request. The Redis backend runs the same arithmetic in one Lua script
(:mod:`secmw.ratelimit.redis_lua`); the tests hold both to one reference model.

Semantics follow the strategies of the ``limits`` library:

* fixed window: a counter that starts at the key's first hit and resets
  ``window`` seconds later;
* moving window: a log of hit times; a hit passes while fewer than ``amount``
  hits fall in the last ``window`` seconds;
* sliding-window counter: two epoch-aligned windows, the previous one weighted
  by how much of it still overlaps the last ``window`` seconds;
* GCRA (governor's generic cell rate algorithm): one theoretical arrival time
  (TAT) per key, emission interval ``T = window / amount`` and tolerance
  ``tau = T * (burst - 1)``; a hit passes when ``now >= TAT - tau`` (for a cost
  ``c``: ``max(TAT, now) + T*c - T - tau <= now``), the retry-after is exact.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

FIXED_WINDOW = "fixed-window"
MOVING_WINDOW = "moving-window"
SLIDING_WINDOW_COUNTER = "sliding-window-counter"
GCRA = "gcra"
ALGORITHMS = (FIXED_WINDOW, MOVING_WINDOW, SLIDING_WINDOW_COUNTER, GCRA)

# Divisions (``window / amount``, the sliding weight) are inexact in binary; a hit
# exactly on a boundary must not be refused because of the last bit.
EPSILON = 1e-9
# Stored times are epoch seconds (~1.7e9), whose last bit is ~2.4e-7 s: a time
# comparison allows one microsecond (Redis: 1e-3 ms) so rounding never refuses.
TIME_EPSILON = 1e-6


@dataclass(frozen=True, slots=True)
class Limit:
    """One window of one tier, compiled: the unit every algorithm counts against.

    ``slot`` names the counter (tier and window): plans of a tier with the same
    window share it, so a principal whose plan changes keeps its count.
    ``descriptor`` is the limit's member of the ``RateLimit-Policy`` field.
    ``shared`` marks a tier no single caller owns (keyed by none of ``principal``,
    ``api_key``, ``connection``: ``global``, ``tenant``, ``route``, ``tool``,
    ``ip``): a refusal by it is not the refused caller's own doing.
    """

    tier: str
    slot: str
    policy: str
    algorithm: str
    amount: int
    window: float
    burst: int
    shadow: bool = False
    descriptor: str = ""
    shared: bool = False

    @property
    def interval(self) -> float:
        """GCRA's emission interval T (seconds per unit of quota)."""
        return self.window / self.amount


class Outcome(NamedTuple):
    """What one key's algorithm says about one hit.

    ``state`` and ``expires_at`` are what to store when the request is admitted;
    ``remaining`` and ``reset`` (seconds) describe the key after the hit (before
    it, when refused); ``retry_after`` (seconds) is set when refused. A named
    tuple, because one is made per tier on every request.
    """

    allowed: bool
    state: Any
    expires_at: float
    remaining: int
    reset: float
    retry_after: float = 0.0


# ``Outcome(...)`` goes through a Python-level ``__new__``; the steps run for every
# tier of every request, so they build the tuple directly (all six fields).
_outcome = tuple.__new__


def fixed_window(state: Any, now: float, cost: int, limit: Limit) -> Outcome:
    """Fixed window; ``state`` is ``(count, window_end)``."""
    if state is None or state[1] <= now:
        count, end = 0, now + limit.window
    else:
        count, end = state
    if count + cost > limit.amount:
        retry = end - now if cost <= limit.amount else limit.window
        return _outcome(Outcome, (False, state, end, limit.amount - count, end - now, retry))
    count += cost
    return _outcome(Outcome, (True, (count, end), end, limit.amount - count, end - now, 0.0))


def moving_window(state: Any, now: float, cost: int, limit: Limit) -> Outcome:
    """Moving window; ``state`` is the ascending list of hit times still in the window."""
    window = limit.window
    hits: list[float] = state if state is not None else []
    start = bisect_right(hits, now - window)
    live = len(hits) - start
    if live + cost > limit.amount:
        if cost > limit.amount:
            retry = window
        else:
            # The hit passes once enough of the oldest live entries have aged out.
            retry = hits[start + live + cost - limit.amount - 1] + window - now
        reset = hits[start] + window - now if live else 0.0
        return _outcome(
            Outcome, (False, state, now + reset, max(0, limit.amount - live), reset, retry)
        )
    kept = hits[start:] if start else list(hits)
    kept.extend([now] * cost)
    reset = kept[0] + window - now if kept else 0.0
    return _outcome(Outcome, (True, kept, now + window, limit.amount - live - cost, reset, 0.0))


def sliding_window_counter(state: Any, now: float, cost: int, limit: Limit) -> Outcome:
    """Sliding-window counter; ``state`` is ``(window_index, current, previous)``."""
    window = limit.window
    index = math.floor(now / window)
    current = previous = 0
    if state is not None:
        stored_index, stored_current, stored_previous = state
        if stored_index == index:
            current, previous = stored_current, stored_previous
        elif stored_index == index - 1:
            previous = stored_current
    elapsed = now - index * window
    to_end = window - elapsed
    weighted = previous * to_end / window + current
    amount = limit.amount
    if weighted + cost > amount + EPSILON:
        retry = _sliding_retry(previous, current, elapsed, cost, limit)
        refused = (False, state, (index + 2) * window, max(0, amount - math.ceil(weighted)))
        return _outcome(Outcome, (*refused, to_end, retry))
    current += cost
    remaining = max(0, math.floor(amount - (weighted + cost)))
    admitted = (True, (index, current, previous), (index + 2) * window, remaining)
    return _outcome(Outcome, (*admitted, to_end, 0.0))


def _sliding_retry(previous: int, current: int, elapsed: float, cost: int, limit: Limit) -> float:
    """Seconds until ``weighted + cost <= amount`` for a refused sliding-window hit."""
    window, amount = limit.window, limit.amount
    if cost > amount:
        return window
    to_end = window - elapsed
    if current + cost <= amount:
        # Still in this window: wait until the previous window's weight drops enough.
        needed = window - (amount - current - cost) * window / previous
        return max(0.0, needed - elapsed)
    # Next window: this window's count becomes the weighted previous one.
    into_next = window - (amount - cost) * window / current
    return to_end + max(0.0, into_next)


def gcra(state: Any, now: float, cost: int, limit: Limit) -> Outcome:
    """GCRA; ``state`` is the theoretical arrival time (TAT)."""
    interval = limit.interval
    burst = limit.burst
    # Everything relative to ``now``: an epoch-sized ``TAT - tau`` carries ~1e-7 s of
    # rounding, which refused a cost equal to the burst on an idle key forever.
    lead = state - now if state is not None and state > now else 0.0
    wait = lead + interval * (cost - burst)
    if wait > TIME_EPSILON:
        retry = wait if cost <= burst else limit.window
        remaining = _gcra_remaining(lead, interval, burst)
        return _outcome(Outcome, (False, state, now + lead, remaining, lead, retry))
    lead += interval * cost
    remaining = _gcra_remaining(lead, interval, burst)
    return _outcome(Outcome, (True, now + lead, now + lead, remaining, lead, 0.0))


def _gcra_remaining(lead: float, interval: float, burst: int) -> int:
    """Whole units that would still pass now: the largest ``k`` with ``lead + T*(k - burst)``
    within the tolerance of the decision."""
    return max(0, math.floor(burst - (lead - TIME_EPSILON) / interval + 1e-9))


Step = Callable[[Any, float, int, Limit], Outcome]

STEPS: dict[str, Step] = {
    FIXED_WINDOW: fixed_window,
    MOVING_WINDOW: moving_window,
    SLIDING_WINDOW_COUNTER: sliding_window_counter,
    GCRA: gcra,
}
