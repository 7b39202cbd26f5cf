"""The memory store stays bounded and forgets expired keys."""

from __future__ import annotations

import time
from typing import Any

from secmw.ratelimit import MemoryStore
from secmw.ratelimit.algorithms import ALGORITHMS, Limit
from tests.ratelimit_support import FakeClock


def limits() -> list[Limit]:
    return [Limit(a, f"{a}:10", a, a, 5, 10.0, 5) for a in ALGORITHMS]


def test_expired_keys_are_retired_as_new_keys_arrive() -> None:
    clock = FakeClock(0.0)
    store = MemoryStore(clock=clock)
    for index in range(500):
        store.apply([(limit, index, 1) for limit in limits()])
    assert len(store) == 2000
    clock.advance(25.0)  # past every state's expiry (sliding counters keep two windows)
    for index in range(500, 1500):
        store.apply([(limit, index, 1) for limit in limits()])
    assert len(store) == 4000  # the 2000 expired ones are gone
    assert store.evictions == 0


def test_max_keys_evicts_the_least_recently_used() -> None:
    clock = FakeClock(0.0)
    store = MemoryStore(clock=clock, max_keys=100)
    limit = Limit("t", "t:10", "t", "fixed-window", 10_000, 10.0, 10_000)
    store.apply([(limit, "hot", 1)])
    for index in range(1000):
        store.apply([(limit, index, 1)])
        if index % 50 == 0:
            store.apply([(limit, "hot", 1)])
    assert len(store) == 100
    assert store.evictions == 901  # every other key came and went
    # The key used recently survived with its count (1 + 20 hits).
    assert store.apply([(limit, "hot", 0)])[0].remaining == 10_000 - 21
    assert store.apply([(limit, 0, 0)])[0].remaining == 10_000  # evicted: starts afresh


def test_a_wall_clock_stepped_back_does_not_stretch_the_window(monkeypatch: Any) -> None:
    from secmw.ratelimit.build import build_rate_limiter
    from secmw.ratelimit.config import RateLimitConfig

    real, shift = time.time, [0.0]
    monkeypatch.setattr(time, "time", lambda: real() - shift[0])
    config = RateLimitConfig.model_validate(
        {
            "tiers": [
                {"name": a, "key": "global", "rate": "2/minute", "algorithm": a} for a in ALGORITHMS
            ]
        }
    )
    limiter = build_rate_limiter(config)
    assert limiter is not None and limiter.memory is not None
    checks = [(limit, ("*",), 1) for tier in limiter._request_tiers for limit in tier.limits]
    assert all(outcome.allowed for outcome in limiter.memory.apply(checks))
    shift[0] = 3600.0  # NTP steps the wall clock back an hour
    assert all(outcome.allowed for outcome in limiter.memory.apply(checks))
    refused = limiter.memory.apply(checks)
    assert not any(outcome.allowed for outcome in refused)
    assert all(outcome.retry_after <= 120.0 for outcome in refused)  # not an hour more


def test_the_legacy_reset_epoch_reads_the_wall_clock_as_it_is_now(monkeypatch: Any) -> None:
    import anyio

    from secmw.context import RequestContext
    from secmw.ratelimit.build import build_rate_limiter
    from secmw.ratelimit.config import RateLimitConfig
    from tests.support import http_scope

    config = RateLimitConfig.model_validate(
        {"headers": "legacy", "tiers": [{"name": "t", "key": "global", "rate": "5/minute"}]}
    )
    limiter = build_rate_limiter(config)
    assert limiter is not None
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 3600.0)  # NTP corrected the clock
    decision = anyio.run(limiter.hit, RequestContext.from_scope(http_scope("/x")))
    reset = int(dict(decision.headers)[b"x-ratelimit-reset"])
    assert abs(reset - (real() + 3600.0 + 60)) < 5
