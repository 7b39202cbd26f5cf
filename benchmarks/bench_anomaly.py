"""Anomaly detection and metrics cost per request, and memory per tracked key.

Variants run interleaved in 10 rounds after a warm-up that gives every key its
state. Per request the monitor runs ``before`` (address blocks), ``after_authentication``
(request detectors) and ``observe`` (outcome detectors) — what the pipeline calls.
The coroutines never suspend, so they are driven directly, without an event
loop, to measure the detectors rather than the scheduler. Requests rotate over
``--keys`` principals, credentials and client addresses (and 7 paths, or in one
variant a path per key, which defeats new_target's route cache); every fifth request is
an authentication failure and every tenth a policy denial, so every detector
does real work. The metrics observer is compared with prometheus_client doing
the same counting (a counter by three labels, one by reason, a histogram).

Memory per key: each detector is fed ``--keys`` distinct keys and the growth
measured with tracemalloc, divided by the number of keys.

Shared state in Redis (``anomaly.storage.url``, a local ``redis-server`` started
here on 127.0.0.1): the default five detectors on an asyncio loop, each request
running ``before``, ``after_authentication``, ``observe`` and the flush that
follows the request's audit event (where outcome counts go to Redis), against
the same monitor in memory on the same loop, interleaved; with round trips per
request.

    python benchmarks/bench_anomaly.py [--seconds 1] [--keys 10000] [--redis-requests 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import platform
import sys
import time
import tracemalloc
from collections.abc import Callable, Coroutine
from typing import Any

import prometheus_client as prom

from bench_ratelimit import redis_server
from secmw.anomaly import (
    AnomalyMonitor,
    AuthFailureBurst,
    NewTarget,
    OffHours,
    RateSpike,
    RepeatedDenials,
    TokenReuse,
)
from secmw.anomaly.base import Detector
from secmw.anomaly.shared import SharedState
from secmw.audit.base import AuditEvent
from secmw.context import Principal, RequestContext
from secmw.metrics import SecurityMetrics

START = 1793613600.0  # Monday 2026-11-02 10:00 UTC


def drive(coro: Coroutine[Any, Any, None]) -> None:
    """Run a coroutine that never suspends."""
    try:
        coro.send(None)
    except StopIteration:
        return
    raise RuntimeError("the coroutine suspended")


def all_detectors() -> list[Detector]:
    return [
        AuthFailureBurst(key_kind="client", threshold=20, window=300),
        AuthFailureBurst(key_kind="subject", threshold=10, window=300),
        TokenReuse(threshold=5, window=600),
        RateSpike(interval=60, warmup=30),
        RepeatedDenials(threshold=20, window=300),
        NewTarget(learning_period=7 * 86_400),
        OffHours(learning_period=14 * 86_400),
    ]


def workload(keys: int, *, paths: int = 7) -> list[tuple[RequestContext, AuditEvent]]:
    items = []
    for index in range(keys):
        scope = {
            "type": "http",
            "method": "GET",
            "path": f"/api/items/{index % paths}",
            "headers": [],
            "client": (f"10.{index // 65536 % 256}.{index // 256 % 256}.{index % 256}", 1),
        }
        ctx = RequestContext.from_scope(scope)
        subject = f"user-{index}"
        ctx.principal = Principal(subject=subject, auth_method="jwt", credential_id=f"jti:{index}")
        if index % 5 == 0:
            event = AuditEvent("authn_token_invalid", "failure", client=ctx.client, status=401)
        elif index % 10 == 1:
            event = AuditEvent(
                "authz_fail", "failure", client=ctx.client, subject=subject, status=403
            )
        else:
            event = AuditEvent(
                "authz_allow",
                "success",
                client=ctx.client,
                subject=subject,
                status=200,
                transport="http",
                latency_ms=0.4,
            )
        items.append((ctx, event))
    return items


def percentiles(samples: list[float]) -> tuple[float, float]:
    samples.sort()
    return samples[len(samples) // 2], samples[min(len(samples) - 1, int(len(samples) * 0.99))]


def per_request(
    step: Callable[[RequestContext, AuditEvent], None],
    items: list[tuple[RequestContext, AuditEvent]],
    seconds: float,
    samples: list[float],
) -> None:
    """Add the mean per-request cost of batches of 100 requests (µs) to ``samples``."""
    batch = 100
    clock = time.perf_counter_ns
    size = len(items)
    position = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        chunk = items[position : position + batch]
        position = (position + batch) % (size - batch)
        started = clock()
        for ctx, event in chunk:
            step(ctx, event)
        samples.append((clock() - started) / 1000.0 / batch)


def monitor_step(
    monitor: AnomalyMonitor, clock: list[float]
) -> Callable[[RequestContext, AuditEvent], None]:
    def step(ctx: RequestContext, event: AuditEvent) -> None:
        clock[0] += 0.001
        drive(monitor.before(ctx))
        drive(monitor.after_authentication(ctx))
        monitor.observe(ctx, event)

    return step


async def shared_rows(url: str, items: list[tuple[RequestContext, AuditEvent]], count: int) -> None:
    """Per-request cost of the default detectors with their state in Redis vs in memory."""
    import redis.asyncio.connection  # noqa: PLC0415 - counts round trips

    trips = {"count": 0}
    original = redis.asyncio.connection.AbstractConnection.send_packed_command

    async def counted(self: Any, command: Any, check_health: bool = True) -> None:
        trips["count"] += 1
        await original(self, command, check_health)

    redis.asyncio.connection.AbstractConnection.send_packed_command = counted  # type: ignore[method-assign]
    clock = [START]
    shared = SharedState(url, prefix="bench-anomaly")
    blocking = SharedState(url, prefix="bench-anomaly-block")
    # As configured by default: the brute-force detector by client blocks, so every
    # request also asks Redis whether its address is blocked, before authentication.
    configured = all_detectors()[:5]
    configured[0] = AuthFailureBurst(key_kind="client", threshold=20, window=300, response="block")
    monitors = {
        "monitor, default 5 detectors, memory": AnomalyMonitor(
            all_detectors()[:5], clock=lambda: clock[0]
        ),
        "monitor, default 5 detectors (all alert), Redis": AnomalyMonitor(
            all_detectors()[:5], clock=lambda: clock[0], shared=shared
        ),
        "monitor, default 5 detectors (client blocks), Redis": AnomalyMonitor(
            configured, clock=lambda: clock[0], shared=blocking
        ),
    }
    samples: dict[str, list[float]] = {name: [] for name in monitors}
    round_trips = dict.fromkeys(monitors, 0)

    async def run(monitor: AnomalyMonitor, chunk: list[tuple[RequestContext, AuditEvent]]) -> None:
        for ctx, event in chunk:
            clock[0] += 0.001
            await monitor.before(ctx)
            await monitor.after_authentication(ctx)
            monitor.observe(ctx, event)
            await monitor.flush(None)

    for monitor in monitors.values():
        await run(monitor, items[:200])  # connect, load the script
    rounds = 10
    per_round = count // rounds
    position = 0
    for _ in range(rounds):
        for name, monitor in monitors.items():
            chunk = items[position : position + per_round]
            before = trips["count"]
            for start in range(0, len(chunk), 100):
                batch = chunk[start : start + 100]
                started = time.perf_counter_ns()
                await run(monitor, batch)
                samples[name].append((time.perf_counter_ns() - started) / 1000.0 / len(batch))
            round_trips[name] += trips["count"] - before
        position = (position + per_round) % (len(items) - per_round)
    await shared.aclose()
    await blocking.aclose()
    redis.asyncio.connection.AbstractConnection.send_packed_command = original  # type: ignore[method-assign]
    print()
    print(f"Shared state in Redis (local redis-server), {count} requests per variant")
    print()
    print("| variant | p50 µs/request | p99 µs/request | round trips/request |")
    print("|---|---:|---:|---:|")
    for name in monitors:
        p50, p99 = percentiles(samples[name])
        print(f"| {name} | {p50:.2f} | {p99:.2f} | {round_trips[name] / count:.2f} |")
    redis_memory(url)


def redis_memory(url: str) -> None:
    """Bytes per key in Redis (``MEMORY USAGE``), by kind of key, after the run above."""
    import redis  # noqa: PLC0415

    client = redis.Redis.from_url(url)
    sizes: dict[str, list[int]] = {}
    for key in client.scan_iter("{bench-anomaly}:*", count=1000):
        kind = key.decode().split(":")[1] + ":" + key.decode().split(":")[2]
        sizes.setdefault(kind, []).append(int(client.memory_usage(key) or 0))
    client.close()
    names = {
        "w:auth_failures_by_client": "auth failures by client (list of times)",
        "w:repeated_denials": "repeated denials (list of times)",
        "r:token_reuse": "token reuse (hash of addresses)",
    }
    print()
    print("| Redis key | keys | bytes per key (MEMORY USAGE, mean) |")
    print("|---|---:|---:|")
    for kind, label in names.items():
        found = sizes.get(kind, [])
        if found:
            print(f"| {label} | {len(found)} | {sum(found) / len(found):.0f} |")


def prometheus_step() -> Callable[[RequestContext, AuditEvent], None]:
    registry = prom.CollectorRegistry()
    requests = prom.Counter(
        "secmw_requests", "r", ("transport", "event", "status_class"), registry=registry
    )
    failures = prom.Counter("secmw_auth_failures", "a", ("reason",), registry=registry)
    duration = prom.Histogram(
        "secmw_request_duration_seconds", "d", ("transport", "outcome"), registry=registry
    )

    def step(ctx: RequestContext, event: AuditEvent) -> None:
        status = event.status
        requests.labels(
            event.transport or "other", event.name, f"{status // 100}xx" if status else "none"
        ).inc()
        if event.outcome == "failure" and event.name.startswith("authn_"):
            failures.labels(event.name).inc()
        if event.latency_ms is not None:
            duration.labels(event.transport or "other", event.outcome).observe(
                event.latency_ms / 1000
            )

    return step


def memory_per_key(
    make: Callable[[], Detector], keys: int, feed: Callable[[Detector, int], None]
) -> float:
    detector = make()
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for index in range(keys):
        feed(detector, index)
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert detector.tracked_keys() == keys, (detector.name, detector.tracked_keys())
    return (after - before) / keys


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="time per variant")
    parser.add_argument("--keys", type=int, default=10_000, help="distinct keys")
    parser.add_argument("--redis-requests", type=int, default=2000, help="per Redis variant")
    args = parser.parse_args()
    items = workload(args.keys)

    print(f"CPython {platform.python_version()} on {platform.machine()}, {args.keys} keys")
    print()
    print("| variant | p50 µs/request | p99 µs/request | best batch µs/request |")
    print("|---|---:|---:|---:|")
    clock = [START]
    # Every key its own path (an id in the URL): new_target's route cache misses.
    distinct = workload(args.keys, paths=args.keys)
    variants: list[tuple[str, Callable[[RequestContext, AuditEvent], None]]] = [
        (
            "monitor, all 7 detectors",
            monitor_step(AnomalyMonitor(all_detectors(), clock=lambda: clock[0]), clock),
        ),
        (
            "monitor, all 7 detectors, a distinct path per key",
            monitor_step(AnomalyMonitor(all_detectors(), clock=lambda: clock[0]), clock),
        ),
        (
            "monitor, default 5 detectors",
            monitor_step(AnomalyMonitor(all_detectors()[:5], clock=lambda: clock[0]), clock),
        ),
        (
            "monitor, brute force by client only",
            monitor_step(AnomalyMonitor(all_detectors()[:1], clock=lambda: clock[0]), clock),
        ),
        ("secmw metrics observer", SecurityMetrics().observe),
        ("prometheus_client, same counting", prometheus_step()),
    ]
    # Variants run interleaved in rounds, so load from elsewhere hits them alike.
    rounds = 10
    results: dict[str, list[float]] = {name: [] for name, _ in variants}
    workloads = {name: distinct if "distinct" in name else items for name, _ in variants}
    for name, step in variants:
        for ctx, event in workloads[name]:  # warm-up: every key has state
            step(ctx, event)
    for _ in range(rounds):
        for name, step in variants:
            per_request(step, workloads[name], args.seconds / rounds, results[name])
    for name, _ in variants:
        p50, p99 = percentiles(results[name])
        # The best batch is the one other processes disturbed least.
        print(f"| {name} | {p50:.2f} | {p99:.2f} | {min(results[name]):.2f} |")

    print()
    print("| detector | bytes per tracked key |")
    print("|---|---:|")
    subjects = [
        Principal(subject=f"user-{i}", auth_method="jwt", credential_id=f"jti:{i}")
        for i in range(args.keys)
    ]
    contexts = [ctx for ctx, _ in items]

    def request_feed(detector: Detector, index: int) -> None:
        ctx = contexts[index]
        ctx.principal = subjects[index]
        detector.check(ctx, None, START + index * 0.001)

    def failure_feed(detector: Detector, index: int) -> None:
        ctx = contexts[index]
        event = AuditEvent(
            "authn_token_invalid", "failure", client=ctx.client, subject=f"user-{index}", status=401
        )
        detector.check(ctx, event, START + index * 0.001)

    def denial_feed(detector: Detector, index: int) -> None:
        ctx = contexts[index]
        event = AuditEvent("authz_fail", "failure", subject=f"user-{index}", status=403)
        detector.check(ctx, event, START + index * 0.001)

    rows: list[tuple[str, Callable[[], Detector], Callable[[Detector, int], None]]] = [
        (
            "auth_failures_by_client (threshold 20)",
            lambda: AuthFailureBurst(key_kind="client"),
            failure_feed,
        ),
        (
            "auth_failures_by_subject (threshold 10)",
            lambda: AuthFailureBurst(key_kind="subject", threshold=10),
            failure_feed,
        ),
        ("token_reuse", TokenReuse, request_feed),
        ("rate_spike", RateSpike, request_feed),
        ("repeated_denials (threshold 20)", RepeatedDenials, denial_feed),
        ("new_target (one target)", NewTarget, request_feed),
        ("off_hours", OffHours, request_feed),
    ]
    for name, make, feed in rows:
        print(f"| {name} | {memory_per_key(make, args.keys, feed):.0f} |")
    print()
    print("Memory per key includes the key string itself (about 60 bytes here).", file=sys.stderr)
    if args.redis_requests:
        with redis_server() as url:
            if url is None:
                print("\nredis-server not found: Redis rows skipped")
            else:
                asyncio.run(shared_rows(url, workload(args.keys), args.redis_requests))


if __name__ == "__main__":
    main()
