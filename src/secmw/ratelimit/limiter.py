"""The multi-tier rate limiter: every tier checked at once, all or nothing.

For one request each applicable tier contributes one check per window (and per
MCP tool for ``tool`` keys); the storage evaluates all of them and commits only
when none of the enforced ones refuses, so a request refused by one tier
consumes nothing from the others. Shadow tiers are evaluated and counted like
the others but never refuse: their violations are audited
(``excess_rate_limit_exceeded`` with ``details.shadow``) and left out of the
response headers.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from typing import Any

from secmw.audit.base import AuditEvent
from secmw.context import RequestContext
from secmw.errors import ServiceUnavailable
from secmw.ratelimit.algorithms import Limit, Outcome
from secmw.ratelimit.base import ALLOWED, RateDecision
from secmw.ratelimit.failover import Failover
from secmw.ratelimit.headers import policy_field, rate_headers
from secmw.ratelimit.memory import MemoryStore, steady_clock
from secmw.ratelimit.redis_store import RedisStore, StorageRejected, StorageUnavailable
from secmw.ratelimit.tiers import Part, Tier

QUOTA_EXCEEDED = "https://iana.org/assignments/http-problem-types#quota-exceeded"

Emit = Callable[[AuditEvent], Awaitable[None]]
Check = tuple[Limit, Hashable, int]


class TieredRateLimiter:
    """A :class:`~secmw.ratelimit.base.RateLimiter` (and message limiter) over tiers.

    ``store`` is a :class:`MemoryStore` or a :class:`RedisStore`; with Redis,
    ``failover`` decides what a failed round trip means (see
    :class:`~secmw.ratelimit.failover.Failover`). ``clock`` is used by the memory
    store; Redis uses its own ``TIME`` unless ``redis_clock`` is true (tests).
    """

    __slots__ = (
        "_emit",
        "_failover",
        "_fixed",
        "_fixed_policy",
        "_headers",
        "_message_tiers",
        "_policies",
        "_redis",
        "_request_tiers",
        "_wall",
        "clock",
        "memory",
        "needs_body",
        "redis_clock",
    )

    def __init__(
        self,
        tiers: Sequence[Tier],
        *,
        store: MemoryStore | RedisStore | None = None,
        failover: Failover | None = None,
        headers: str = "draft",
        clock: Callable[[], float] = steady_clock,
        redis_clock: bool = False,
    ) -> None:
        self.clock = clock
        self.redis_clock = redis_clock
        # X-RateLimit-Reset is an epoch second: from the wall clock as it is now, not
        # the steady clock's offset taken at start-up (NTP may have corrected it since).
        self._wall = clock is steady_clock
        self._request_tiers = tuple(tier for tier in tiers if not tier.messages)
        self._message_tiers = tuple(tier for tier in tiers if tier.messages)
        self._headers = headers
        if store is None:
            store = MemoryStore(clock=clock)
        self._redis = store if isinstance(store, RedisStore) else None
        self.memory = store if isinstance(store, MemoryStore) else None
        self._failover = failover if failover is not None else Failover()
        self._emit: Emit | None = None
        # RateLimit-Policy values by the limits they list (a handful of distinct sets).
        self._policies: dict[tuple[int, ...], bytes] = {}
        self.needs_body = any(tier.uses_tool for tier in self._request_tiers)
        # (key part, limit, cost) of every window when no request tier needs more.
        self._fixed: tuple[tuple[Part, Limit, int], ...] | None = None
        if self._request_tiers and all(
            tier.simple is not None and not tier.plans for tier in self._request_tiers
        ):
            self._fixed = tuple(
                (tier.simple, limit, tier.cost)
                for tier in self._request_tiers
                if tier.simple is not None
                for limit in tier.limits
            )
        # The RateLimit-Policy value of the fixed checks, when they have no shadow
        # window and headers are on (the fast path's precondition).
        self._fixed_policy: bytes | None = None
        if self._fixed and headers != "none" and not any(c[1].shadow for c in self._fixed):
            self._fixed_policy = policy_field([limit for _, limit, _ in self._fixed])

    def _header_time(self, now: float) -> float:
        """The epoch time for ``X-RateLimit-Reset`` (the draft fields are relative)."""
        if not self._wall or self._headers == "draft":
            return now
        return time.time()

    def bind_emitter(self, emit: Emit) -> None:
        """Give the limiter the pipeline's audit ``emit`` (for shadow and storage events)."""
        self._emit = emit
        self._failover.emit = emit

    @property
    def failover(self) -> Failover:
        """The storage failure state and policy."""
        return self._failover

    async def hit(self, ctx: RequestContext) -> RateDecision:
        """Count the request against every request tier that applies to it."""
        fixed = self._fixed
        if fixed is None:
            return await self._hit(ctx, self._request_tiers, message=False)
        # Every request tier has one key part, one cost and one rate: no lookups.
        checks: list[Check] = [(limit, (part(ctx),), cost) for part, limit, cost in fixed]
        memory, policy = self.memory, self._fixed_policy
        if memory is None or policy is None:
            return await self._count(ctx, checks, message=False)
        # In memory, no shadow tier, headers on: the common case, inline. When every
        # window admits, only the most restrictive one is needed for the headers.
        now = self.clock()
        outcomes = memory.apply(checks, now)
        worst = -1
        remaining, reset = 0, 0.0
        for index, outcome in enumerate(outcomes):
            if not outcome[0]:
                return self._decide(checks, outcomes, now)[0]  # refused: no shadow tier here
            if (
                worst < 0
                or outcome[3] < remaining
                or (outcome[3] == remaining and outcome[4] > reset)
            ):
                worst, remaining, reset = index, outcome[3], outcome[4]
        if worst < 0:
            return ALLOWED
        headers = rate_headers(
            self._headers, policy, (fixed[worst][1], remaining, reset), self._header_time(now)
        )
        return RateDecision(True, None, headers)

    async def hit_message(self, ctx: RequestContext, message: Mapping[str, Any]) -> RateDecision:
        """Count one client message of an open websocket against the message tiers."""
        if not self._message_tiers:
            return ALLOWED
        return await self._hit(ctx, self._message_tiers, message=True)

    async def _hit(
        self, ctx: RequestContext, tiers: Sequence[Tier], *, message: bool
    ) -> RateDecision:
        checks: list[Check] = []
        append = checks.append
        for tier in tiers:
            keyed = tier.keys(ctx)
            if not keyed:
                continue
            limits = tier.limits_for(ctx) if tier.plans else tier.limits
            for key, cost in keyed:
                for limit in limits:
                    append((limit, key, cost))
        if not checks:
            return ALLOWED
        return await self._count(ctx, checks, message=message)

    async def _count(
        self, ctx: RequestContext, checks: list[Check], *, message: bool
    ) -> RateDecision:
        """Evaluate and commit ``checks`` in the store, then decide."""
        now = self.clock()
        if self.memory is not None:  # no storage to fail
            outcomes = self.memory.apply(checks, now)
        else:
            found = await self._evaluate(ctx, checks, now, message=message)
            if found is None:
                return ALLOWED
            outcomes = found
        decision, shadowed = self._decide(checks, outcomes, now)
        if shadowed:
            await self._shadow_event(ctx, shadowed)
        return decision

    async def _evaluate(
        self, ctx: RequestContext, checks: list[Check], now: float, *, message: bool
    ) -> list[Outcome] | None:
        """Run the checks on Redis; ``None`` means admit (fail-open while down)."""
        assert self._redis is not None
        failover = self._failover
        refused: StorageRejected | None = None
        if failover.should_try(now):
            redis_checks = [(limit, _redis_key(key), cost) for limit, key, cost in checks]
            try:
                outcomes = await self._redis.apply(redis_checks, now if self.redis_clock else None)
            except StorageRejected as exc:
                # Redis is up; only this request's keys (or its turn) failed: no
                # failover for everyone, but this request gets the on_failure answer.
                refused = exc
            except StorageUnavailable:
                await failover.failed(ctx, now)
            else:
                if failover.down:
                    await failover.recovered(ctx)
                return outcomes
        failover.degraded_requests += 1
        if failover.mode == "local_fallback":
            return failover.local(checks, now)
        if failover.mode != "fail_open" and all(check[0].shadow for check in checks):
            # Only shadow tiers count this request, and they never refuse: without
            # storage they cannot count it either (the outage itself is audited).
            return None
        if failover.mode == "fail_open":
            if refused is not None:
                await failover.admitted_unchecked(ctx, str(refused))
            return None
        if message:
            raise ServiceUnavailable(
                "The message cannot be checked right now.",
                retry_after=1,
                reason="rate-limit storage unavailable",
                event="sys_monitor_disabled",
            )
        raise StorageUnavailable("rate-limit storage unavailable")

    def _decide(
        self, checks: list[Check], outcomes: list[Outcome], now: float
    ) -> tuple[RateDecision, list[str]]:
        """The decision and headers from the outcomes, and the shadow tiers exceeded."""
        violated: list[str] = []
        shadowed: list[str] = []
        enforced: list[int] = []  # ids of the enforced limits, the RateLimit-Policy cache key
        retry = 0.0
        refused: Limit | None = None
        own = False  # a refusing tier keyed by the caller
        worst: Limit | None = None
        worst_remaining = 0
        worst_reset = 0.0
        for index, check in enumerate(checks):
            limit = check[0]
            allowed, _state, _expires, remaining, reset, retry_after = outcomes[index]
            if limit.shadow:
                if not allowed and limit.policy not in shadowed:
                    shadowed.append(limit.policy)
                continue
            enforced.append(id(limit))
            if not allowed:
                own = own or not limit.shared
                if limit.policy not in violated:
                    violated.append(limit.policy)
                if refused is None or retry_after > retry:
                    refused, retry = limit, retry_after
            elif (
                worst is None
                or remaining < worst_remaining
                or (remaining == worst_remaining and reset > worst_reset)
            ):
                worst, worst_remaining, worst_reset = limit, remaining, reset
        headers: tuple[tuple[bytes, bytes], ...] = ()
        if refused is not None:
            worst, worst_remaining, worst_reset = refused, 0, retry
        if worst is not None and self._headers != "none":
            cache_key = tuple(enforced)
            policy = self._policies.get(cache_key)
            if policy is None:
                listed = [check[0] for check in checks if not check[0].shadow]
                policy = self._policies[cache_key] = policy_field(listed)
            headers = rate_headers(
                self._headers, policy, (worst, worst_remaining, worst_reset), self._header_time(now)
            )
        if refused is None:
            return (RateDecision(True, None, headers) if headers else ALLOWED), shadowed
        refusal = RateDecision(
            allowed=False,
            retry_after=retry,
            headers=headers,
            policies=tuple(violated),
            reason="rate limit exceeded: " + ", ".join(violated),
            problem_type=QUOTA_EXCEEDED,
            shared=not own,
        )
        return refusal, shadowed

    async def _shadow_event(self, ctx: RequestContext, policies: list[str]) -> None:
        if self._emit is None:
            return
        principal = ctx.principal
        await self._emit(
            AuditEvent(
                name="excess_rate_limit_exceeded",
                outcome="success",
                severity="warning",
                request_id=ctx.request_id,
                transport=ctx.transport,
                method=ctx.method,
                path=ctx.path,
                client=ctx.client,
                subject=principal.subject or None,
                tenant=principal.tenant,
                reason="shadow tier exceeded (not enforced): " + ", ".join(policies),
                details={"shadow": True, "policies": policies},
            )
        )

    async def aclose(self) -> None:
        """Close storage connections."""
        if self._redis is not None:
            await self._redis.aclose()


def _redis_key(key: Hashable) -> str:
    """A tuple key as one Redis key string; ``%`` and ``|`` are escaped, so parts never merge."""
    parts = key if isinstance(key, tuple) else (key,)
    return "|".join(str(part).replace("%", "%25").replace("|", "%7C") for part in parts)
