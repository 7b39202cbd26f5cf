"""Audit file sink: request-path cost and writer throughput, next to structlog's BytesLogger.

Two questions, one run:

1. What does recording an event cost the request? For the file sink that is
   ``await sink.emit(event)`` (a state check, a context copy, a queue put) while
   the writer thread runs; for structlog's ``BytesLogger`` it is rendering the
   same event and writing the line directly (what a user would otherwise do).
2. How many events per second reach the disk, with each fsync policy? The sink
   is timed from the first ``emit`` until ``close()`` returns (everything
   written, chained and fsynced); BytesLogger writes the same events with
   ``os.fsync`` per event, every 1000 events, or never.

    python benchmarks/bench_audit.py [--events 100000] [--rounds 30]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import structlog

from secmw import Pipeline
from secmw.audit import AuditEvent, JSONLFileSink, verify_files


def make_events(count: int) -> list[AuditEvent]:
    return [
        AuditEvent(
            name="authz_allow" if n % 5 else "authz_fail",
            outcome="success" if n % 5 else "failure",
            severity="info" if n % 5 else "warning",
            request_id=f"req-{n:08d}",
            transport="http",
            method="GET",
            path=f"/api/items/{n % 997}",
            client="203.0.113.7",
            subject="alice",
            tenant="t1",
            auth_method="jwt",
            rule_ids=("readers",),
            reason="allowed by policy",
            status=200 if n % 5 else 403,
            latency_ms=0.412,
        )
        for n in range(count)
    ]


def structlog_logger(path: Path) -> tuple[Any, Any]:
    """structlog writing the same JSON lines straight to a file, as a user would."""
    handle = path.open("wb")
    encoder = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"), default=str)
    logger = structlog.wrap_logger(
        structlog.BytesLogger(handle),
        processors=[
            structlog.processors.add_log_level,
            lambda _l, _m, data: encoder.encode(data).encode(),
        ],
        cache_logger_on_first_use=True,
    )
    return logger, handle


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def request_path(folder: Path, events: list[AuditEvent], rounds: int) -> dict[str, Any]:
    """Per-event cost on the request path, interleaved rounds of len(events)."""
    sink = JSONLFileSink(
        folder / "rp.jsonl", queue_size=10**7, handle_sigterm=False, rotate_bytes=None
    )
    logger, handle = structlog_logger(folder / "rp-structlog.jsonl")
    pipeline = Pipeline(audit=sink)
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/api/items/7",
        "raw_path": b"/api/items/7",
        "query_string": b"",
        "headers": [(b"x-request-id", b"bench-1")],
        "client": ("203.0.113.7", 40000),
    }
    ctx = pipeline.context(scope)
    ctx.status = 200
    ours: list[float] = []
    record: list[float] = []
    theirs: list[float] = []
    sent = 0

    async def drained() -> None:
        # Let the writer catch up, so its share of the GIL is not billed to the next variant.
        while sink.seq < sent:  # noqa: ASYNC110 - the writer is a thread
            await anyio.sleep(0.001)

    for event in events[:1000]:  # warm-up
        await sink.emit(event)
        logger.info(**event.to_dict())
    sent += 1000
    for _ in range(rounds):
        await drained()
        start = time.perf_counter()
        for event in events:
            await sink.emit(event)
        ours.append((time.perf_counter() - start) / len(events) * 1e6)
        sent += len(events)
        await drained()
        start = time.perf_counter()
        for _event in events:
            await pipeline.record(ctx)
        record.append((time.perf_counter() - start) / len(events) * 1e6)
        sent += len(events)
        await drained()
        start = time.perf_counter()
        for event in events:
            logger.info(**event.to_dict())
        theirs.append((time.perf_counter() - start) / len(events) * 1e6)
    await sink.aclose()
    handle.close()
    return {"ours": ours, "record": record, "theirs": theirs}


def sink_throughput(
    folder: Path, events: list[AuditEvent], policy: str
) -> tuple[float, float, int]:
    path = folder / f"tp-{policy}.jsonl"
    sink = JSONLFileSink(
        path,
        fsync=policy,  # type: ignore[arg-type]
        fsync_every=1000,
        fsync_interval=0.2,
        queue_size=len(events) + 10,
        handle_sigterm=False,
        rotate_bytes=None,
    )

    async def fill() -> None:
        for event in events:
            await sink.emit(event)

    start, cpu = time.perf_counter(), time.process_time()
    anyio.run(fill)
    sink.close()
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    assert verify_files([path]).ok
    return len(events) / elapsed, len(events) / cpu, sink.written


def structlog_throughput(
    folder: Path, events: list[AuditEvent], every: int | None
) -> tuple[float, float]:
    logger, handle = structlog_logger(folder / f"tp-structlog-{every}.jsonl")
    fd = handle.fileno()
    start, cpu = time.perf_counter(), time.process_time()
    for n, event in enumerate(events, start=1):
        logger.info(**event.to_dict())
        if every is not None and n % every == 0:
            os.fsync(fd)
    handle.flush()
    os.fsync(fd)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    handle.close()
    return len(events) / elapsed, len(events) / cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--events", type=int, default=100_000, help="events per throughput run")
    parser.add_argument("--rounds", type=int, default=30, help="request-path rounds of 1000")
    parser.add_argument("--always-events", type=int, default=2000, help="events for fsync-always")
    args = parser.parse_args()
    events = make_events(args.events)
    print(
        f"secmw audit benchmark - Python {platform.python_version()} on {platform.machine()}, "
        f"{os.cpu_count()} CPUs, structlog {structlog.__version__}"
    )
    with tempfile.TemporaryDirectory(prefix="secmw-bench-audit-") as tmp:
        folder = Path(tmp)
        path_costs = anyio.run(request_path, folder, events[:1000], args.rounds)
        print("\nrequest path, us per event (rounds of 1000, writer thread running)")
        print(f"{'variant':<52} {'p50':>8} {'p99':>8}")
        for label, key in (
            ("secmw JSONLFileSink.emit (enqueue)", "ours"),
            ("secmw Pipeline.record (build the event + enqueue)", "record"),
            ("structlog BytesLogger, render + write", "theirs"),
        ):
            values = path_costs[key]
            print(f"{label:<52} {statistics.median(values):>8.2f} {pct(values, 0.99):>8.2f}")

        print(f"\nwriter throughput until everything is on disk ({args.events} events)")
        print("events/s by wall clock, and by this process's CPU time (less load-dependent)")
        print(f"{'variant':<56} {'wall ev/s':>10} {'CPU ev/s':>10}")
        rows: list[tuple[str, tuple[float, float]]] = []
        for policy in ("never", "batch"):
            wall, cpu, written = sink_throughput(folder, events, policy)
            assert written == len(events)
            label = "secmw file sink, fsync " + (
                "never (at close)" if policy == "never" else "batch (1000 events / 200 ms)"
            )
            rows.append((label, (wall, cpu)))
        always_events = events[: args.always_events]
        wall, cpu, _ = sink_throughput(folder, always_events, "always")
        rows.append((f"secmw file sink, fsync always ({len(always_events)} events)", (wall, cpu)))
        never = structlog_throughput(folder, events, None)
        rows.append(("structlog BytesLogger, fsync never (at end)", never))
        every = structlog_throughput(folder, events, 1000)
        rows.append(("structlog BytesLogger, fsync every 1000", every))
        each = structlog_throughput(folder, always_events, 1)
        rows.append((f"structlog BytesLogger, fsync every event ({len(always_events)})", each))
        for label, (wall, cpu) in rows:
            print(f"{label:<56} {wall:>10,.0f} {cpu:>10,.0f}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
