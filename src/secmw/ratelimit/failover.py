"""What the Redis-backed limiter does while Redis does not answer.

Modes (``storage.on_failure``):

* ``fail_closed`` (default): every checked request gets 503 with
  ``Retry-After`` (websocket messages: close 1013);
* ``fail_open``: requests pass unlimited;
* ``local_fallback``: each process counts on its own, in memory, with every
  limit scaled by ``fallback_fraction`` (say 1/N for N processes) and at least 1.

The first failure is audited as ``sys_monitor_disabled``; while down, Redis is
tried again at most every ``retry_interval`` seconds (the requests in between do
not wait for a timeout); the first answer after that is audited as
``sys_monitor_enabled`` with how many requests were decided without Redis.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import TYPE_CHECKING

from secmw.audit.base import AuditEvent
from secmw.ratelimit.algorithms import Limit, Outcome
from secmw.ratelimit.memory import MemoryStore, steady_clock

if TYPE_CHECKING:
    from secmw.context import RequestContext

FAILURE_MODES = ("fail_closed", "fail_open", "local_fallback")


class Failover:
    """The storage's health and the configured answer when it is down."""

    __slots__ = (
        "_next_probe",
        "_scaled",
        "degraded_requests",
        "down",
        "emit",
        "fraction",
        "local_store",
        "mode",
        "retry_interval",
    )

    def __init__(
        self,
        mode: str = "fail_closed",
        *,
        fraction: float = 0.25,
        retry_interval: float = 0.5,
        max_keys: int = 1_000_000,
        clock: Callable[[], float] = steady_clock,
    ) -> None:
        if mode not in FAILURE_MODES:
            raise ValueError(f"unknown failure mode {mode!r}")
        self.mode = mode
        self.fraction = fraction
        self.retry_interval = retry_interval
        self.local_store = MemoryStore(max_keys=max_keys, clock=clock)
        self.emit: Callable[[AuditEvent], Awaitable[None]] | None = None
        self.down = False
        self.degraded_requests = 0
        self._next_probe = 0.0
        self._scaled: dict[Limit, Limit] = {}

    def should_try(self, now: float) -> bool:
        """True when Redis should be asked (it is up, or a retry is due)."""
        if not self.down:
            return True
        if now >= self._next_probe:
            self._next_probe = now + self.retry_interval
            return True
        return False

    async def failed(self, ctx: RequestContext, now: float) -> None:
        """Note a failed round trip; audit the transition from up to down once."""
        self._next_probe = now + self.retry_interval
        if self.down:
            return
        self.down = True
        self.degraded_requests = 0
        self.local_store.clear()
        await self._audit(
            ctx,
            "sys_monitor_disabled",
            outcome="failure",
            severity="error" if self.mode == "fail_closed" else "warning",
            reason=f"rate-limit storage unavailable; on_failure={self.mode}",
            details={"component": "ratelimit", "on_failure": self.mode},
        )

    async def recovered(self, ctx: RequestContext) -> None:
        """Note a successful round trip after a failure; audit the recovery once."""
        if not self.down:
            return
        self.down = False
        await self._audit(
            ctx,
            "sys_monitor_enabled",
            outcome="success",
            severity="info",
            reason="rate-limit storage answers again",
            details={
                "component": "ratelimit",
                "on_failure": self.mode,
                "decided_without_storage": self.degraded_requests,
            },
        )

    async def admitted_unchecked(self, ctx: RequestContext, why: str) -> None:
        """Audit one request let through uncounted while Redis is up (``fail_open``)."""
        await self._audit(
            ctx,
            "sys_monitor_disabled",
            outcome="failure",
            severity="warning",
            reason=f"{why}; on_failure=fail_open: request admitted uncounted",
            details={"component": "ratelimit", "on_failure": self.mode, "scope": "request"},
        )

    def local(self, checks: Sequence[tuple[Limit, Hashable, int]], now: float) -> list[Outcome]:
        """Count in this process against the scaled-down limits."""
        scaled = [(self._scale(limit), key, cost) for limit, key, cost in checks]
        return self.local_store.apply(scaled, now)

    def _scale(self, limit: Limit) -> Limit:
        found = self._scaled.get(limit)
        if found is None:
            amount = max(1, math.floor(limit.amount * self.fraction))
            burst = max(1, math.floor(limit.burst * self.fraction))
            found = dataclasses.replace(
                limit,
                amount=amount,
                burst=burst,
                descriptor=f'"{limit.policy}";q={amount};w={math.ceil(limit.window)}',
            )
            self._scaled[limit] = found
        return found

    async def _audit(
        self,
        ctx: RequestContext,
        name: str,
        *,
        outcome: str,
        severity: str,
        reason: str,
        details: dict[str, object],
    ) -> None:
        if self.emit is None:
            return
        await self.emit(
            AuditEvent(
                name=name,
                outcome=outcome,
                severity=severity,
                request_id=ctx.request_id,
                reason=reason,
                details=details,
            )
        )
