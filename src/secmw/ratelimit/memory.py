"""In-process counter storage: exact composite checks, bounded memory, no I/O.

Every call is synchronous and never awaits, so a composite check (look at every
tier, then commit all or nothing) cannot interleave with another request on the
same event loop: it is exact on asyncio and on trio alike, with no lock and no
background thread (``limits``' async memory storage is asyncio-only and its sync
one runs a timer thread).

Memory stays bounded: each counter (tier window) keeps its keys in least-recently
used order, expired keys are dropped from the front as new hits arrive, and past
``max_keys`` keys in total the least recently used key is evicted (which resets
that key's count: the bound trades exactness for a key nobody used lately
against running out of memory).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from typing import Any

from secmw.ratelimit.algorithms import STEPS, Limit, Outcome

Check = tuple[Limit, Hashable, int]


def _steady_clock() -> Callable[[], float]:
    offset = time.time() - time.monotonic()
    return lambda: time.monotonic() + offset


# Epoch seconds that never step back: the monotonic clock, set to the wall clock
# once. A wall clock stepped back an hour would otherwise refuse every key for an
# hour (forward: reset every count); ``X-RateLimit-Reset`` still reads as epoch time.
steady_clock: Callable[[], float] = _steady_clock()


class MemoryStore:
    """Counters in this process; see the module docstring for the trade-offs."""

    __slots__ = ("_clock", "_size", "_tables", "evictions", "max_keys")

    def __init__(
        self, *, max_keys: int = 1_000_000, clock: Callable[[], float] = steady_clock
    ) -> None:
        self.max_keys = max_keys
        self._clock = clock
        self._tables: dict[str, OrderedDict[Hashable, tuple[float, Any]]] = {}
        self._size = 0
        self.evictions = 0

    def __len__(self) -> int:
        return self._size

    def apply(self, checks: Sequence[Check], now: float | None = None) -> list[Outcome]:
        """Evaluate every check; when no enforced one refuses, commit the admitted ones."""
        if now is None:
            now = self._clock()
        tables = self._tables
        steps = STEPS
        outcomes: list[Outcome] = []
        found: list[OrderedDict[Hashable, tuple[float, Any]] | None] = []
        admitted = True
        for limit, key, cost in checks:
            table = tables.get(limit.slot)
            found.append(table)
            entry = table.get(key) if table is not None else None
            state = entry[1] if entry is not None and entry[0] > now else None
            outcome = steps[limit.algorithm](state, now, cost, limit)
            if not outcome[0] and not limit.shadow:
                admitted = False
            outcomes.append(outcome)
        if admitted:
            for index, (limit, key, cost) in enumerate(checks):
                outcome = outcomes[index]
                if not (outcome[0] and cost):  # refused by a shadow tier, or only a look
                    continue
                table = found[index]
                if table is not None and key in table and outcome[2] > now:
                    table.move_to_end(key)  # the common case: a known key
                    table[key] = (outcome[2], outcome[1])
                else:
                    self._store(limit.slot, key, outcome, now)
        return outcomes

    def _store(self, slot: str, key: Hashable, outcome: Outcome, now: float) -> None:
        table = self._tables.get(slot)
        if table is None:
            table = self._tables[slot] = OrderedDict()
        if outcome.expires_at <= now:  # nothing left to remember (a zero-cost first hit)
            if table.pop(key, None) is not None:
                self._size -= 1
            return
        if key in table:
            table.move_to_end(key)
            table[key] = (outcome.expires_at, outcome.state)
            return
        table[key] = (outcome.expires_at, outcome.state)
        self._size += 1
        # Amortised cleanup: each new key retires up to two expired ones.
        for _ in range(2):
            oldest = next(iter(table))  # never empty: the new key is in it
            if table[oldest][0] > now:
                break
            del table[oldest]
            self._size -= 1
        if self._size > self.max_keys:
            self._evict(now)

    def _evict(self, now: float) -> None:
        """Drop expired keys everywhere, then least recently used ones, until in bounds."""
        for table in self._tables.values():
            while table and next(iter(table.values()))[0] <= now:
                table.popitem(last=False)
                self._size -= 1
        while self._size > self.max_keys:
            table = max(self._tables.values(), key=len)
            table.popitem(last=False)
            self._size -= 1
            self.evictions += 1

    def clear(self) -> None:
        """Forget every counter."""
        self._tables.clear()
        self._size = 0
