"""secmw's rate limiter against slowapi, on the same Starlette app and the same limits.

Variants: the bare Starlette app; secmw's middleware (rate limiting only) around
it; slowapi's ``SlowAPIASGIMiddleware`` with ``default_limits``; slowapi's
``@limiter.limit`` decorator. Each with one, three and five tiers (limits keyed
by client address, high enough never to refuse), in memory and in Redis (a
``redis-server`` started here on 127.0.0.1, stopped at the end). Requests are
direct ASGI calls, interleaved round by round. "+p50" is the added cost over the
bare app per request; "+best" the same from the fastest round's mean (the figure
least disturbed by other load on the machine). "trips/req" counts what the Redis
clients actually sent (``send_packed_command`` calls: a pipeline or a script is one).

    python benchmarks/bench_ratelimit.py [--requests 20000] [--redis-requests 1500]
"""

from __future__ import annotations

import argparse
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import time
import tracemalloc
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import anyio
import redis
import redis.asyncio.connection
import redis.connection
from slowapi import Limiter
from slowapi.middleware import SlowAPIASGIMiddleware
from slowapi.util import get_remote_address
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from secmw import SecurityMiddleware
from secmw.ratelimit import MemoryStore
from secmw.ratelimit.algorithms import ALGORITHMS, Limit

RATES = ["100000000/minute", "1000000000/hour", "10000000000/day", "100000000/30 minutes"]
RATES += ["1000000000/2 hours"]

TRIPS = {"count": 0}


def count_round_trips() -> None:
    """Count every packed send of both redis-py clients (one per round trip)."""
    for module in (redis.connection, redis.asyncio.connection):
        cls: Any = module.AbstractConnection
        original = cls.send_packed_command

        if module is redis.connection:

            def sync_send(self: Any, *args: Any, _o: Any = original, **kw: Any) -> Any:
                TRIPS["count"] += 1
                return _o(self, *args, **kw)

            cls.send_packed_command = sync_send
        else:

            async def async_send(self: Any, *args: Any, _o: Any = original, **kw: Any) -> Any:
                TRIPS["count"] += 1
                return await _o(self, *args, **kw)

            cls.send_packed_command = async_send


async def endpoint(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


def starlette_app() -> Starlette:
    return Starlette(routes=[Route("/api/items", endpoint)])


def secmw_app(tiers: int, url: str) -> Any:
    config = {
        "auth": {"allow_anonymous": True},
        "audit": {"sink": "none"},
        "request_id": {"echo": False},
        "ratelimit": {
            "storage": {"url": url, "prefix": f"bench{tiers}"},
            "tiers": [{"name": f"t{i}", "key": "ip", "rate": RATES[i]} for i in range(tiers)],
            "headers": "draft",
        },
    }
    return SecurityMiddleware(starlette_app(), config)


def slowapi_middleware_app(tiers: int, url: str) -> Any:
    app = starlette_app()
    app.state.limiter = Limiter(
        key_func=get_remote_address,
        default_limits=RATES[:tiers],
        storage_uri=url,
        headers_enabled=True,
        key_prefix=f"mw{tiers}",
    )
    app.add_middleware(SlowAPIASGIMiddleware)
    return app


def slowapi_decorator_app(tiers: int, url: str) -> Any:
    limiter = Limiter(
        key_func=get_remote_address,
        storage_uri=url,
        headers_enabled=True,
        key_prefix=f"dec{tiers}",
    )

    @limiter.limit(";".join(RATES[:tiers]))
    async def limited(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    app = Starlette(routes=[Route("/api/items", limited)])
    app.state.limiter = limiter
    return app


SCOPE = {
    "type": "http",
    "asgi": {"version": "3.0"},
    "http_version": "1.1",
    "method": "GET",
    "scheme": "http",
    "path": "/api/items",
    "raw_path": b"/api/items",
    "root_path": "",
    "query_string": b"",
    "headers": [(b"host", b"bench.local")],
    "client": ("127.0.0.1", 50000),
    "server": ("127.0.0.1", 8000),
}


async def receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


class Send:
    status = 0

    async def __call__(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]


async def measure(
    variants: list[tuple[str, Any]], requests: int, rounds: int
) -> dict[str, tuple[list[float], float, float]]:
    """Per variant: per-request samples (us), the best round's mean (us), round trips."""
    samples: dict[str, list[float]] = {name: [] for name, _ in variants}
    best: dict[str, float] = dict.fromkeys(samples, float("inf"))
    trips: dict[str, int] = dict.fromkeys(samples, 0)
    clock = time.perf_counter_ns
    send = Send()
    for name, app in variants:  # warm-up: connections, scripts, caches
        for _ in range(100):
            await app(dict(SCOPE), receive, send)
            assert send.status == 200, (name, send.status)
    per_round = max(1, requests // rounds)
    for _ in range(rounds):
        for name, app in variants:
            bucket = samples[name]
            before = TRIPS["count"]
            round_started = clock()
            for _ in range(per_round):
                scope = dict(SCOPE)
                started = clock()
                await app(scope, receive, send)
                bucket.append((clock() - started) / 1000.0)
            best[name] = min(best[name], (clock() - round_started) / 1000.0 / per_round)
            trips[name] += TRIPS["count"] - before
    return {
        name: (values, best[name], trips[name] / len(values)) for name, values in samples.items()
    }


@contextmanager
def redis_server() -> Iterator[str | None]:
    binary = shutil.which("redis-server")
    if binary is None:
        yield None
        return
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        client = redis.Redis(port=port)
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        client.close()
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.kill()
        process.wait()


def table(
    title: str, results: dict[str, tuple[list[float], float, float]], show_trips: bool
) -> None:
    base_values, base_best, _ = results["bare Starlette app"]
    base = statistics.median(base_values)
    print(f"\n{title}")
    head = f"{'variant':40} {'p50 us':>8} {'p99 us':>8} {'+p50 us':>8} {'+best us':>8}"
    print(head + (f" {'trips/req':>9}" if show_trips else ""))
    for name, (values, best, trips) in results.items():
        ordered = sorted(values)
        p50, p99 = statistics.median(values), ordered[int(0.99 * (len(ordered) - 1))]
        line = f"{name:40} {p50:8.2f} {p99:8.2f} {p50 - base:8.2f} {best - base_best:8.2f}"
        print(line + (f" {trips:9.2f}" if show_trips else ""))


def variants_for(url: str) -> list[tuple[str, Any]]:
    found: list[tuple[str, Any]] = [
        ("bare Starlette app", starlette_app()),
        ("secmw, no tiers (floor)", secmw_app(0, url)),
    ]
    builders: list[tuple[str, Callable[[int, str], Any]]] = [
        ("secmw", secmw_app),
        ("slowapi ASGI middleware", slowapi_middleware_app),
        ("slowapi @limiter.limit", slowapi_decorator_app),
    ]
    for tiers in (1, 3, 5):
        for label, build in builders:
            found.append((f"{label}, {tiers} tier{'s' if tiers > 1 else ''}", build(tiers, url)))
    return found


def bytes_per_key(keys: int = 20000) -> None:
    """Memory held by the memory store per key, by algorithm (one hit per key)."""
    print(f"\nmemory store, bytes per key ({keys} keys of a principal-like id, one hit each)")
    for algorithm in ALGORITHMS:
        limit = Limit("t", "t:60", "t", algorithm, 100, 60.0, 100)
        names = [f"p:user-{index:08d}" for index in range(keys)]  # the key strings themselves
        store = MemoryStore(clock=lambda: 1000.0)  # a still clock: nothing expires meanwhile
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        for name in names:
            store.apply([(limit, (name,), 1)])
        assert len(store) == keys
        after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        print(f"{algorithm:24} {(after - before) / keys:8.0f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000, help="memory: requests per variant")
    parser.add_argument("--redis-requests", type=int, default=1500, help="redis: per variant")
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    warnings.simplefilter("ignore", DeprecationWarning)  # slowapi's own
    count_round_trips()
    print(
        f"secmw rate limiting vs slowapi: Python {platform.python_version()}, "
        f"{platform.machine()}, asyncio"
    )
    memory = anyio.run(measure, variants_for("memory://"), args.requests, args.rounds)
    table(f"memory storage, {args.requests} requests per variant", memory, False)
    bytes_per_key()
    with redis_server() as url:
        if url is None:
            print("\nredis-server not found: Redis rows skipped")
            return 0
        results = anyio.run(measure, variants_for(url), args.redis_requests, args.rounds)
        table(f"Redis storage (local), {args.redis_requests} requests per variant", results, True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
