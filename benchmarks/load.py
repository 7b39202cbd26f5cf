"""Load test: the demo app under uvicorn, protected by secmw and bare, in one run.

For each variant a uvicorn server process is started on 127.0.0.1 and driven from
this separate process: first 1,000 concurrent keep-alive connections each send a
request, then a sustained fixed rate (1,000 requests/s by default) is spread over
those connections for the given duration. Reported per phase: requests, errors,
p50/p95/p99 latency (ms); for the sustained phase the achieved throughput too (its
requests over its own time), and the server's peak RSS. A sustained request's
latency counts from the moment it was due, so a client that fell behind shows.
Before measuring, the protected server must refuse a request without a token
(401) and admit one with it.

    python benchmarks/load.py [--connections 1000] [--rate 1000] [--duration 60]

Bounded: every request has a timeout, the run stops after its duration, and the
servers are stopped at the end. Only 127.0.0.1 is contacted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from secmw.testing import TokenIssuer

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 10.0


@dataclass
class Result:
    """What one variant's run produced."""

    burst: list[float] = field(default_factory=list)  # phase 1, every connection at once
    latencies: list[float] = field(default_factory=list)  # phase 2, the sustained rate
    burst_errors: int = 0
    errors: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    elapsed: float = 0.0  # the sustained phase, until its last answer
    sending: float = 0.0  # the sustained phase, until its last request was sent
    peak_rss_kib: int = 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = min(hard, max(soft, needed))
    if wanted > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    if wanted < needed:
        sys.exit(f"need {needed} file descriptors, the hard limit is {hard}")


def peak_rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class Connection:
    """One keep-alive HTTP/1.1 connection sending GET requests, one at a time."""

    def __init__(self, port: int, request: bytes) -> None:
        self.port = port
        self.request = request
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)

    async def get(self) -> int:
        if self.reader is None or self.writer is None:
            await self.open()
        assert self.reader is not None
        assert self.writer is not None
        self.writer.write(self.request)
        await self.writer.drain()
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if length:
            await self.reader.readexactly(length)
        return status

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def drive(
    port: int, request: bytes, connections: int, rate: float, duration: float
) -> Result:
    result = Result()
    pool = [Connection(port, request) for _ in range(connections)]
    await asyncio.gather(*(c.open() for c in pool))

    async def one(connection: Connection, started: float, burst: bool = False) -> None:
        try:
            status = await asyncio.wait_for(connection.get(), TIMEOUT)
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
            status = 0
            connection.close()
            connection.reader = connection.writer = None
        else:
            result.statuses[status] = result.statuses.get(status, 0) + 1
        if status != 200:
            if burst:
                result.burst_errors += 1
            else:
                result.errors += 1
            return
        (result.burst if burst else result.latencies).append(
            (time.perf_counter() - started) * 1000.0
        )

    # Phase 1: every connection busy at once.
    start = time.perf_counter()
    await asyncio.gather(*(one(c, start, burst=True) for c in pool))
    # Phase 2: a fixed rate, each request on the next connection in turn.
    interval = 1.0 / rate
    total = int(rate * duration)
    begin = time.perf_counter()
    tasks: list[asyncio.Task[None]] = []
    busy: set[int] = set()
    for index in range(total):
        due = begin + index * interval
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        slot = index % connections
        if slot in busy:  # the connection is still waiting: count it, never pipeline
            result.errors += 1
            continue
        busy.add(slot)
        task = asyncio.create_task(one(pool[slot], due))
        task.add_done_callback(lambda _t, s=slot: busy.discard(s))
        tasks.append(task)
    result.sending = time.perf_counter() - begin
    await asyncio.gather(*tasks)
    result.elapsed = time.perf_counter() - begin
    for connection in pool:
        connection.close()
    return result


def serve(mode: str, port: int, jwk_path: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "SECMW_LOAD_MODE": mode,
        "SECMW_LOAD_JWK": jwk_path,
        "SECMW_LOAD_AUDIT": str(Path(jwk_path).with_suffix(".audit.jsonl")),
        "PYTHONPATH": str(ROOT),
    }
    command = [sys.executable, "-m", "uvicorn", "benchmarks.load_app:create", "--factory"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "error"]
    command += ["--no-access-log", "--backlog", "4096"]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    sys.exit(f"the {mode} server did not start")


def run_variant(mode: str, args: argparse.Namespace, jwk_path: str, token: str) -> Result:
    port = free_port()
    process = serve(mode, port, jwk_path)
    try:
        auth = f"Authorization: Bearer {token}\r\n" if mode == "protected" else ""
        request = f"GET /api/me HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{auth}\r\n".encode()
        if mode == "protected":
            asyncio.run(check_enforced(port, request))
        result = asyncio.run(drive(port, request, args.connections, args.rate, args.duration))
        result.peak_rss_kib = peak_rss_kib(process.pid)
        return result
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


async def check_enforced(port: int, request: bytes) -> None:
    """The protected server refuses a request without a token and admits one with it."""
    anonymous = f"GET /api/me HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    statuses = []
    for sent in (anonymous, request):
        connection = Connection(port, sent)
        try:
            statuses.append(await asyncio.wait_for(connection.get(), TIMEOUT))
        finally:
            connection.close()
    if statuses != [401, 200]:
        sys.exit(f"the protected server does not enforce: {statuses} (expected [401, 200])")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=1000.0, help="requests per second")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of sustained load")
    args = parser.parse_args()
    raise_fd_limit(args.connections * 2 + 64)
    issuer = TokenIssuer(issuer="https://demo.secmw.invalid", audience="secmw-demo", kid="load")
    token = issuer.mint("load-user", expires_in=args.duration * 4 + 600)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(issuer.jwt_config(), handle)
        jwk_path = handle.name
    try:
        results = {mode: run_variant(mode, args, jwk_path, token) for mode in ("bare", "protected")}
    finally:
        for leftover in Path(jwk_path).parent.glob(Path(jwk_path).stem + "*"):
            leftover.unlink()
    print(
        f"load: {args.connections} keep-alive connections, {args.rate:.0f} req/s for "
        f"{args.duration:.0f} s, GET /api/me, uvicorn (1 worker) on 127.0.0.1"
    )
    # "sent/s": requests over the time it took to send them (the offered load kept up);
    # "done/s": answers over the phase until its last answer.
    columns = ("requests", "errors", "sent/s", "done/s", "p50 ms", "p95 ms", "p99 ms", "max ms")
    widths = (9, 7, 7, 7, 8, 8, 8, 8)
    header = f"{'variant':24} " + " ".join(
        f"{c:>{w}}" for c, w in zip(columns, widths, strict=True)
    )
    print(header + "  peak RSS MiB")
    for mode, result in results.items():
        rows = (
            (f"{mode}, burst", result.burst, result.burst_errors, None),
            (f"{mode}, sustained", result.latencies, result.errors, result),
        )
        for label, values, errors, owner in rows:
            if owner is not None:
                sent = (len(values) + errors) / max(owner.sending, 1e-9)
                rates = f"{sent:7.0f} {len(values) / max(owner.elapsed, 1e-9):7.0f}"
                rss = f"{owner.peak_rss_kib / 1024:14.1f}"
            else:
                rates, rss = " " * 15, ""
            print(
                f"{label:24} {len(values):9d} {errors:7d} {rates} "
                f"{statistics.median(values) if values else 0:8.2f} "
                f"{percentile(values, 0.95):8.2f} {percentile(values, 0.99):8.2f} "
                f"{max(values, default=0.0):8.2f}{rss}"
            )
    failed = any(result.errors or result.burst_errors for result in results.values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
