"""Balancing, passive health from breakers and the retry backoff."""

from __future__ import annotations

import json

import httpx
import pytest

from secmw.breaker import Breaker, CircuitOpen
from secmw.proxy import RetryPolicy, Target, UpstreamPool


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def targets(count: int, clock: Clock) -> list[Target]:
    return [
        Target(
            httpx.URL(f"http://10.0.0.{n}:8000/base"),
            Breaker(f"t{n}", minimum_calls=1, window_size=1, open_duration=5, clock=clock),
        )
        for n in range(count)
    ]


def open_breaker(target: Target) -> None:
    target.breaker.record(target.breaker.acquire(), failed=True, duration=0.0)


def test_round_robin_skips_open_and_unhealthy_targets() -> None:
    clock = Clock()
    pool = UpstreamPool("u", targets(3, clock))
    assert [pool.pick().label for _ in range(3)] == [
        "http://10.0.0.0:8000",
        "http://10.0.0.1:8000",
        "http://10.0.0.2:8000",
    ]
    open_breaker(pool.targets[1])
    pool.targets[2].healthy = False
    assert {pool.pick().label for _ in range(4)} == {"http://10.0.0.0:8000"}


def test_all_open_fails_fast_with_the_shortest_wait() -> None:
    clock = Clock()
    pool = UpstreamPool("u", targets(2, clock))
    open_breaker(pool.targets[0])
    clock.now = 2.0
    open_breaker(pool.targets[1])
    with pytest.raises(CircuitOpen) as info:
        pool.pick()
    assert info.value.retry_after == pytest.approx(3.0)
    clock.now = 5.0
    assert pool.pick() is pool.targets[0]


def test_least_outstanding_and_exclusion() -> None:
    clock = Clock()
    pool = UpstreamPool("u", targets(3, clock), balance="least_outstanding")
    pool.targets[0].outstanding = 3
    pool.targets[1].outstanding = 1
    pool.targets[2].outstanding = 2
    assert pool.pick() is pool.targets[1]
    assert pool.pick(exclude=pool.targets[1]) is pool.targets[2]
    single = UpstreamPool("s", targets(1, clock))
    assert single.pick(exclude=single.targets[0]) is single.targets[0]


def test_validation() -> None:
    with pytest.raises(ValueError, match="at least one"):
        UpstreamPool("u", [])
    with pytest.raises(ValueError, match="balance"):
        UpstreamPool("u", targets(1, Clock()), balance="random")


def test_backoff_is_jittered_and_bounded() -> None:
    policy = RetryPolicy(attempts=3, backoff=0.1, max_backoff=0.3)
    for attempt in range(1, 6):
        for _ in range(50):
            assert 0 <= policy.delay(attempt) <= min(0.3, 0.1 * 2 ** (attempt - 1))


def test_a_pool_refusal_counts_as_rejected_on_each_open_breaker() -> None:
    clock = Clock()
    pool = UpstreamPool("u", targets(2, clock))
    for target in pool.targets:
        open_breaker(target)
    for _ in range(3):
        with pytest.raises(CircuitOpen):
            pool.pick()
    assert [t.breaker.snapshot().rejected for t in pool.targets] == [3, 3]


@pytest.mark.anyio
async def test_the_audited_target_never_carries_the_urls_userinfo() -> None:
    from secmw import SecurityMiddleware
    from secmw.config import build_pipeline, load_config
    from secmw.proxy import EgressGuard, ReverseProxy, Route
    from secmw.testing import AuditCapture
    from tests.support import call, http_scope

    audit = AuditCapture()
    url = httpx.URL("http://svc:s3cret@127.0.0.1:9/v1")  # port 9: refused at once
    pool = UpstreamPool("u", [Target(url, Breaker("u"))])
    proxy = ReverseProxy([Route("/", pool)], guard=EgressGuard(allow_networks=["127.0.0.0/8"]))
    pipeline = build_pipeline(load_config({"auth": {"allow_anonymous": True}}), audit=audit)
    sent = await call(SecurityMiddleware(proxy, pipeline=pipeline), http_scope("/x"))
    await proxy.aclose()
    assert sent.status == 502
    event = audit.events[-1]
    assert event.details["target"] == "http://127.0.0.1:9"
    assert "s3cret" not in json.dumps(event.to_dict())
