"""Bounded per-key state: every detector's memory has a cap and an expiry.

An attacker controls the keys (client addresses, subjects, credential ids), so
unbounded maps would be a memory-exhaustion vector. :class:`KeyedState` keeps at
most ``max_keys`` entries in least-recently-used order and drops entries idle
longer than ``ttl`` seconds (a few with each new key, all at each metrics
scrape); evicting under pressure is counted (``secmw_anomaly_evicted_keys_total``),
never silent. Keys over 100 characters are held bounded (:func:`bounded_key`).
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Hashable, Iterator
from typing import Any, Generic, TypeVar

V = TypeVar("V")


class KeyedState(Generic[V]):
    """A recency-ordered map with a size cap and an idle expiry.

    A hit only stamps the entry's last-seen time (a dict lookup and a store; no
    reordering). When the cap is reached, entries are taken from the front of
    the queue: one used since it was queued goes to the back (a second chance,
    as in the CLOCK page-replacement scheme), the first one that was not is
    evicted. That approximates least-recently-used (keys in steady use outlive a
    flood of new ones; among the others the oldest queued goes, not always the
    oldest used), and each requeue is paid for by a hit that skipped it.
    """

    __slots__ = ("data", "evicted", "max_keys", "ttl")

    def __init__(self, max_keys: int, ttl: float) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self.max_keys = max_keys
        self.ttl = ttl
        self.evicted = 0
        # key -> [last seen, value, queued at]; a list, so a hit updates in place.
        # Read-only outside this class (the monitor tests it for emptiness).
        self.data: dict[Hashable, list[Any]] = {}

    def get(self, key: Hashable, now: float) -> V | None:
        """The live value of ``key`` (refreshing its recency), or ``None``."""
        item = self.data.get(key)
        if item is None:
            return None
        if now - item[0] > self.ttl:
            del self.data[key]
            return None
        item[0] = now
        value: V = item[1]
        return value

    def peek(self, key: Hashable) -> V | None:
        """The value of ``key`` whatever its age, without touching recency."""
        item = self.data.get(key)
        return item[1] if item is not None else None

    def setdefault(self, key: Hashable, now: float, factory: Callable[[float], V]) -> V:
        """The live value of ``key`` (refreshing its recency), ``factory(now)`` when
        absent or expired. One lookup: the detectors call it on every request."""
        item = self.data.get(key)
        if item is None or now - item[0] > self.ttl:
            value = factory(now)
            self.put(key, now, value)
            return value
        item[0] = now
        found: V = item[1]
        return found

    def put(self, key: Hashable, now: float, value: V) -> None:
        """Store ``value``; the least recently used entries go when the cap is reached."""
        data = self.data
        if data.pop(key, None) is None:
            if len(data) >= self.max_keys:
                self._evict(now)
            elif data:
                self._sweep(now)
        data[key] = [now, value, now]  # (re-)put keys go to the back

    def _sweep(self, now: float) -> None:
        """Drop idle entries from the front of the queue, two steps at most.

        Each new key pays for a little expiry, so idle keys go while keys keep
        coming (and cost nothing when none come). A front entry used since it was
        queued goes to the back, as in :meth:`_evict`; one neither idle nor used
        ends the sweep (idle ones behind it wait for their turn, or the scrape).
        """
        data = self.data
        for _ in range(2):
            oldest = next(iter(data))
            item = data[oldest]
            seen = item[0]
            if now - seen > self.ttl:
                del data[oldest]
            elif seen != item[2]:
                item[2] = seen
                del data[oldest]
                data[oldest] = item
            else:
                return
            if not data:
                return

    def _evict(self, now: float) -> None:
        """Make room for one entry (the new one is not queued yet, so never the victim)."""
        data = self.data
        while len(data) >= self.max_keys:
            oldest = next(iter(data))
            item = data.pop(oldest)
            seen = item[0]
            if seen != item[2]:  # touched since queued: requeue at its last use
                item[2] = seen
                data[oldest] = item
                continue
            if now - seen <= self.ttl:
                self.evicted += 1

    def pop(self, key: Hashable) -> V | None:
        """Remove ``key`` and return its value."""
        item = self.data.pop(key, None)
        return item[1] if item is not None else None

    def expire(self, now: float) -> int:
        """Drop every entry idle longer than ``ttl``; returns how many went."""
        # A full scan: hits do not reorder, so idle entries can sit anywhere.
        data = self.data
        ttl = self.ttl
        idle = [key for key, item in data.items() if now - item[0] > ttl]
        for key in idle:
            del data[key]
        return len(idle)

    def __len__(self) -> int:
        return len(self.data)

    def __bool__(self) -> bool:
        return bool(self.data)

    def keys(self) -> Iterator[Hashable]:
        """The keys, least recently seen first (expired ones included until touched)."""
        data = self.data
        return iter(sorted(data, key=lambda key: data[key][0]))


class KeyedDetector:
    """What the monitor reads of a built-in detector's per-key state (for the metrics)."""

    __slots__ = ()

    _state: KeyedState[Any]

    def tracked_keys(self) -> int:
        """How many keys hold state."""
        return len(self._state)

    def evicted_keys(self) -> int:
        """How many live keys were dropped to stay under ``max_keys``."""
        return self._state.evicted

    def expire(self, now: float) -> int:
        """Drop every key idle past its expiry; how many went."""
        return self._state.expire(now)


class EventWindow:
    """Timestamps of the last ``threshold`` events of one key (a sliding window).

    ``add`` says whether ``threshold`` events fell within ``window`` seconds; the
    window is then cleared, so the next alert needs ``threshold`` new events.
    The times live in a ring of C doubles that grows only as events arrive, so a
    key with one failure costs a few dozen bytes, not ``threshold`` floats.
    """

    __slots__ = ("head", "threshold", "times")

    def __init__(self, threshold: int) -> None:
        self.threshold = threshold
        self.times = array("d")
        self.head = 0

    def add(self, now: float, window: float) -> bool:
        """Record one event at ``now``; true when the threshold is reached."""
        times = self.times
        if len(times) < self.threshold:
            times.append(now)
            if len(times) < self.threshold:
                return False
            oldest = times[0]
        else:
            times[self.head] = now
            self.head = (self.head + 1) % self.threshold
            oldest = times[self.head]
        if now - oldest < window:
            del times[:]
            self.head = 0
            return True
        return False

    def count(self, now: float, window: float) -> int:
        """How many recorded events are within ``window`` of ``now``."""
        return sum(1 for t in self.times if now - t < window)
