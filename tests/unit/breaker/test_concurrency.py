"""Many concurrent slow calls through one breaker take no longer than without it."""

from __future__ import annotations

import time

import anyio
import pytest

from secmw.breaker import Breaker, State

pytestmark = pytest.mark.anyio

CALLS = 200
SLEEP = 0.2


async def run_all(wrap: bool) -> float:
    breaker = Breaker("slow", window_size=CALLS, minimum_calls=CALLS, slow_call_duration=10)

    async def slow_call() -> None:
        await anyio.sleep(SLEEP)

    async def one() -> None:
        if wrap:
            await breaker.call(slow_call)
        else:
            await slow_call()

    started = time.perf_counter()
    async with anyio.create_task_group() as tasks:
        for _ in range(CALLS):
            tasks.start_soon(one)
    elapsed = time.perf_counter() - started
    if wrap:
        assert breaker.snapshot().calls == CALLS
        assert breaker.state is State.CLOSED
    return elapsed


async def test_no_lock_is_held_across_the_wrapped_call() -> None:
    bare = await run_all(wrap=False)
    guarded = await run_all(wrap=True)
    # Serialised calls would take CALLS * SLEEP = 40 s; concurrent ones about SLEEP.
    assert guarded < 2.0
    assert guarded < bare + 0.5
