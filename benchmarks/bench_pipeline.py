"""Per-request overhead of SecurityMiddleware against the bare app, in one run.

Each request is a direct ASGI call (no server, no sockets), so the figures are
the middleware's own cost. Variants are interleaved round by round so drift in
machine speed hits them all alike. Prints p50/p99 per request in microseconds and
the overhead of each variant over the bare app.

    python benchmarks/bench_pipeline.py [--requests 20000] [--backend asyncio|trio]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from secmw import SecurityMiddleware
from secmw.testing import TokenIssuer

App = Callable[[dict[str, Any], Any, Any], Awaitable[None]]

BODY = b'{"ok":true}'
START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"application/json"), (b"content-length", b"11")],
}
END = {"type": "http.response.body", "body": BODY, "more_body": False}


async def bare_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send(START)
    await send(END)


class NoOpMiddleware:
    """The cheapest possible pure-ASGI wrapper: a floor for any middleware."""

    def __init__(self, app: App) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


def scope_for(path: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
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
        "headers": [(b"host", b"bench.local"), (b"user-agent", b"bench/1"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


async def receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def send(message: dict[str, Any]) -> None:
    return None


def variants() -> list[tuple[str, App, dict[str, Any]]]:
    issuer = TokenIssuer(algorithm="ES256")
    token = issuer.mint("bench-user", scopes=["read"])
    plain = scope_for("/api/items/42", [])
    authed = scope_for("/api/items/42", [(b"authorization", f"Bearer {token}".encode())])
    open_config = {"auth": {"allow_anonymous": True}, "audit": {"sink": "none"}}
    jwt_config = {"auth": {"jwt": issuer.jwt_config(cache_size=0)}, "audit": {"sink": "none"}}
    cached_config = {"auth": {"jwt": issuer.jwt_config()}, "audit": {"sink": "none"}}
    closed_config = {"audit": {"sink": "none"}}
    return [
        ("bare app", bare_app, plain),
        ("no-op pure-ASGI wrapper", NoOpMiddleware(bare_app), plain),
        ("secmw, empty pipeline", SecurityMiddleware(bare_app, open_config), plain),
        (
            "secmw, default closed (401)",
            SecurityMiddleware(bare_app, closed_config),
            plain,
        ),
        ("secmw, JWT ES256 (uncached)", SecurityMiddleware(bare_app, jwt_config), authed),
        ("secmw, JWT ES256 (cached)", SecurityMiddleware(bare_app, cached_config), authed),
    ]


async def measure(requests: int, rounds: int) -> dict[str, list[float]]:
    chosen = variants()
    samples: dict[str, list[float]] = {name: [] for name, _, _ in chosen}
    clock = time.perf_counter_ns
    per_round = max(1, requests // rounds)
    for _name, app, scope in chosen:  # warm-up: imports, caches, first-call paths
        for _ in range(200):
            await app(dict(scope), receive, send)
    for _ in range(rounds):
        for name, app, scope in chosen:
            bucket = samples[name]
            for _ in range(per_round):
                fresh = dict(scope)
                started = clock()
                await app(fresh, receive, send)
                bucket.append((clock() - started) / 1000.0)
    return samples


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000, help="requests per variant")
    parser.add_argument("--rounds", type=int, default=20, help="interleaved rounds")
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    args = parser.parse_args()
    samples = anyio.run(measure, args.requests, args.rounds, backend=args.backend)
    base_p50 = statistics.median(samples["bare app"])
    base_p99 = percentile(samples["bare app"], 0.99)
    print(
        f"secmw pipeline overhead: {args.requests} requests per variant, backend {args.backend}, "
        f"Python {platform.python_version()}, {platform.machine()}"
    )
    print(f"{'variant':32} {'p50 us':>8} {'p99 us':>8} {'+p50 us':>8} {'+p99 us':>8}")
    for name, values in samples.items():
        p50, p99 = statistics.median(values), percentile(values, 0.99)
        print(f"{name:32} {p50:8.2f} {p99:8.2f} {p50 - base_p50:8.2f} {p99 - base_p99:8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
