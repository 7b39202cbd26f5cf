"""Fault injection: real upstreams on 127.0.0.1 that reset, hang, truncate, lie or crawl."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import anyio
import pytest

from secmw.breaker import State
from secmw.config import load_config
from secmw.proxy.build import Gateway, build_gateway
from secmw.testing import AuditCapture
from tests.gateway_support import EchoUpstream, FaultServer, HeldReceiver, gateway_config, serve
from tests.support import Sender, http_scope

pytestmark = pytest.mark.anyio

BREAKER = {
    "minimum_calls": 3,
    "window_size": 5,
    "failure_rate_threshold": 50,
    "open_duration": 0.5,
    "half_open_calls": 2,
}
TIMEOUTS = {"connect": 0.5, "read": 0.3, "write": 0.5, "total": 1.0}


def build(target: str, audit: AuditCapture, **options: Any) -> Gateway:
    settings: dict[str, Any] = {"breaker": BREAKER, "timeouts": TIMEOUTS}
    settings.update(options)
    return build_gateway(load_config(gateway_config([target], **settings)), audit=audit)


async def request(gateway: Gateway, path: str = "/echo") -> tuple[Sender, float]:
    sender = Sender()
    started = time.perf_counter()
    await gateway(http_scope(path), HeldReceiver(), sender)
    return sender, time.perf_counter() - started


@pytest.fixture
def flaky() -> Iterator[tuple[EchoUpstream, str]]:
    echo = EchoUpstream()
    with serve(echo) as url:
        yield echo, url


@pytest.mark.parametrize(
    ("mode", "status", "event", "outcome"),
    [
        pytest.param("reset", 502, "upstream_fail", "error", id="connection-reset"),
        pytest.param("garbage", 502, "upstream_fail", "error", id="not-http"),
        pytest.param("hang", 504, "upstream_timeout", "timeout", id="never-answers"),
        pytest.param("truncate", 200, "upstream_fail", "error", id="truncated-body"),
    ],
)
async def test_each_fault_is_answered_in_time_audited_and_counted(
    mode: str, status: int, event: str, outcome: str
) -> None:
    audit = AuditCapture()
    with FaultServer(mode) as fault:
        gateway = build(fault.url, audit)
        sender, elapsed = await request(gateway)
        await gateway.proxy.aclose()
    assert sender.status == status
    assert elapsed < 1.5  # nothing hangs past the read/total timeouts
    if mode == "truncate":
        # The response had started: the client sees a cut body, never a completed one.
        assert not any(
            m["type"] == "http.response.body" and not m.get("more_body") for m in sender.messages
        )
    else:
        assert sender.header("content-type") == "application/problem+json"
        assert sender.json()["status"] == status
    (record,) = [e for e in audit.events if e.request_id is not None]
    assert record.name == event
    assert record.outcome == "failure"
    assert record.details["outcome"] == outcome
    (breaker,) = list(gateway.registry)
    assert breaker.snapshot().failures == 1


async def test_breaker_opens_within_the_window_and_fails_fast_without_touching_upstream() -> None:
    audit = AuditCapture()
    with FaultServer("reset") as fault:
        gateway = build(fault.url, audit)
        for _ in range(3):
            sender, _ = await request(gateway)
            assert sender.status == 502
        assert gateway.registry.all_open()
        connections = fault.connections
        sender, elapsed = await request(gateway)
        await gateway.proxy.aclose()
        assert fault.connections == connections
    assert sender.status == 503
    assert sender.header("retry-after") == "1"
    assert elapsed < 0.25
    assert audit.names().count("breaker_opened") == 1
    assert audit.events[-1].name == "upstream_circuit_open"
    assert audit.events[-1].details["outcome"] == "circuit_open"
    failures = [e for e in audit.events if e.name == "upstream_fail"]
    assert len(failures) == 3


async def test_half_open_probes_close_the_circuit_after_recovery(
    flaky: tuple[EchoUpstream, str],
) -> None:
    echo, url = flaky
    audit = AuditCapture()
    gateway = build(url, audit)
    echo.fail = True
    for _ in range(3):
        sender, _ = await request(gateway)
        assert sender.status == 500
    (breaker,) = list(gateway.registry)
    assert breaker.state is State.OPEN
    seen = len(echo.seen)
    sender, _ = await request(gateway)
    assert sender.status == 503
    assert len(echo.seen) == seen
    echo.fail = False
    await anyio.sleep(0.6)
    for _ in range(2):
        sender, _ = await request(gateway)
        assert sender.status == 200
    await gateway.proxy.aclose()
    assert breaker.state is State.CLOSED
    names = [n for n in audit.names() if n.startswith("breaker_")]
    assert names == ["breaker_opened", "breaker_half_open", "breaker_closed"]
    opened = audit.named("breaker_opened")[0]
    assert opened.details["failure_rate"] == 100.0


async def test_failed_probe_reopens(flaky: tuple[EchoUpstream, str]) -> None:
    echo, url = flaky
    audit = AuditCapture()
    gateway = build(url, audit)
    echo.fail = True
    for _ in range(3):
        await request(gateway)
    await anyio.sleep(0.6)
    for _ in range(2):
        sender, _ = await request(gateway)
        assert sender.status == 500
    await gateway.proxy.aclose()
    names = [n for n in audit.names() if n.startswith("breaker_")]
    assert names == ["breaker_opened", "breaker_half_open", "breaker_opened"]


async def test_slow_answers_open_the_circuit(flaky: tuple[EchoUpstream, str]) -> None:
    echo, url = flaky
    echo.delay = 0.15
    audit = AuditCapture()
    breaker = {
        **BREAKER,
        "minimum_calls": 2,
        "slow_call_duration": 0.1,
        "slow_call_rate_threshold": 100,
    }
    gateway = build(url, audit, breaker=breaker)
    for _ in range(2):
        sender, _ = await request(gateway)
        assert sender.status == 200
    sender, _ = await request(gateway)
    await gateway.proxy.aclose()
    assert sender.status == 503
    assert audit.named("breaker_opened")[0].details["slow_call_rate"] == 100.0


async def test_an_upstreams_own_breaker_keys_leave_the_others_to_gateway_breaker(
    flaky: tuple[EchoUpstream, str],
) -> None:
    from secmw.errors import ConfigError

    audit = AuditCapture()
    gateway = build(
        flaky[1],
        audit,
        breaker={**BREAKER, "minimum_calls": 1, "window_size": 1, "failure_statuses": [429]},
        upstream={"breaker": {"open_duration": 60}},
    )
    refused, _ = await request(gateway, "/status/429")
    fast, _ = await request(gateway, "/status/429")
    await gateway.proxy.aclose()
    # The upstream only set open_duration: minimum_calls and failure_statuses are
    # gateway.breaker's, not the built-in 10 calls and 5xx statuses.
    assert (refused.status, fast.status) == (429, 503)
    assert audit.named("upstream_circuit_open")
    (breaker,) = list(gateway.registry)
    assert breaker.snapshot().retry_after == pytest.approx(60, abs=1)
    clash = gateway_config(
        [flaky[1]], breaker={"max_open_duration": 30}, upstream={"breaker": {"open_duration": 60}}
    )
    with pytest.raises(ConfigError, match=r"gateway\.upstreams\.u\.breaker: max_open_duration"):
        build_gateway(load_config(clash), audit=AuditCapture())


async def test_total_timeout_bounds_a_slow_upstream(flaky: tuple[EchoUpstream, str]) -> None:
    echo, url = flaky
    echo.delay = 1.0
    audit = AuditCapture()
    gateway = build(url, audit, timeouts={"read": 5, "total": 0.4})
    sender, elapsed = await request(gateway)
    await gateway.proxy.aclose()
    assert sender.status == 504
    assert elapsed < 1.0
    assert audit.events[-1].name == "upstream_timeout"


async def test_refused_connection_is_a_502() -> None:
    with FaultServer("ok") as closed:
        url = closed.url
    audit = AuditCapture()
    gateway = build(url, audit)
    sender, elapsed = await request(gateway)
    await gateway.proxy.aclose()
    assert sender.status == 502
    assert elapsed < 1.0
    assert audit.events[-1].details["error"] == "ConnectError"


async def test_active_health_checks_mark_targets_down_and_up(
    flaky: tuple[EchoUpstream, str],
) -> None:
    echo, url = flaky
    audit = AuditCapture()
    with FaultServer("reset") as broken:
        gateway = build(
            broken.url,
            audit,
            upstream={"targets": [broken.url, url]},
            health_checks={"interval": 60, "path": "/status/200"},
        )
        proxy = gateway.proxy
        (pool,) = proxy.pools
        bad, good = pool.targets
        await proxy.probe()
        assert bad.healthy  # one failed probe is not enough
        await proxy.probe()
        assert not bad.healthy
        assert good.healthy
        for _ in range(3):
            sender, _ = await request(gateway)
            assert sender.status == 200  # the down target is skipped
        connections = broken.connections
        broken.mode = "ok"
        await proxy.probe()
        assert bad.healthy
        assert broken.connections == connections + 1
        await proxy.aclose()


@pytest.mark.parametrize("path", ["health", "/h\u00e9alth", "/a b", "/x#y"])
async def test_a_probe_path_that_cannot_be_requested_is_refused_up_front(path: str) -> None:
    from secmw.errors import ConfigError
    from secmw.proxy import ReverseProxy

    # It used to be accepted, then the probe task died at start-up: checks silently off.
    config = gateway_config(["http://127.0.0.1:9"], health_checks={"interval": 1, "path": path})
    with pytest.raises(ConfigError, match=r"gateway\.health_checks\.path"):
        load_config(config)
    liveness = gateway_config(["http://127.0.0.1:9"], health={"liveness_path": path.lstrip("/")})
    with pytest.raises(ConfigError, match=r"gateway\.health\.liveness_path"):
        load_config(liveness)  # compared with the request path: it could never match
    with pytest.raises(ValueError, match="health_path"):
        ReverseProxy([], health_interval=1, health_path=path)


async def test_a_stalled_event_stream_ends_at_the_read_timeout(
    flaky: tuple[EchoUpstream, str],
) -> None:
    _, url = flaky
    audit = AuditCapture()
    gateway = build(url, audit, timeouts={"read": 0.3, "total": 0.5})
    sender, elapsed = await request(gateway, "/sse-stall")
    await gateway.proxy.aclose()
    assert sender.status == 200
    assert sender.body == b"data: 1\n\n"
    assert elapsed < 1.5  # the read timeout, not the upstream's 2 s stall
    assert not any(m.get("more_body") is False for m in sender.messages[1:])
    event = audit.events[-1]
    assert event.name == "upstream_timeout"
    assert event.details["outcome"] == "timeout"
