"""The Redis store against a real redis-server on 127.0.0.1 (started here, always stopped)."""

from __future__ import annotations

import json
import random
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from secmw import SecurityMiddleware
from secmw.ratelimit import MemoryStore, RedisStore
from secmw.ratelimit.algorithms import ALGORITHMS, Limit
from secmw.ratelimit.redis_store import parse_target
from secmw.testing import AuditCapture
from tests.ratelimit_support import (
    FakeClock,
    HeaderAuthenticator,
    RedisServer,
    redis_server_fixture,
)
from tests.support import EchoApp, Receiver, call, http_scope, ws_scope

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    yield from redis_server_fixture()


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A server of this test alone (it gets killed and restarted)."""
    yield from redis_server_fixture()


def limit(algorithm: str, amount: int, window: float, name: str) -> Limit:
    burst = 2 if algorithm == "gcra" else amount
    return Limit(name, f"{name}:{window}", name, algorithm, amount, window, burst)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
async def test_redis_script_matches_the_memory_store(
    redis_server: RedisServer, algorithm: str, anyio_backend: str
) -> None:
    rng = random.Random(f"{algorithm}-{anyio_backend}")
    clock = FakeClock(2_000_000.0)
    tight = limit(algorithm, 3, 4.0, f"tight-{algorithm}-{anyio_backend}")
    loose = limit("fixed-window", 7, 6.0, f"loose-{algorithm}-{anyio_backend}")
    store = RedisStore(redis_server.url)
    memory = MemoryStore(clock=clock)
    try:
        for step in range(80):
            clock.advance(rng.choice([0.0, 0.0, 0.125, 0.5, 1.0, 2.5, 4.0]))
            cost = rng.choice([0, 1, 1, 1, 2])
            checks = [(tight, "k", cost), (loose, "k", 1)]
            expected = memory.apply(checks, clock.now)
            got = await store.apply(checks, clock.now)
            for want, have in zip(expected, got, strict=True):
                assert have.allowed == want.allowed, step
                assert have.remaining == want.remaining, step
                assert abs(have.retry_after - want.retry_after) <= 0.001, step
                assert abs(have.reset - want.reset) <= 0.001, step  # RateLimit's t
    finally:
        await store.aclose()


def redis_app(url: str, clock: FakeClock | None = None, **storage: Any) -> tuple[Any, AuditCapture]:
    audit = AuditCapture()
    config = {
        "auth": {"allow_anonymous": True},
        "ratelimit": {
            "storage": {"url": url, **storage},
            "tiers": [
                {"name": "all", "key": "global", "rate": "1000/hour"},
                {"name": "user", "key": "principal", "rate": "4/hour"},
                {"name": "ip", "key": "ip", "rate": "100/minute", "algorithm": "gcra"},
            ],
        },
    }
    return SecurityMiddleware(
        EchoApp(), config, authenticator=HeaderAuthenticator(), audit=audit
    ), audit


def command_calls(server: RedisServer) -> dict[str, int]:
    info = server.command("INFO", "commandstats")  # redis-py parses it into a dict
    return {
        name.removeprefix("cmdstat_"): int(stats["calls"])
        for name, stats in info.items()
        if name.startswith("cmdstat_")
    }


async def test_three_tiers_cost_one_round_trip_per_request(
    redis_server: RedisServer, anyio_backend: str
) -> None:
    app, _ = redis_app(redis_server.url, prefix=f"rt-{anyio_backend}")
    try:
        await call(app, http_scope("/", headers=[("x-user", "warm")]))  # connects, loads script
        redis_server.command("CONFIG", "RESETSTAT")
        statuses = [
            (await call(app, http_scope("/", headers=[("x-user", f"u{i % 3}")]))).status
            for i in range(30)
        ]
    finally:
        await app.pipeline.aclose()
    assert statuses.count(200) == 12 and statuses.count(429) == 18
    calls = command_calls(redis_server)
    # One EVALSHA per request is the only command a client sent; the rest ran inside it
    # (commandstats counts scripted calls) or came from this test's own probe connection.
    assert calls.pop("evalsha") == 30
    inside_script = {"get", "set", "time", "llen", "lindex", "rpush", "ltrim", "pexpire"}
    probe = {"hello", "info", "config|resetstat", "client|setinfo"}
    assert set(calls) <= inside_script | probe


def run_workers(url: str, users: list[str], requests: int) -> list[int]:
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.ratelimit_worker", url, user, str(requests)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for user in users
    ]
    admitted = []
    for worker in workers:
        out, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err.decode()
        admitted.append(json.loads(out)["admitted"])
    return admitted


def test_four_processes_on_one_key_never_admit_more_than_the_limit(
    own_redis: RedisServer,
) -> None:
    admitted = run_workers(own_redis.url, ["shared"] * 4, 25)
    assert sum(admitted) == 10  # the "user" tier: 10/hour, exactly


def test_composite_check_is_exact_across_processes(own_redis: RedisServer) -> None:
    admitted = run_workers(own_redis.url, [f"u{i}" for i in range(4)], 25)
    assert sum(admitted) == 30  # the global tier, exactly
    assert all(count <= 10 for count in admitted)
    global_count = own_redis.command("GET", "{secmw:rl}:all:3600:*").split()[0]
    assert float(global_count) == 30
    stored = [own_redis.command("GET", f"{{secmw:rl}}:user:3600:p:test,,u{i}") for i in range(4)]
    per_user = [float(value.split()[0]) if value else 0.0 for value in stored]
    # A request refused by the global tier consumed nothing from the user tier.
    assert per_user == [float(count) for count in admitted]


@pytest.mark.parametrize(
    ("mode", "while_down"),
    [
        pytest.param("fail_closed", [503, 503, 503, 503], id="fail_closed"),
        pytest.param("fail_open", [200, 200, 200, 200], id="fail_open"),
        pytest.param("local_fallback", [200, 200, 429, 429], id="local_fallback"),
    ],
)
async def test_redis_killed_mid_run_then_restarted(
    own_redis: RedisServer, mode: str, while_down: list[int], anyio_backend: str
) -> None:
    app, audit = redis_app(own_redis.url, on_failure=mode, retry_interval=0, fallback_fraction=0.5)
    user = [("x-user", "alice")]
    try:
        before = [(await call(app, http_scope("/", headers=user))).status for _ in range(2)]
        own_redis.stop()
        sent = [await call(app, http_scope("/", headers=user)) for _ in range(4)]
        own_redis.start()
        back = await call(app, http_scope("/", headers=user))
    finally:
        await app.pipeline.aclose()
    assert before == [200, 200]
    assert [s.status for s in sent] == while_down
    if mode == "fail_closed":
        assert sent[0].header("retry-after") == "1"
    events = audit.named("sys_monitor_disabled")
    transitions = [e for e in events if e.details.get("component") == "ratelimit"]
    assert len(transitions) == 1 and transitions[0].details["on_failure"] == mode
    # fail_closed: each refused request is also recorded as the pipeline's own 503 event.
    assert len(events) - 1 == (4 if mode == "fail_closed" else 0)
    assert back.status == 200 and back.header("ratelimit") is not None
    enabled = audit.named("sys_monitor_enabled")
    assert len(enabled) == 1 and enabled[0].details["decided_without_storage"] == 4


@pytest.fixture
def dead_port() -> Iterator[int]:
    """A port bound but not listening: connections are refused, and nobody else can take it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


async def test_unreachable_redis_fails_closed_within_the_timeout(dead_port: int) -> None:
    app, audit = redis_app(f"redis://127.0.0.1:{dead_port}/0", connect_timeout=0.2)
    try:
        sent = await call(app, http_scope("/", headers=[("x-user", "a")]))
    finally:
        await app.pipeline.aclose()
    assert sent.status == 503 and sent.header("retry-after") == "1"
    assert "sys_monitor_disabled" in audit.names()


async def test_shadow_tiers_alone_do_not_fail_closed_when_redis_is_down(dead_port: int) -> None:
    # A shadow tier never refuses: with Redis down (fail_closed) a request that only
    # shadow tiers count passes uncounted; one an enforced tier counts still gets 503.
    audit = AuditCapture()
    config = {
        "auth": {"allow_anonymous": True},
        "ratelimit": {
            "storage": {"url": f"redis://127.0.0.1:{dead_port}/0", "connect_timeout": 0.2},
            "tiers": [
                {"name": "trial", "key": "ip", "rate": "20/minute", "shadow": True},
                {
                    "name": "exports",
                    "key": "ip",
                    "rate": "5/minute",
                    "exempt": {"routes": ["/free/**"]},
                },
            ],
        },
    }
    app = SecurityMiddleware(EchoApp(), config, audit=audit)
    try:
        shadowed = await call(app, http_scope("/free/report"))
        enforced = await call(app, http_scope("/paid/report"))
    finally:
        await app.pipeline.aclose()
    assert shadowed.status == 200 and shadowed.header("ratelimit") is None
    assert enforced.status == 503 and enforced.header("retry-after") == "1"
    outage = audit.named("sys_monitor_disabled")[0]
    assert outage.details == {"component": "ratelimit", "on_failure": "fail_closed"}


@pytest.mark.parametrize(
    ("url", "kind", "hosts", "service"),
    [
        pytest.param("rediss://cache:6380/1", "url", (), None, id="tls"),
        pytest.param(
            "redis+sentinel://:pw@s1:26379,s2:26379/mymaster",
            "sentinel",
            (("s1", 26379), ("s2", 26379)),
            "mymaster",
            id="sentinel",
        ),
        pytest.param(
            "redis+cluster://n1:7000,n2:7001",
            "cluster",
            (("n1", 7000), ("n2", 7001)),
            None,
            id="cluster",
        ),
    ],
)
def test_storage_uris(url: str, kind: str, hosts: tuple[Any, ...], service: str | None) -> None:
    target = parse_target(url)
    assert (target.kind, target.hosts, target.service) == (kind, hosts, service)


async def test_message_limits_with_redis_down_close_with_1013(dead_port: int) -> None:
    audit = AuditCapture()
    config = {
        "auth": {"allow_anonymous": True},
        "ratelimit": {
            "storage": {"url": f"redis://127.0.0.1:{dead_port}/0", "connect_timeout": 0.2},
            "tiers": [
                {"name": "msgs", "key": "connection", "rate": "5/second", "applies_to": "messages"}
            ],
        },
    }
    received: list[Any] = []

    async def ws_app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        received.append(await receive())

    app = SecurityMiddleware(ws_app, config, audit=audit)
    receiver = Receiver(
        [{"type": "websocket.connect"}, {"type": "websocket.receive", "text": "hi"}],
        after={"type": "websocket.disconnect", "code": 1000},
    )
    try:
        sent = await call(app, ws_scope(), receiver)
    finally:
        await app.pipeline.aclose()
    closes = [m for m in sent.messages if m["type"] == "websocket.close"]
    assert closes[0]["code"] == 1013
    assert received == [{"type": "websocket.disconnect", "code": 1013}]
    assert [e.status for e in audit.named("sys_monitor_disabled") if e.status] == [1013]


async def hits(store: RedisStore, count: int) -> list[bool]:
    gcra = limit("gcra", 3, 60.0, "c-gcra")
    moving = limit("moving-window", 3, 60.0, "c-moving")
    results = []
    try:
        for _ in range(count):
            outcomes = await store.apply([(gcra, "k", 1), (moving, "k", 1)])
            results.append(all(outcome.allowed for outcome in outcomes))
    finally:
        await store.aclose()
    return results


@pytest.fixture
def cluster_node(tmp_path: Path) -> Iterator[RedisServer]:
    """A one-node Redis Cluster owning every slot."""
    nodes = str(tmp_path / "nodes.conf")
    for server in redis_server_fixture("--cluster-enabled", "yes", "--cluster-config-file", nodes):
        server.command("CLUSTER", "ADDSLOTSRANGE", "0", "16383")
        deadline = time.monotonic() + 10
        while b"cluster_state:ok" not in server.command("CLUSTER", "INFO"):
            assert time.monotonic() < deadline, "the cluster did not become ok"
            time.sleep(0.05)
        yield server


async def test_cluster_uri(cluster_node: RedisServer, anyio_backend: str) -> None:
    store = RedisStore(f"redis+cluster://127.0.0.1:{cluster_node.port}", prefix=anyio_backend)
    assert await hits(store, 4) == [True, True, False, False]  # GCRA burst 2


@pytest.fixture
def sentinel(own_redis: RedisServer, tmp_path: Path) -> Iterator[RedisServer]:
    """A sentinel watching ``own_redis`` as ``mymaster``."""
    conf = tmp_path / "sentinel.conf"
    conf.write_text(f"sentinel monitor mymaster 127.0.0.1 {own_redis.port} 1\n")
    yield from redis_server_fixture("--sentinel", config=str(conf))


async def test_sentinel_uri(sentinel: RedisServer, anyio_backend: str) -> None:
    store = RedisStore(f"redis+sentinel://127.0.0.1:{sentinel.port}/mymaster", prefix=anyio_backend)
    assert await hits(store, 4) == [True, True, False, False]  # GCRA burst 2


def retype_keys(server: RedisServer, pattern: str) -> None:
    """Turn the counters matching ``pattern`` into hashes, as an older deployment with
    another algorithm could have left them: Redis refuses the script on them."""
    for key in server.command("KEYS", pattern):
        server.command("DEL", key)
        server.command("HSET", key, "x", "1")


async def test_a_key_redis_refuses_costs_that_request_only_not_everyone(
    redis_server: RedisServer, anyio_backend: str
) -> None:
    prefix = f"wrongtype-{anyio_backend}"
    app, audit = redis_app(redis_server.url, prefix=prefix)
    try:
        alice = http_scope("/", headers=[("x-user", "alice")])
        assert (await call(app, alice)).status == 200
        retype_keys(redis_server, f"*{prefix}*alice*")
        assert (await call(app, alice)).status == 503
        for user in ("bob", "carol"):
            sent = await call(app, http_scope("/", headers=[("x-user", user)]))
            assert sent.status == 200  # Redis is up: nobody else is affected
        # Alice's request is refused and audited; Redis was never declared down.
        reasons = [e.reason or "" for e in audit.named("sys_monitor_disabled")]
        assert len(reasons) == 1 and "on_failure" not in reasons[0]
    finally:
        await app.pipeline.aclose()


async def test_a_key_another_algorithm_left_costs_that_request_only(
    redis_server: RedisServer, anyio_backend: str
) -> None:
    # The tier changed its algorithm between deployments: the new script fails at
    # run time on alice's old key ("user_script:N: attempt to compare number with nil").
    def app(algorithm: str) -> tuple[Any, AuditCapture]:
        audit = AuditCapture()
        storage = {"url": redis_server.url, "prefix": f"algo-{anyio_backend}"}
        tiers = [{"name": "user", "key": "principal", "rate": "5/minute", "algorithm": algorithm}]
        config = {
            "auth": {"allow_anonymous": True},
            "ratelimit": {"storage": storage, "tiers": tiers},
        }
        middleware = SecurityMiddleware(
            EchoApp(), config, authenticator=HeaderAuthenticator(), audit=audit
        )
        return middleware, audit

    old, _ = app("sliding-window-counter")
    alice = http_scope("/", headers=[("x-user", "alice")])
    assert (await call(old, alice)).status == 200
    await old.pipeline.aclose()
    new, audit = app("fixed-window")
    try:
        assert (await call(new, alice)).status == 503
        for user in ("bob", "carol", "bob"):
            assert (await call(new, http_scope("/", headers=[("x-user", user)]))).status == 200
        reasons = [e.reason or "" for e in audit.named("sys_monitor_disabled")]
        assert len(reasons) == 1 and "on_failure" not in reasons[0]  # no outage declared
    finally:
        await new.pipeline.aclose()


async def test_a_reply_that_is_not_the_scripts_is_a_storage_failure() -> None:
    # Answers "+OK" to everything: a wrong service, or something in between.
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        stop = False

        def answer() -> None:
            server.settimeout(0.2)
            while not stop:
                try:
                    conn, _ = server.accept()
                except OSError:
                    continue
                with conn:
                    conn.settimeout(2)
                    try:
                        while conn.recv(65536):
                            conn.sendall(b"+OK\r\n")
                    except OSError:
                        pass

        import threading

        thread = threading.Thread(target=answer, daemon=True)
        thread.start()
        app, audit = redis_app(f"redis://127.0.0.1:{port}/0", connect_timeout=0.5)
        try:
            sent = await call(app, http_scope("/", headers=[("x-user", "alice")]))
        finally:
            await app.pipeline.aclose()
            stop = True
            thread.join(5)
    assert sent.status == 503
    assert sent.header("retry-after") is not None
    assert audit.named("sys_monitor_disabled")


async def test_a_key_with_a_lone_surrogate_is_counted_not_a_storage_failure(
    redis_server: RedisServer, anyio_backend: str
) -> None:
    # A JSON "\ud800" tool name has no UTF-8 form; it must not fail the round trip
    # (which would put Redis into failover for every client).
    store = RedisStore(redis_server.url, prefix=f"surrogate-{anyio_backend}")
    tight = limit("fixed-window", 1, 60.0, f"s-{anyio_backend}")
    try:
        first = await store.apply([(tight, "tool|\ud800", 1)])
        second = await store.apply([(tight, "tool|\ud800", 1)])
        other = await store.apply([(tight, "tool|\udfff", 1)])
    finally:
        await store.aclose()
    assert [first[0].allowed, second[0].allowed, other[0].allowed] == [True, False, True]


async def test_more_requests_in_flight_than_connections_wait_for_one(
    redis_server: RedisServer, anyio_backend: str
) -> None:
    # redis-py's asyncio pool refuses the 101st connection instead of waiting; a
    # burst must not pass for an outage (fail_open would admit it uncounted).
    prefix = f"burst-{anyio_backend}"
    app, audit = redis_app(
        redis_server.url, prefix=prefix, on_failure="fail_open", max_connections=8, timeout=5
    )
    statuses: list[int] = []

    async def one() -> None:
        statuses.append((await call(app, http_scope("/", headers=[("x-user", "mallory")]))).status)

    try:
        async with anyio.create_task_group() as group:
            for _ in range(150):
                group.start_soon(one)
    finally:
        await app.pipeline.aclose()
    assert statuses.count(200) == 4 and statuses.count(429) == 146  # user tier: 4/hour
    assert not audit.named("sys_monitor_disabled")


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_request_that_finds_no_free_connection_is_decided_alone_and_audited(
    redis_server: RedisServer, anyio_backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = RedisStore._client_async

    class Slow:
        """The real client, but the first round trip holds its connection for 0.5 s."""

        def __init__(self, client: Any) -> None:
            self.client = client

        async def evalsha(self, *args: Any) -> Any:
            if not slowed:
                slowed.append(True)
                await anyio.sleep(0.5)
            return await self.client.evalsha(*args)

        async def script_load(self, script: str) -> Any:
            return await self.client.script_load(script)

        async def aclose(self) -> None:
            await self.client.aclose()

    slowed: list[bool] = []
    monkeypatch.setattr(RedisStore, "_client_async", lambda store: Slow(real(store)))
    app, audit = redis_app(
        redis_server.url, prefix="busy", on_failure="fail_open", max_connections=1, timeout=0.2
    )
    statuses: list[int] = []

    async def one(user: str) -> None:
        statuses.append((await call(app, http_scope("/", headers=[("x-user", user)]))).status)

    try:
        async with anyio.create_task_group() as group:
            for n in range(4):
                group.start_soon(one, f"u{n}")
        after = await call(app, http_scope("/", headers=[("x-user", "after")]))
    finally:
        await app.pipeline.aclose()
    assert statuses == [200] * 4 and after.status == 200
    events = audit.named("sys_monitor_disabled")
    # Three requests found no free connection: each is audited; none began an outage.
    assert len(events) == 3
    assert all(e.details["scope"] == "request" for e in events)
    assert all(
        "busy" in (e.reason or "") and "admitted uncounted" in (e.reason or "") for e in events
    )
    assert not audit.named("sys_monitor_enabled")
    assert after.header("ratelimit") is not None  # counted by Redis again


async def test_redis_out_of_memory_is_an_outage_not_one_requests_problem(
    own_redis: RedisServer, anyio_backend: str
) -> None:
    app, audit = redis_app(own_redis.url, prefix="oom", on_failure="fail_open")
    try:
        own_redis.command("CONFIG", "SET", "maxmemory-policy", "noeviction")
        own_redis.command("CONFIG", "SET", "maxmemory", "1")
        statuses = [
            (await call(app, http_scope("/", headers=[("x-user", "mallory")]))).status
            for _ in range(6)
        ]
    finally:
        own_redis.command("CONFIG", "SET", "maxmemory", "0")
        await app.pipeline.aclose()
    assert statuses == [200] * 6  # fail_open, as configured ...
    down = audit.named("sys_monitor_disabled")  # ... and audited as an outage
    assert down and "on_failure=fail_open" in (down[0].reason or "")


async def test_a_refused_key_under_fail_open_is_admitted_and_audited(
    redis_server: RedisServer, anyio_backend: str
) -> None:
    prefix = f"wrongtype-open-{anyio_backend}"
    app, audit = redis_app(redis_server.url, prefix=prefix, on_failure="fail_open")
    try:
        alice = http_scope("/", headers=[("x-user", "alice")])
        assert (await call(app, alice)).status == 200
        retype_keys(redis_server, f"*{prefix}*alice*")
        assert (await call(app, alice)).status == 200
    finally:
        await app.pipeline.aclose()
    events = audit.named("sys_monitor_disabled")
    assert len(events) == 1 and events[0].details["scope"] == "request"
    assert "refused the keys" in (events[0].reason or "")


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_on_trio_a_stalled_redis_neither_holds_requests_past_the_timeout_nor_the_apps_threads(
    own_redis: RedisServer, anyio_backend: str
) -> None:
    # trio runs the round trips in worker threads: they must not queue for
    # anyio's shared pool (40 threads), which the app's own threads need too.
    app, _ = redis_app(own_redis.url, timeout=0.2, max_connections=10)
    try:
        assert (await call(app, http_scope("/", headers=[("x-user", "warm")]))).status == 200
        own_redis.command("CLIENT", "PAUSE", "3000", "ALL")  # a black-holed server
        statuses: list[int] = []
        app_thread: list[float] = []

        async def one(n: int) -> None:
            sent = await call(app, http_scope("/", headers=[("x-user", f"u{n}")]))
            statuses.append(sent.status)

        async def app_work() -> None:
            await anyio.sleep(0.05)
            started = time.monotonic()
            await anyio.to_thread.run_sync(time.sleep, 0)
            app_thread.append(time.monotonic() - started)

        started = time.monotonic()
        async with anyio.create_task_group() as group:
            for n in range(150):
                group.start_soon(one, n)
            group.start_soon(app_work)
        elapsed = time.monotonic() - started
    finally:
        own_redis.command("CLIENT", "UNPAUSE")
        await app.pipeline.aclose()
    assert set(statuses) == {503}
    assert elapsed < 1.5, elapsed
    assert app_thread[0] < 0.5, app_thread


async def test_gcra_cost_equal_to_burst_passes_on_redis_time(
    redis_server: RedisServer, anyio_backend: str
) -> None:
    # The server's TIME in epoch milliseconds: the script must not refuse by rounding.
    store = RedisStore(redis_server.url, prefix=f"gcra-eq-{anyio_backend}")
    try:
        for index, (amount, window, burst) in enumerate(
            [(100, 60.0, 4), (6, 5.0, 2), (30, 60.0, 5)]
        ):
            gcra = Limit("g", f"g{index}", "g", "gcra", amount, window, burst)
            outcomes = [(await store.apply([(gcra, f"client{n}", burst)]))[0] for n in range(10)]
            assert all(outcome.allowed for outcome in outcomes), (amount, burst)
            assert {outcome.remaining for outcome in outcomes} == {0}
    finally:
        await store.aclose()


async def test_moving_window_refusals_read_only_what_they_need(
    redis_server: RedisServer, anyio_backend: str
) -> None:
    # A full log of 5,000 hits: each refused request is a bisection, not a read of the log.
    store = RedisStore(redis_server.url, prefix=f"mw-reads-{anyio_backend}")
    moving = Limit("m", "m", "m", "moving-window", 5000, 3600.0, 5000)
    try:
        assert (await store.apply([(moving, "mallory", 5000)]))[0].allowed
        redis_server.command("CONFIG", "RESETSTAT")
        refused = [(await store.apply([(moving, "mallory", 1)]))[0] for _ in range(20)]
    finally:
        await store.aclose()
    assert not any(outcome.allowed for outcome in refused)
    assert all(3590 < outcome.retry_after <= 3600 for outcome in refused)
    calls = command_calls(redis_server)
    assert "lrange" not in calls
    assert calls["lindex"] <= 20 * 16  # log2(5000) probes and the two answers
