"""Two instances sharing anomaly state through a real redis-server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import random
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest

from secmw import SecurityMiddleware
from secmw.anomaly import (
    AnomalyMonitor,
    AuthFailureBurst,
    RepeatedDenials,
    SharedState,
    TokenReuse,
    pipeline_hooks,
)
from secmw.anomaly.config import AnomalyConfig
from secmw.auth.jwt import JWTAuthenticator
from secmw.config import load_config
from secmw.metrics.config import MetricsConfig
from secmw.pipeline import Pipeline
from secmw.testing import AuditCapture, TokenIssuer
from tests.anomaly_support import MONDAY_10H, FakeClock, context, event, principal
from tests.ratelimit_support import RedisServer, redis_server_fixture
from tests.support import EchoApp, call, http_scope

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    yield from redis_server_fixture()


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A server of this test alone (it gets killed and restarted)."""
    yield from redis_server_fixture()


def instance(
    issuer: TokenIssuer, clock: FakeClock, url: str, prefix: str, **anomaly: Any
) -> tuple[SecurityMiddleware, AuditCapture]:
    """One app instance (its own pipeline, monitor and audit) on the shared Redis."""
    audit = AuditCapture()
    config = load_config({"auth": {"jwt": issuer.jwt_config()}})
    assert config.auth.jwt is not None
    section = {
        "enabled": True,
        "alerts": {"structlog": False},
        "storage": {"url": url, "prefix": prefix, "retry_interval": 1.0},
        **anomaly,
    }
    hooks = pipeline_hooks(
        AnomalyConfig.model_validate(section), MetricsConfig(), audit, clock=clock
    )
    pipeline = Pipeline(authenticator=JWTAuthenticator.from_config(config.auth.jwt), **hooks)
    return SecurityMiddleware(EchoApp(), pipeline=pipeline), audit


def get(token: str | None, client: str) -> dict[str, object]:
    headers = [("authorization", f"Bearer {token}")] if token else []
    return http_scope("/api/items", headers=headers, client=(client, 40000))


async def test_failed_logins_spread_over_two_instances_block_the_address_on_both(
    redis_server: RedisServer, anyio_backend: str
) -> None:
    issuer, forger = TokenIssuer(), TokenIssuer()
    clock = FakeClock(MONDAY_10H)
    prefix = f"brute-{anyio_backend}"
    first, first_audit = instance(issuer, clock, redis_server.url, prefix)
    second, second_audit = instance(issuer, clock, redis_server.url, prefix)
    good = issuer.mint("alice", expires_in=7200)
    attacker, bystander = "203.0.113.66", "198.51.100.20"
    try:
        for attempt in range(19):
            clock.advance(1)
            app = first if attempt % 2 else second
            bad = forger.mint(f"guess-{attempt}", expires_in=7200)
            assert (await call(app, get(bad, attacker))).status == 401
        # 19 failures in all, at most 10 on either instance: both still admit
        assert (await call(first, get(good, attacker))).status == 200
        assert (await call(second, get(good, attacker))).status == 200
        assert first_audit.named("authn_brute_force") == []
        clock.advance(1)
        assert (await call(first, get("not.a.jwt", attacker))).status == 401  # the 20th
        assert first_audit.names()[-2:] == ["authn_token_invalid", "authn_brute_force"]
        detection = first_audit.events[-1]
        assert detection.details["evidence"]["count"] == 20
        assert detection.client == attacker and detection.details["cool_down_s"] == 900

        for app, audit in ((first, first_audit), (second, second_audit)):
            blocked = await call(app, get(good, attacker))
            assert blocked.status == 429
            assert blocked.header("retry-after") == "900"
            assert blocked.json()["type"].endswith("#abnormal-usage-detected")
            assert audit.last.name == "authn_brute_force" and audit.last.status == 429
            assert (await call(app, get(good, bystander))).status == 200  # others pass
        # The block lives in Redis with the cool-down as its expiry, not forever.
        ttl = int(redis_server.command("PTTL", f"{{{prefix}}}:b:client:{attacker}"))
        assert 0 < ttl <= 900_000
        clock.advance(900)
        # Each instance keeps what it read until the block ends; Redis expires it
        # on its own clock, so after the cool-down it is gone from both.
        redis_server.command("DEL", f"{{{prefix}}}:b:client:{attacker}")
        assert (await call(first, get(good, attacker))).status == 200
        assert (await call(second, get(good, attacker))).status == 200
    finally:
        await first.pipeline.aclose()
        await second.pipeline.aclose()


async def test_token_reuse_from_addresses_seen_by_different_instances_fires(
    redis_server: RedisServer, anyio_backend: str
) -> None:
    issuer = TokenIssuer()
    clock = FakeClock(MONDAY_10H)
    prefix = f"reuse-{anyio_backend}"
    settings = {"token_reuse": {"threshold": 4, "window": 600, "response": "block"}}
    first, first_audit = instance(issuer, clock, redis_server.url, prefix, **settings)
    second, second_audit = instance(issuer, clock, redis_server.url, prefix, **settings)
    token = issuer.mint("carol", expires_in=7200)
    try:
        statuses = []
        for index, app in enumerate((first, second, first, second)):
            clock.advance(5)
            statuses.append((await call(app, get(token, f"192.0.2.{index + 1}"))).status)
        # The fourth address, seen by the second instance, completes the set.
        assert statuses == [200, 200, 200, 429]
        detections = [e for e in second_audit.named("authn_token_reuse") if "evidence" in e.details]
        assert len(detections) == 1 and detections[0].details["evidence"]["addresses"] == 4
        assert first_audit.named("authn_token_reuse") == []
        # The credential is blocked on the other instance too, from any address.
        assert (await call(first, get(token, "192.0.2.1"))).status == 429
        assert first_audit.last.name == "authn_token_reuse"
        # No credential in any Redis key or value: credential ids are hashed.
        keys = [key.decode() for key in redis_server.command("KEYS", f"{{{prefix}}}:*")]
        assert keys and all(token not in key for key in keys)
        credential = detections[0].details["key"]
        assert all(credential not in key for key in keys)
        digest = hashlib.sha256(credential.encode()).hexdigest()[:32]
        assert f"{{{prefix}}}:b:credential:h:{digest}" in keys
        for key in keys:
            assert 0 < int(redis_server.command("PTTL", key)) <= 900_000
    finally:
        await first.pipeline.aclose()
        await second.pipeline.aclose()


async def test_redis_killed_mid_run_falls_back_and_recovers(
    own_redis: RedisServer, anyio_backend: str
) -> None:
    issuer, forger = TokenIssuer(), TokenIssuer()
    clock = FakeClock(MONDAY_10H)
    settings = {"auth_failures_by_client": {"threshold": 5, "window": 300, "cool_down": 60}}
    first, first_audit = instance(issuer, clock, own_redis.url, "down", **settings)
    second, _ = instance(issuer, clock, own_redis.url, "down", **settings)
    good = issuer.mint("dave", expires_in=7200)
    try:
        assert (await call(first, get(good, "198.51.100.7"))).status == 200
        own_redis.stop()
        # Local fallback: the first instance counts on its own and still blocks.
        for _ in range(5):
            clock.advance(1)
            assert (await call(first, get(forger.mint("x"), "203.0.113.9"))).status == 401
        assert (await call(first, get(good, "203.0.113.9"))).status == 429
        assert (await call(first, get(good, "198.51.100.7"))).status == 200
        down = first_audit.named("sys_monitor_disabled")
        assert len(down) == 1 and down[0].details["on_failure"] == "local_fallback"
        assert down[0].severity == "warning"
        # What is lost: the second instance never heard of that block.
        assert (await call(second, get(good, "203.0.113.9"))).status == 200

        own_redis.start()
        clock.advance(2)  # past retry_interval: Redis is asked again
        assert (await call(first, get(good, "198.51.100.7"))).status == 200
        up = first_audit.named("sys_monitor_enabled")
        assert len(up) == 1 and up[0].details["decided_without_storage"] > 0
        # The block decided while Redis was down was sent on recovery: shared now.
        clock.advance(2)
        assert (await call(second, get(good, "203.0.113.9"))).status == 429
        # And counting is shared again.
        for attempt in range(5):
            clock.advance(1)
            app = first if attempt % 2 else second
            assert (await call(app, get(forger.mint("y"), "203.0.113.10"))).status == 401
        assert (await call(first, get(good, "203.0.113.10"))).status == 429
        assert (await call(second, get(good, "203.0.113.10"))).status == 429
    finally:
        await first.pipeline.aclose()
        await second.pipeline.aclose()


async def test_fail_closed_answers_503_while_redis_is_down(
    own_redis: RedisServer, anyio_backend: str
) -> None:
    issuer = TokenIssuer()
    clock = FakeClock(MONDAY_10H)
    app, audit = instance(
        issuer,
        clock,
        own_redis.url,
        "closed",
        storage={"url": own_redis.url, "prefix": "closed", "on_failure": "fail_closed"},
    )
    good = issuer.mint("erin", expires_in=7200)
    try:
        assert (await call(app, get(good, "198.51.100.8"))).status == 200
        own_redis.stop()
        refused = await call(app, get(good, "198.51.100.8"))
        assert refused.status == 503
        assert "sys_monitor_disabled" in audit.names()
        own_redis.start()
        clock.advance(1)
        assert (await call(app, get(good, "198.51.100.8"))).status == 200
        assert audit.named("sys_monitor_enabled")
    finally:
        await app.pipeline.aclose()


def credential_part(audit: AuditCapture) -> str:
    """The hashed credential of the last token-reuse detection, as it appears in keys."""
    found = [e for e in audit.named("authn_token_reuse") if "evidence" in e.details]
    if not found:
        return ""
    return "h:" + hashlib.sha256(found[-1].details["key"].encode()).hexdigest()[:32]


def evalsha_calls(server: RedisServer) -> int:
    stats = server.command("INFO", "commandstats").get("cmdstat_evalsha", {"calls": 0})
    return int(stats["calls"])


@pytest.mark.parametrize(
    ("settings", "authenticated", "anonymous"),
    [
        pytest.param({}, 2, 1, id="defaults"),
        pytest.param({"token_reuse": {"enabled": False}}, 1, 1, id="no-token-reuse"),
        pytest.param(
            {"auth_failures_by_client": {"response": "alert"}, "token_reuse": {"enabled": False}},
            0,
            0,
            id="nothing-shared-before-the-app",
        ),
    ],
)
async def test_round_trips_per_request(
    redis_server: RedisServer,
    anyio_backend: str,
    settings: dict[str, Any],
    authenticated: int,
    anonymous: int,
) -> None:
    issuer = TokenIssuer()
    clock = FakeClock(MONDAY_10H)
    prefix = f"rt-{anyio_backend}-{authenticated}-{anonymous}"
    app, _ = instance(issuer, clock, redis_server.url, prefix, **settings)
    token = issuer.mint("frank", expires_in=7200)
    try:
        assert (await call(app, get(token, "192.0.2.50"))).status == 200  # loads the script
        redis_server.command("CONFIG", "RESETSTAT")
        for _ in range(10):
            assert (await call(app, get(token, "192.0.2.50"))).status == 200
        assert evalsha_calls(redis_server) == 10 * authenticated
        redis_server.command("CONFIG", "RESETSTAT")
        for _ in range(10):  # no credential: the app answers, nothing to count
            assert (await call(app, get(None, "192.0.2.51"))).status == 401
        assert evalsha_calls(redis_server) == 10 * anonymous
    finally:
        await app.pipeline.aclose()


async def test_a_step_up_set_on_one_instance_is_demanded_on_the_other(
    redis_server: RedisServer, anyio_backend: str
) -> None:
    issuer = TokenIssuer()
    clock = FakeClock(MONDAY_10H)
    prefix = f"step-{anyio_backend}"
    settings = {"token_reuse": {"threshold": 2, "response": "step_up", "cool_down": 600}}
    first, first_audit = instance(issuer, clock, redis_server.url, prefix, **settings)
    second, second_audit = instance(issuer, clock, redis_server.url, prefix, **settings)
    token = issuer.mint("grace", expires_in=7200)
    try:
        assert (await call(first, get(token, "192.0.2.60"))).status == 200
        clock.advance(1)
        challenged = await call(first, get(token, "192.0.2.61"))  # the second address
        assert challenged.status == 401
        assert "insufficient_user_authentication" in (challenged.header("www-authenticate") or "")
        clock.advance(1)
        # From the address that fired (the set now holds only it): nothing new to count.
        elsewhere = await call(second, get(token, "192.0.2.61"))
        assert elsewhere.status == 401
        assert "insufficient_user_authentication" in (elsewhere.header("www-authenticate") or "")
        assert second_audit.last.name == "authn_token_reuse"
        assert credential_part(second_audit) == ""  # no detection there: the step-up is shared
        # The step-up is keyed by the credential: a new token is not challenged.
        fresh = issuer.mint("grace", expires_in=7200)
        assert (await call(second, get(fresh, "192.0.2.60"))).status == 200
        clock.advance(600)  # the cool-down is over on both
        redis_server.command("DEL", f"{{{prefix}}}:s:credential:" + credential_part(first_audit))
        assert (await call(second, get(token, "192.0.2.61"))).status == 200
    finally:
        await first.pipeline.aclose()
        await second.pipeline.aclose()


@pytest.mark.parametrize("seed", [1, 2])
async def test_redis_counting_matches_the_memory_detectors(
    redis_server: RedisServer, anyio_backend: str, seed: int
) -> None:
    """The same random traffic through a memory monitor and a Redis one fires alike."""
    rng = random.Random(f"{seed}-{anyio_backend}")
    clock = FakeClock(MONDAY_10H)

    def detectors() -> list[Any]:
        return [
            AuthFailureBurst(key_kind="client", threshold=3, window=40),
            RepeatedDenials(threshold=3, window=20),
            TokenReuse(threshold=3, window=40),
        ]

    fired: dict[str, list[tuple[str, str, float]]] = {"memory": [], "redis": []}
    memory = AnomalyMonitor(
        detectors(),
        clock=clock,
        on_anomaly=lambda a: fired["memory"].append((a.detector, a.key, a.time)),
    )
    shared = SharedState(redis_server.url, prefix=f"same-{seed}-{anyio_backend}")
    remote = AnomalyMonitor(
        detectors(),
        clock=clock,
        shared=shared,
        on_anomaly=lambda a: fired["redis"].append((a.detector, a.key, a.time)),
    )
    try:
        for _ in range(300):
            clock.advance(rng.choice([0.0, 0.5, 1.0, 3.0, 9.0, 25.0]))
            client = rng.choice(["198.51.100.1", "198.51.100.2", "192.0.2.9"])
            who = principal(rng.choice(["ann", "ben"]), credential=rng.choice(["jti:1", "jti:2"]))
            kind = rng.choice(["authn_token_invalid", "authz_fail", "authz_allow"])
            for monitor in (memory, remote):
                ctx = context(client=client, who=who)
                await monitor.after_authentication(ctx)
                outcome = event(kind, client=client, subject=who.subject)
                monitor.observe(ctx, outcome)
                await monitor.flush(None)
        assert fired["memory"] == fired["redis"]
        assert {name for name, _, _ in fired["redis"]} == {
            "auth_failures_by_client",
            "repeated_denials",
            "token_reuse",
        }
    finally:
        await remote.aclose()


async def test_a_hung_redis_costs_the_timeout_then_requests_pass_without_waiting(
    own_redis: RedisServer, anyio_backend: str
) -> None:
    issuer = TokenIssuer()
    clock = FakeClock(MONDAY_10H)
    storage = {"url": own_redis.url, "prefix": "hung", "timeout": 0.2, "retry_interval": 5}
    app, audit = instance(issuer, clock, own_redis.url, "hung", storage=storage)
    good = issuer.mint("ivan", expires_in=7200)
    assert own_redis.process is not None
    try:
        assert (await call(app, get(good, "198.51.100.30"))).status == 200
        own_redis.process.send_signal(signal.SIGSTOP)  # accepts nothing, answers nothing
        started = time.monotonic()
        assert (await call(app, get(good, "198.51.100.30"))).status == 200
        first = time.monotonic() - started
        started = time.monotonic()
        for _ in range(5):  # within retry_interval: Redis is not asked, nobody waits
            assert (await call(app, get(good, "198.51.100.30"))).status == 200
        rest = time.monotonic() - started
        assert first < 2.0 and rest < 0.5, (first, rest)
        assert len(audit.named("sys_monitor_disabled")) == 1
        own_redis.process.send_signal(signal.SIGCONT)
        clock.advance(6)
        assert (await call(app, get(good, "198.51.100.30"))).status == 200
        assert len(audit.named("sys_monitor_enabled")) == 1
    finally:
        if own_redis.process is not None:
            own_redis.process.send_signal(signal.SIGCONT)
        await app.pipeline.aclose()


@pytest.mark.parametrize("junk", [b"not json", b'{"detector":"x"}', b"[1,2]"])
async def test_an_unreadable_block_record_still_blocks_and_never_crashes(
    redis_server: RedisServer, anyio_backend: str, junk: bytes
) -> None:
    issuer, clock = TokenIssuer(), FakeClock()
    prefix = f"junk-{anyio_backend}-{len(junk)}"
    app, audit = instance(issuer, clock, redis_server.url, prefix)
    victim = "198.51.100.23"
    try:
        assert (await call(app, get(issuer.mint("alice"), victim))).status == 200
        redis_server.command("SET", f"{{{prefix}}}:b:client:{victim}", junk, "PX", "60000")
        sent = await call(app, get(issuer.mint("alice"), victim))
        assert sent.status == 429  # a block in force is enforced, readable or not
        assert not audit.named("sys_error")
    finally:
        await app.pipeline.aclose()


@pytest.mark.parametrize(
    ("subject", "credential"),
    [
        pytest.param("u" * 120 + "\ud800", "jti:1", id="long-subject-surrogate-at-end"),
        pytest.param("\ud800" + "u" * 120, "jti:1", id="long-subject-surrogate-in-head"),
        pytest.param("u\ud800", "jti:1", id="short-subject-surrogate"),
        pytest.param("v" * 5000, "jti:1", id="very-long-subject"),
        pytest.param("alice", "jti:\ud800", id="credential-surrogate"),
    ],
)
async def test_a_subject_or_credential_with_a_lone_surrogate_is_counted_and_blocked_everywhere(
    redis_server: RedisServer, anyio_backend: str, subject: str, credential: str
) -> None:
    from secmw.errors import RateLimited

    clock = FakeClock(MONDAY_10H)
    tag = hashlib.sha256(repr((subject, credential)).encode()).hexdigest()[:8]
    prefix = f"surrogate-{anyio_backend}-{tag}"

    def monitor() -> AnomalyMonitor:
        detectors = [
            RepeatedDenials(threshold=3, response="block"),
            TokenReuse(threshold=3, response="block"),
        ]
        return AnomalyMonitor(
            detectors, clock=clock, shared=SharedState(redis_server.url, prefix=prefix)
        )

    first, second = monitor(), monitor()
    who = principal(subject, credential=credential)
    bystander = principal("bob", credential="jti:bob")
    try:
        for _ in range(3):
            await first.after_authentication(context(who=who))  # a claim with \ud800 in it
            first.observe(context(who=who), event("authz_fail", subject=subject, status=403))
            first.observe(context(who=bystander), event("authz_fail", subject="bob", status=403))
            await first.flush(None)  # one round trip for both subjects' counts
        with pytest.raises(RateLimited):
            await second.after_authentication(context(who=who, client="192.0.2.44"))
        with pytest.raises(RateLimited):  # the other subject's counts were not lost
            await second.after_authentication(context(who=bystander, client="192.0.2.45"))
    finally:
        await first.aclose()
        await second.aclose()
