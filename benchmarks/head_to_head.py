"""Head to head: the full secmw chain against the stack a team would otherwise assemble.

Both wrap the same Starlette app (one route answering a 1 KiB JSON document with a
Stripe-format key in it); see ``benchmarks/h2h_app.py`` for exactly what each stack
holds. Every request is a direct ASGI call (no server, no sockets). Before measuring,
each stack is checked to really enforce: a valid token passes with the secret
removed from the body, no token and a tampered token get 401, a role the policy
does not allow gets 403, and a request over a (lowered) limit gets 429.

Variants run interleaved, round by round, each for the same slice of time, after a
warm-up, until ``--seconds`` have passed. Prints p50/p99 per request and the
overhead over the bare app (the difference of the percentiles), in microseconds,
and the mean (wall time / requests, so it includes GC and the audit writer thread:
after each slice of a variant with an audit file, the wait until its writer thread
has drained the queue is counted to that variant).

    python benchmarks/head_to_head.py [--seconds 60] [--slice 0.25]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Awaitable, Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import h2h_app as h2h

App = Callable[[dict[str, Any], Any, Any], Awaitable[None]]
LOW_RATES = ("2/minute", "100/hour", "1000/day")
TARGET_P50, TARGET_P99 = 50.0, 150.0


def scope_for(token: str | None, path: str = h2h.PATH) -> dict[str, Any]:
    headers = [(b"host", b"bench.local"), (b"user-agent", b"bench/1"), (b"accept", b"*/*")]
    if token is not None:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


async def receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def discard(message: dict[str, Any]) -> None:
    return None


async def call(app: App, token: str | None) -> tuple[int, bytes]:
    messages: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    await app(scope_for(token), receive, send)
    status = next(m["status"] for m in messages if m["type"] == "http.response.start")
    return status, b"".join(m.get("body", b"") for m in messages[1:])


def tampered(token: str) -> str:
    head, payload, signature = token.split(".")
    flipped = ("A" if signature[10] != "A" else "B").join((signature[:10], signature[11:]))
    return f"{head}.{payload}.{flipped}"


async def verify(
    name: str, app: App, limited: App, token: str, other_role: str
) -> tuple[str, list[str]]:
    """Check that one stack enforces; returns its row and the failed checks."""
    failed: list[str] = []
    status, body = await call(app, token)
    secret_gone = h2h.SECRET.encode() not in body
    expected = json.loads(h2h.BODY)
    try:
        parsed = json.loads(body)
        parsed["billing"]["api_key"] = expected["billing"]["api_key"]
        valid = "same" if parsed == expected else "changed"
    except (ValueError, KeyError, TypeError):
        valid = "broken"
    if status != 200:
        failed.append(f"valid token: {status}")
    if not secret_gone:
        failed.append("secret left in the body")
    no_token = (await call(app, None))[0]
    bad = (await call(app, tampered(token)))[0]
    wrong = (await call(app, other_role))[0]
    for label, got, wanted in (("no token", no_token, 401), ("tampered", bad, 401)):
        if got != wanted:
            failed.append(f"{label}: {got}")
    if wrong != 403:
        failed.append(f"role not allowed: {wrong}")
    statuses = [(await call(limited, token))[0] for _ in range(3)]
    if statuses != [200, 200, 429]:
        failed.append(f"over the limit: {statuses}")
    row = (
        f"{name:42} {status:>5} {'yes' if secret_gone else 'NO':>7} {valid:>8} {no_token:>6} "
        f"{bad:>6} {wrong:>6} {statuses[-1]:>5}"
    )
    return row, failed


async def drained(app: App) -> None:
    """Wait until the app's audit writer thread (if any) has written what it was given."""
    pipeline = getattr(app, "pipeline", None)
    writer = getattr(getattr(pipeline, "audit", None), "_writer", None)
    if writer is None:
        return
    # Its wait between batches is idle time, not work: cut it short.
    writer.nudge()
    while not writer.queue.empty() or writer._backlog:  # a thread: no event to wait on
        await asyncio.sleep(0.0005)
        writer.nudge()


async def measure(
    variants: list[tuple[str, App]], token: str, seconds: float, slice_: float
) -> tuple[dict[str, list[float]], dict[str, float]]:
    samples: dict[str, list[float]] = {name: [] for name, _ in variants}
    busy: dict[str, float] = dict.fromkeys(samples, 0.0)
    clock = time.perf_counter_ns
    template = scope_for(token)
    for _name, app in variants:  # warm-up: imports, caches, first-call paths
        until = time.perf_counter() + min(1.0, slice_ * 2)
        while time.perf_counter() < until:
            await app(dict(template), receive, discard)
    deadline = time.perf_counter() + seconds
    turn = 0
    while time.perf_counter() < deadline:
        order = variants[turn % len(variants) :] + variants[: turn % len(variants)]
        turn += 1
        for name, app in order:
            bucket = samples[name]
            began = time.perf_counter()
            until = began + slice_
            while True:
                fresh = dict(template)
                started = clock()
                await app(fresh, receive, discard)
                bucket.append((clock() - started) / 1000.0)
                if started / 1e9 >= until:
                    break
            # The audit file is written by a thread: let it catch up, on this variant's time.
            await drained(app)
            busy[name] += time.perf_counter() - began
    means = {name: busy[name] / len(samples[name]) * 1e6 for name in samples}
    return samples, means


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def run(args: argparse.Namespace, directory: Path) -> int:
    issuer = h2h.make_issuer()
    token = h2h.mint(issuer)
    other_role = h2h.mint(issuer, roles=("team3",))
    secmw = h2h.secmw_app(issuer, directory)
    stacks: list[tuple[str, App, App]] = [
        ("secmw (full chain)", secmw, h2h.secmw_app(issuer, directory / "low", LOW_RATES)),
    ]
    peers = [
        ("peer: PyJWT", {"backend": "pyjwt"}),
        ("peer: Authlib", {"backend": "authlib"}),
        ("peer: PyJWT + token dict cache", {"backend": "pyjwt+cache"}),
        ("peer: PyJWT, no secret scanning", {"backend": "pyjwt", "scan": False}),
    ]
    for name, options in peers:
        low = h2h.peer_app(issuer, directory / "low", rates=LOW_RATES, **options)
        stacks.append((name, h2h.peer_app(issuer, directory, **options), low))
    print(
        "Enforcement checks: status for a valid token, whether the secret is gone and the rest\n"
        "of the JSON the same, then status with no token, a forged signature, a role the\n"
        "policy refuses, and the third request at 2/minute."
    )
    print(
        f"{'stack':42} {'valid':>5} {'gone':>7} {'data':>8} {'none':>6} {'forged':>6} "
        f"{'role':>6} {'limit':>5}"
    )
    problems: list[str] = []
    for name, app, limited in stacks:
        row, failed = await verify(name, app, limited, token, other_role)
        print(row)
        problems.extend(f"{name}: {item}" for item in failed)
    # "no secret scanning" leaves the secret in by design; anything else is fatal.
    fatal = [p for p in problems if not p.startswith(f"{peers[-1][0]}: secret")]
    if fatal:
        print("\nnot measured, a stack does not enforce:\n  " + "\n  ".join(fatal))
        return 1
    print("  (the 'no secret scanning' variant leaves the secret in: it shows where time goes)\n")
    variants: list[tuple[str, App]] = [("bare app", h2h.bare_app())]
    variants += [(name, app) for name, app, _ in stacks]
    batched = None
    if args.audit_batch_ms is not None:  # the same chain, its audit writer batching
        batched = h2h.secmw_app(issuer, directory / "batched", audit_batch_ms=args.audit_batch_ms)
        variants.insert(2, (f"secmw, audit batch_interval_ms = {args.audit_batch_ms}", batched))
    if args.breakdown:  # secmw stage by stage, each row adding one to the one above
        for count in range(1, len(h2h.STAGES)):
            stages = h2h.STAGES[:count]
            label = "secmw: " + " + ".join(stages)
            variants.insert(1 + count - 1, (label, h2h.secmw_app(issuer, directory, stages=stages)))
    samples, means = await measure(variants, token, args.seconds, args.slice)
    base = samples["bare app"]
    base_p50, base_p99 = statistics.median(base), percentile(base, 0.99)
    print(
        f"{'variant':42} {'requests':>9} {'p50 us':>9} {'p99 us':>9} {'+p50 us':>9} "
        f"{'+p99 us':>9} {'mean us':>9}"
    )
    for name, values in samples.items():
        p50, p99 = statistics.median(values), percentile(values, 0.99)
        print(
            f"{name:42} {len(values):9d} {p50:9.1f} {p99:9.1f} {p50 - base_p50:9.1f} "
            f"{p99 - base_p99:9.1f} {means[name]:9.1f}"
        )
    ours = samples["secmw (full chain)"]
    added50 = statistics.median(ours) - base_p50
    added99 = percentile(ours, 0.99) - base_p99
    verdict50 = "met" if added50 < TARGET_P50 else f"missed by {added50 - TARGET_P50:.1f} us"
    verdict99 = "met" if added99 < TARGET_P99 else f"missed by {added99 - TARGET_P99:.1f} us"
    print(
        f"\ntargets: secmw adds < {TARGET_P50:.0f} us p50 ({verdict50}), "
        f"< {TARGET_P99:.0f} us p99 ({verdict99})"
    )
    for _name, app, limited in stacks[:1]:
        for middleware in (app, limited):
            await middleware.pipeline.aclose()
    if batched is not None:
        await batched.pipeline.aclose()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="measuring time, in all")
    parser.add_argument("--slice", type=float, default=0.25, help="seconds per variant per round")
    parser.add_argument(
        "--breakdown", action="store_true", help="also secmw stage by stage (where the time goes)"
    )
    parser.add_argument(
        "--audit-batch-ms",
        type=int,
        help="also the full chain with this audit.file.batch_interval_ms",
    )
    args = parser.parse_args()
    warnings.simplefilter("ignore", DeprecationWarning)  # slowapi's and Authlib's own
    libraries = ("starlette", "pyjwt", "authlib", "slowapi", "pybreaker", "detect-secrets")
    print(
        f"secmw head to head: Python {platform.python_version()}, {platform.machine()}, asyncio, "
        + ", ".join(f"{lib} {version(lib)}" for lib in (*libraries, "structlog"))
    )
    print(f"app: GET {h2h.PATH} -> {len(h2h.BODY)} bytes of JSON; RS256 token; 100 rules\n")
    directory = Path(tempfile.mkdtemp(prefix="secmw-h2h-"))
    (directory / "low").mkdir()
    (directory / "batched").mkdir()
    try:
        return asyncio.run(run(args, directory))
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
