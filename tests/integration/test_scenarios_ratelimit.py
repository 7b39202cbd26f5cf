"""Scenarios, full chain: rate-limit tiers by plan, a global limit, limits shared through Redis.

The Redis scenarios start their own ``redis-server`` on 127.0.0.1 (see
``tests/ratelimit_support.py``): missing in CI is a failure, never a skip.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import anyio
import pytest

from secmw.testing import InMemoryJWKS, TokenIssuer
from tests.ratelimit_support import RedisServer, redis_server_fixture
from tests.scenario_support import AUDIENCE, ISSUER, Service, assert_no_credentials

pytestmark = pytest.mark.anyio

PLANS = [
    {"name": "user", "key": "principal", "rate": "3/minute", "plans": {"paid": "6/minute"}},
    {"name": "all", "key": "global", "rate": "1000/minute"},
]


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    yield from redis_server_fixture()


@pytest.fixture
def signer() -> TokenIssuer:
    return TokenIssuer(issuer=ISSUER, audience=AUDIENCE)


def service(signer: TokenIssuer, tiers: list[dict[str, Any]], **options: Any) -> Service:
    return Service(signer, InMemoryJWKS(signer), tiers=tiers, **options)


async def burst(svc: Service, token: str, count: int) -> list[int]:
    return [(await svc.request("/api/me", token=token)).status for _ in range(count)]


@pytest.mark.parametrize(
    ("plan", "quota"),
    [pytest.param(None, 3, id="free"), pytest.param("paid", 6, id="paid")],
)
async def test_plans_get_their_own_quota(signer: TokenIssuer, plan: str | None, quota: int) -> None:
    svc = service(signer, PLANS)
    token = signer.mint("henry", tier=plan)
    answers = [await svc.request("/api/me", token=token) for _ in range(quota + 1)]

    assert [sent.status for sent in answers] == [200] * quota + [429]
    first, refused = answers[0], answers[-1]
    assert f'"user";q={quota};w=60' in (first.header("ratelimit-policy") or "")
    assert first.header("ratelimit") is not None
    assert int(refused.header("retry-after") or 0) >= 1
    assert refused.json()["violated-policies"] == ["user"]
    event = svc.event(refused)
    assert (event.name, event.status, event.subject, event.reason) == (
        "excess_rate_limit_exceeded",
        429,
        "henry",
        "rate limit exceeded: user",
    )
    assert len(svc.inner.calls) == quota
    assert_no_credentials(svc.audit.lines(), token)


async def test_free_and_paid_users_are_counted_apart(signer: TokenIssuer) -> None:
    svc = service(signer, PLANS)
    free, paid = signer.mint("ivy"), signer.mint("jack", tier="paid")
    assert await burst(svc, free, 4) == [200, 200, 200, 429]
    assert await burst(svc, paid, 7) == [200] * 6 + [429]  # the free user's refusals cost nothing


async def test_global_limit_binds_everyone_together(signer: TokenIssuer) -> None:
    tiers = [
        {"name": "user", "key": "principal", "rate": "100/minute"},
        {"name": "all", "key": "global", "rate": "4/minute"},
    ]
    svc = service(signer, tiers)
    statuses = [
        (await svc.request("/api/me", token=signer.mint(f"user-{n}"))).status for n in range(5)
    ]
    assert statuses == [200, 200, 200, 200, 429]
    refused = svc.audit.named("excess_rate_limit_exceeded")
    assert [(e.subject, e.reason) for e in refused] == [("user-4", "rate limit exceeded: all")]


async def test_quota_comes_back_after_the_window(signer: TokenIssuer) -> None:
    svc = service(signer, [{"name": "burst", "key": "principal", "rate": "2/second"}])
    token = signer.mint("kate")
    assert await burst(svc, token, 3) == [200, 200, 429]
    refused = svc.audit.named("excess_rate_limit_exceeded")[-1]
    assert refused.subject == "kate"
    await anyio.sleep(1.05)  # Retry-After was 1 s: the window started at the first request
    assert await burst(svc, token, 1) == [200]
    assert svc.audit.names()[-1] == "authz_allow"


@pytest.mark.slow
async def test_two_instances_share_limits_through_redis(
    signer: TokenIssuer, redis_server: RedisServer
) -> None:
    storage = {"url": redis_server.url, "prefix": f"scn-{secrets.token_hex(4)}"}
    tiers = [
        {"name": "user", "key": "principal", "rate": "4/minute"},
        {"name": "all", "key": "global", "rate": "6/minute"},
    ]
    jwks = InMemoryJWKS(signer)
    first = Service(signer, jwks, tiers=tiers, storage=storage)
    second = Service(signer, jwks, tiers=tiers, storage=storage)
    try:
        token = signer.mint("liam")
        statuses = []
        for index in range(6):  # alternate between the instances
            svc = first if index % 2 == 0 else second
            statuses.append((await svc.request("/api/me", token=token)).status)
        assert statuses == [200, 200, 200, 200, 429, 429]
        # Another user finds the global quota nearly spent by liam on both instances.
        other = signer.mint("mia")
        assert [(await svc.request("/api/me", token=other)).status for svc in (second, first)] == [
            200,
            200,
        ]
        assert (await first.request("/api/me", token=other)).status == 429
        for svc in (first, second):
            assert "sys_monitor_disabled" not in svc.audit.names()  # Redis answered throughout
        reasons = [
            (e.subject, e.reason)
            for svc in (first, second)
            for e in svc.audit.named("excess_rate_limit_exceeded")
        ]
        assert sorted(reasons) == [
            ("liam", "rate limit exceeded: user"),
            ("liam", "rate limit exceeded: user"),
            ("mia", "rate limit exceeded: all"),
        ]
    finally:
        await first.app.pipeline.aclose()
        await second.app.pipeline.aclose()
