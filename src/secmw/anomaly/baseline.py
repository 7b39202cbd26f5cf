"""Request-rate spikes against each principal's own baseline (EWMA with a warm-up)."""

from __future__ import annotations

import math

from secmw.anomaly.base import Anomaly, KeyKind, Phase, Response, bounded_key
from secmw.anomaly.state import KeyedDetector, KeyedState
from secmw.audit.base import AuditEvent
from secmw.context import RequestContext


class _Rate:
    """One principal's counters: the open interval and the smoothed past."""

    __slots__ = ("age", "bucket", "count", "fired", "limit", "mean")

    def __init__(self, bucket: int, limit: int) -> None:
        self.bucket = bucket
        self.count = 0
        self.mean = 0.0
        self.age = 0
        self.fired = False
        self.limit = limit  # the open interval's threshold, worked out when it opens


class RateSpike(KeyedDetector):
    """More requests in one interval than ``factor`` times the principal's usual rate.

    Requests are counted per ``interval`` seconds; when an interval closes its
    count feeds an exponentially weighted moving average (weight ``alpha``;
    intervals without requests count as zero). Nothing fires until ``warmup``
    intervals have passed since the principal was first seen, so a new principal
    never alerts on a baseline that does not exist yet. The threshold of the
    open interval is ``max(min_requests, ceil(factor * baseline))``; it fires the
    moment the count reaches it, once per interval.
    """

    __slots__ = (
        "_state",
        "alpha",
        "cool_down",
        "factor",
        "interval",
        "min_requests",
        "name",
        "response",
        "warmup",
    )

    event = "anomaly_rate_spike"
    phase: Phase = "request"
    key_kind: KeyKind = "subject"

    def __init__(
        self,
        *,
        name: str = "rate_spike",
        interval: float = 60.0,
        factor: float = 10.0,
        min_requests: int = 100,
        alpha: float = 0.1,
        warmup: int = 30,
        idle_expiry: float = 86_400.0,
        response: Response = "alert",
        cool_down: float = 900.0,
        max_keys: int = 100_000,
    ) -> None:
        if interval <= 0 or factor <= 1 or min_requests < 1 or not 0 < alpha <= 1 or warmup < 1:
            raise ValueError(
                "interval > 0, factor > 1, min_requests >= 1, 0 < alpha <= 1, warmup >= 1"
            )
        self.name = name
        self.interval = interval
        self.factor = factor
        self.min_requests = min_requests
        self.alpha = alpha
        self.warmup = warmup
        self.response: Response = response
        self.cool_down = cool_down
        self._state: KeyedState[_Rate] = KeyedState(max_keys, idle_expiry)

    def _new_rate(self, now: float) -> _Rate:
        """The state of a principal seen for the first time (or again after its expiry)."""
        return _Rate(int(now // self.interval), self.min_requests)

    def baseline(self, subject: str) -> float | None:
        """The smoothed requests per interval of ``subject`` (``None`` if unknown)."""
        rate = self._state.peek(bounded_key(subject))
        return rate.mean if rate is not None else None

    def check(self, ctx: RequestContext, event: AuditEvent | None, now: float) -> Anomaly | None:
        """Count the request in its principal's open interval; fire on the crossing."""
        subject = ctx.principal.subject
        if not subject:
            return None
        key = bounded_key(subject)
        bucket = int(now // self.interval)
        rate = self._state.setdefault(key, now, self._new_rate)
        # A clock that stepped back (NTP, a restored VM) counts into the open
        # interval rather than rewinding the baseline.
        bucket = max(bucket, rate.bucket)
        if bucket != rate.bucket:
            gap = bucket - rate.bucket
            keep = 1.0 - self.alpha
            # Bounded exponent: after ~2,000 idle intervals the old mean is gone anyway,
            # and a huge gap must not overflow.
            rate.mean = (self.alpha * rate.count + keep * rate.mean) * keep ** min(gap - 1, 2048)
            rate.age += gap
            rate.bucket = bucket
            rate.count = 0
            rate.fired = False
            rate.limit = max(self.min_requests, math.ceil(self.factor * rate.mean))
        rate.count += 1
        if rate.count < rate.limit or rate.fired or rate.age < self.warmup:
            return None
        threshold = rate.limit
        rate.fired = True
        return Anomaly(
            detector=self.name,
            event=self.event,
            key_kind="subject",
            key=key,
            response=self.response,
            reason=f"{rate.count} requests in {self.interval:g} s against a baseline of "
            f"{rate.mean:.1f}",
            evidence={
                "count": rate.count,
                "interval_s": self.interval,
                "baseline": round(rate.mean, 3),
                "threshold": threshold,
            },
            time=now,
            request_id=ctx.request_id,
            client=ctx.client,
            subject=subject,
        )
