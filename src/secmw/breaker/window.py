"""Sliding windows of call outcomes: the last N calls, or the last N seconds."""

from __future__ import annotations

from typing import Protocol

# An outcome is packed in two bits: failure and slow.
FAILED = 1
SLOW = 2


class Window(Protocol):
    """Protocol: aggregate outcomes; after ``add`` the totals are current.

    ``calls``, ``failures`` and ``slow`` are read right after ``add`` (the hot
    path, no tuple built); :meth:`totals` brings a time window up to date first.
    """

    calls: int
    failures: int
    slow: int

    def add(self, outcome: int, now: float) -> None:
        """Record one outcome at ``now``."""
        ...

    def ok(self, now: float) -> None:
        """Record a success that was not slow (``add(0, now)``, the common case)."""
        ...

    def totals(self, now: float) -> tuple[int, int, int]:
        """(calls, failures, slow calls) currently in the window."""
        ...

    def reset(self) -> None:
        """Forget every outcome."""
        ...


class CountWindow:
    """The last ``size`` outcomes, in a ring; O(1) per call."""

    __slots__ = ("_next", "_ring", "_size", "calls", "failures", "slow")

    def __init__(self, size: int) -> None:
        self._size = size
        self._ring = [0] * size
        self.reset()

    def reset(self) -> None:
        """Forget every outcome."""
        self.calls = 0
        self.failures = 0
        self.slow = 0
        self._next = 0

    def add(self, outcome: int, now: float) -> None:
        """Record ``outcome``, evicting the oldest one when the ring is full."""
        index = self._next
        if self.calls == self._size:
            old = self._ring[index]
            self.failures -= old & FAILED
            self.slow -= (old & SLOW) >> 1
        else:
            self.calls += 1
        self._ring[index] = outcome
        self.failures += outcome & FAILED
        self.slow += (outcome & SLOW) >> 1
        index += 1
        self._next = 0 if index == self._size else index

    def ok(self, now: float) -> None:
        """``add(0, now)`` without the bit arithmetic when nothing is evicted but a success."""
        index = self._next
        if self.calls == self._size:
            old = self._ring[index]
            if old:
                self.failures -= old & FAILED
                self.slow -= (old & SLOW) >> 1
                self._ring[index] = 0
        else:
            self.calls += 1
            self._ring[index] = 0
        index += 1
        self._next = 0 if index == self._size else index

    def totals(self, now: float) -> tuple[int, int, int]:
        """(calls, failures, slow calls) in the ring."""
        return self.calls, self.failures, self.slow


class TimeWindow:
    """Outcomes of the last ``size`` whole seconds, in one bucket per second."""

    __slots__ = ("_buckets", "_head", "_size", "calls", "failures", "slow")

    def __init__(self, size: int) -> None:
        self._size = size
        self._buckets = [[0, 0, 0] for _ in range(size)]
        self.reset()

    def reset(self) -> None:
        """Forget every outcome."""
        for bucket in self._buckets:
            bucket[0] = bucket[1] = bucket[2] = 0
        self.calls = self.failures = self.slow = 0
        self._head: int | None = None

    def _advance(self, second: int) -> None:
        head = self._head
        if head is not None and second <= head:
            return
        first = second - self._size + 1 if head is None else max(head + 1, second - self._size + 1)
        for moment in range(first, second + 1):
            bucket = self._buckets[moment % self._size]
            self.calls -= bucket[0]
            self.failures -= bucket[1]
            self.slow -= bucket[2]
            bucket[0] = bucket[1] = bucket[2] = 0
        self._head = second

    def add(self, outcome: int, now: float) -> None:
        """Record ``outcome`` in the bucket of ``now``'s second."""
        second = int(now)
        self._advance(second)
        # A clock that went backwards within the window lands in the newest bucket.
        head = self._head if self._head is not None else second
        bucket = self._buckets[head % self._size]
        failed = outcome & FAILED
        slow = (outcome & SLOW) >> 1
        bucket[0] += 1
        bucket[1] += failed
        bucket[2] += slow
        self.calls += 1
        self.failures += failed
        self.slow += slow

    def ok(self, now: float) -> None:
        """Record a success that was not slow."""
        self.add(0, now)

    def totals(self, now: float) -> tuple[int, int, int]:
        """(calls, failures, slow calls) of the last ``size`` seconds."""
        self._advance(int(now))
        return self.calls, self.failures, self.slow
