"""Circuit-breaker overhead per call: secmw against pybreaker and purgatory, in one run.

Closed path: a successful call through a closed breaker. Open path: a call that
the open breaker refuses. Each figure is the per-call time minus the bare
``await fn()`` loop, in nanoseconds (best of several rounds, so noise from the
shared machine inflates nothing). Variants run interleaved.

    python benchmarks/bench_breaker.py [--calls 20000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pybreaker
from purgatory import AsyncCircuitBreakerFactory
from purgatory.domain.model import OpenedState

from secmw.breaker import Breaker, CircuitOpen

Loop = Callable[[int], Awaitable[float]]


async def work() -> int:
    return 1


async def fail() -> int:
    raise RuntimeError("down")


def timed(body: Callable[[], Awaitable[Any]]) -> Loop:
    async def loop(calls: int) -> float:
        started = time.perf_counter_ns()
        for _ in range(calls):
            await body()
        return (time.perf_counter_ns() - started) / calls

    return loop


def timed_refusal(body: Callable[[], Awaitable[Any]], error: type[BaseException]) -> Loop:
    async def loop(calls: int) -> float:
        started = time.perf_counter_ns()
        for _ in range(calls):
            try:  # noqa: SIM105 - suppress() would add its own cost to the timing
                await body()
            except error:
                pass
        return (time.perf_counter_ns() - started) / calls

    return loop


async def variants() -> dict[str, tuple[Loop, Loop | None]]:
    secmw_closed = Breaker("bench", window_size=100, minimum_calls=100)
    secmw_open = Breaker("bench-open", window_size=1, minimum_calls=1, open_duration=3600)
    with contextlib.suppress(RuntimeError):
        await secmw_open.call(fail)

    py_closed = pybreaker.CircuitBreaker(fail_max=100)
    py_open = pybreaker.CircuitBreaker(fail_max=1, reset_timeout=3600)
    py_open.open()

    factory = AsyncCircuitBreakerFactory(default_threshold=100, default_ttl=3600)
    await factory.initialize()
    pg_closed = await factory.get_breaker("closed")
    open_factory = AsyncCircuitBreakerFactory(default_threshold=1, default_ttl=3600)
    await open_factory.initialize()
    try:
        async with await open_factory.get_breaker("open"):
            raise RuntimeError("down")
    except RuntimeError:
        pass
    pg_open = await open_factory.get_breaker("open")
    assert isinstance(pg_open.context._state, OpenedState)  # sanity check

    async def secmw_async_with() -> int:
        async with secmw_closed:
            return await work()

    async def secmw_guard() -> int:
        async with secmw_closed.guard():
            return await work()

    async def purgatory_closed() -> int:
        async with pg_closed:
            return await work()

    async def purgatory_open() -> int:
        async with pg_open:
            return await work()

    async def pybreaker_closed() -> int:
        # pybreaker's call_async needs tornado; the closed-path check is the sync API.
        return py_closed.call(lambda: 1)

    async def pybreaker_open() -> int:
        return py_open.call(lambda: 1)

    async def secmw_open_call() -> int:
        return await secmw_open.call(work)

    return {
        "bare await fn()": (timed(work), None),
        "secmw Breaker.call": (
            timed(lambda: secmw_closed.call(work)),
            timed_refusal(secmw_open_call, CircuitOpen),
        ),
        "secmw async with": (timed(secmw_async_with), None),
        "secmw async with guard()": (timed(secmw_guard), None),
        "pybreaker 1.4 (sync call)": (
            timed(pybreaker_closed),
            timed_refusal(pybreaker_open, pybreaker.CircuitBreakerError),
        ),
        "purgatory 3.0 async with": (
            timed(purgatory_closed),
            timed_refusal(purgatory_open, Exception),
        ),
    }


async def main(calls: int, rounds: int) -> None:
    table = await variants()
    closed: dict[str, list[float]] = {name: [] for name in table}
    opened: dict[str, list[float]] = {name: [] for name, (_, o) in table.items() if o}
    for closed_loop, open_loop in table.values():  # warm-up
        await closed_loop(calls // 10)
        if open_loop:
            await open_loop(calls // 10)
    for _ in range(rounds):
        for name, (closed_loop, open_loop) in table.items():
            closed[name].append(await closed_loop(calls))
            if open_loop:
                opened[name].append(await open_loop(calls))
    base = min(closed["bare await fn()"])
    print(f"# breaker overhead, {calls} calls x {rounds} rounds, best round")
    print(f"# {platform.python_implementation()} {sys.version.split()[0]}, {platform.machine()}")
    print(f"{'variant':32} {'closed ns':>10} {'+closed ns':>11} {'open ns':>9}")
    for name in table:
        best = min(closed[name])
        refused = f"{min(opened[name]):9.0f}" if name in opened else f"{'-':>9}"
        print(f"{name:32} {best:10.0f} {best - base:11.0f} {refused}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=7)
    arguments = parser.parse_args()
    anyio.run(main, arguments.calls, arguments.rounds)
