"""The circuit breaker's transitions, on a fake clock."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import anyio
import pytest

from secmw.audit.base import AuditEvent
from secmw.breaker import Breaker, BreakerConfig, BreakerRegistry, CircuitOpen, State
from secmw.errors import ConfigError, ServiceUnavailable

pytestmark = pytest.mark.anyio


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Events:
    def __init__(self) -> None:
        self.events: list[AuditEvent] = []

    async def __call__(self, event: AuditEvent) -> None:
        self.events.append(event)

    @property
    def names(self) -> list[str]:
        return [event.name for event in self.events]


@dataclass
class Reply:
    status_code: int


def make(clock: FakeClock, events: Events | None = None, **options: Any) -> Breaker:
    settings: dict[str, Any] = {
        "window_size": 10,
        "minimum_calls": 4,
        "failure_rate_threshold": 50.0,
        "open_duration": 30.0,
        "half_open_calls": 2,
        "clock": clock,
        "emit": events,
    }
    settings.update(options)
    return Breaker("up", **settings)


async def ok() -> str:
    return "ok"


async def boom() -> None:
    raise RuntimeError("upstream down")


async def fail(breaker: Breaker, times: int = 1) -> None:
    for _ in range(times):
        with pytest.raises(RuntimeError):
            await breaker.call(boom)


async def test_closed_stays_closed_below_minimum_calls() -> None:
    clock = FakeClock()
    breaker = make(clock)
    await fail(breaker, 3)
    assert breaker.state is State.CLOSED
    assert breaker.snapshot().failures == 3


async def test_opens_when_failure_rate_reaches_threshold_and_fails_fast() -> None:
    clock, events = FakeClock(), Events()
    breaker = make(clock, events)
    assert await breaker.call(ok) == "ok"
    assert await breaker.call(ok) == "ok"
    await fail(breaker, 1)
    assert breaker.state is State.CLOSED  # 1/3 and below minimum calls
    await fail(breaker, 1)  # 2/4 = 50 %
    assert breaker.state is State.OPEN
    assert events.names == ["breaker_opened"]
    opened = events.events[0]
    assert opened.details["failure_rate"] == 50.0
    assert opened.details["open_seconds"] == 30.0
    assert opened.severity == "warning"
    called = False

    async def spy() -> None:
        nonlocal called
        called = True

    clock.advance(10)
    with pytest.raises(CircuitOpen) as info:
        await breaker.call(spy)
    assert not called
    assert isinstance(info.value, ServiceUnavailable)
    assert info.value.status == 503
    assert info.value.retry_after == pytest.approx(20.0)
    assert breaker.snapshot().rejected == 1


async def test_half_open_after_open_duration_then_closes_on_successful_probes() -> None:
    clock, events = FakeClock(), Events()
    breaker = make(clock, events)
    await fail(breaker, 4)
    assert breaker.state is State.OPEN
    clock.advance(30)
    assert breaker.available()
    assert await breaker.call(ok) == "ok"
    assert breaker.state is State.HALF_OPEN
    assert await breaker.call(ok) == "ok"
    assert breaker.state is State.CLOSED
    assert events.names == ["breaker_opened", "breaker_half_open", "breaker_closed"]
    assert breaker.snapshot().calls == 0  # the window starts afresh


async def test_half_open_reopens_on_failed_probes() -> None:
    clock, events = FakeClock(), Events()
    breaker = make(clock, events)
    await fail(breaker, 4)
    clock.advance(30)
    await fail(breaker, 1)
    assert breaker.state is State.HALF_OPEN
    await fail(breaker, 1)
    assert breaker.state is State.OPEN
    assert events.names == ["breaker_opened", "breaker_half_open", "breaker_opened"]


async def test_half_open_limits_concurrent_probes() -> None:
    clock = FakeClock()
    breaker = make(clock)
    await fail(breaker, 4)
    clock.advance(30)
    first = breaker.acquire()
    second = breaker.acquire()
    with pytest.raises(CircuitOpen):
        breaker.acquire()
    breaker.release(second)  # a cancelled probe gives its permit back
    third = breaker.acquire()
    breaker.record(first, failed=False, duration=0.0)
    breaker.record(third, failed=False, duration=0.0)
    assert breaker.state is State.CLOSED


async def test_open_duration_grows_with_repeated_openings_and_is_capped() -> None:
    clock, events = FakeClock(), Events()
    breaker = make(clock, events, open_duration_multiplier=2.0, max_open_duration=50.0)
    await fail(breaker, 4)
    durations = [events.events[-1].details["open_seconds"]]
    for _ in range(2):
        clock.advance(durations[-1])
        await fail(breaker, 2)  # both half-open probes fail
        durations.append(events.events[-1].details["open_seconds"])
    assert durations == [30.0, 50.0, 50.0]
    assert breaker.retry_after() == pytest.approx(50.0)
    clock.advance(50)
    await breaker.call(ok)
    await breaker.call(ok)
    assert breaker.state is State.CLOSED
    await fail(breaker, 4)
    assert events.events[-1].details["open_seconds"] == 30.0  # the streak was reset


async def test_a_long_outage_under_a_cap_keeps_the_circuit_open_for_the_cap() -> None:
    clock, events = FakeClock(), Events()
    breaker = make(clock, events, open_duration_multiplier=100.0, max_open_duration=300.0)
    await fail(breaker, 4)
    for _ in range(400):  # far past where 30 * 100 ** n overflows a float
        clock.advance(events.events[-1].details["open_seconds"])
        await fail(breaker, 2)
    assert events.events[-1].details["open_seconds"] == 300.0
    assert breaker.state is State.OPEN
    assert breaker.retry_after() == pytest.approx(300.0)
    with pytest.raises(CircuitOpen):
        breaker.acquire()


async def test_slow_calls_open_the_circuit() -> None:
    clock, events = FakeClock(), Events()
    breaker = make(clock, events, slow_call_duration=2.0, slow_call_rate_threshold=75.0)

    async def slow() -> str:
        clock.advance(2.5)
        return "late"

    for _ in range(3):
        assert await breaker.call(slow) == "late"
    assert breaker.state is State.CLOSED
    await breaker.call(ok)
    assert breaker.state is State.OPEN  # 3 slow of 4 = 75 %
    assert events.events[0].details["slow_call_rate"] == 75.0


async def test_failure_statuses_and_result_predicate() -> None:
    clock = FakeClock()
    breaker = make(clock, failure_statuses={503}, failure_result=lambda r: r == "bad")

    async def reply(value: Any) -> Any:
        return value

    await breaker.call(reply, Reply(503))
    await breaker.call(reply, Reply(404))
    await breaker.call(reply, "bad")
    assert breaker.snapshot().failures == 2


async def test_ignored_exceptions_and_cancellation_count_nothing() -> None:
    clock = FakeClock()
    breaker = make(clock, ignore_exceptions=(KeyError,), failure_exceptions=(RuntimeError,))

    async def key_error() -> None:
        raise KeyError("x")

    async def value_error() -> None:
        raise ValueError("x")

    with pytest.raises(KeyError):
        await breaker.call(key_error)
    with pytest.raises(ValueError, match="x"):
        await breaker.call(value_error)
    with anyio.CancelScope() as scope:
        scope.cancel()
        await breaker.call(anyio.sleep, 1)
    assert breaker.snapshot().calls == 0


async def test_a_timeout_inside_the_call_counts_one_around_it_does_not() -> None:
    # docs/breaker.md: the timeout belongs inside the call.
    breaker = make(FakeClock())

    async def hanging_with_timeout() -> None:
        with anyio.fail_after(0.01):
            await anyio.sleep(5)

    with pytest.raises(TimeoutError):
        await breaker.call(hanging_with_timeout)
    assert (breaker.snapshot().calls, breaker.snapshot().failures) == (1, 1)
    with anyio.move_on_after(0.01):
        await breaker.call(anyio.sleep, 5)
    assert (breaker.snapshot().calls, breaker.snapshot().failures) == (1, 1)


async def test_outcomes_from_an_earlier_state_are_ignored() -> None:
    clock = FakeClock()
    breaker = make(clock)
    late = breaker.acquire()  # admitted while closed
    await fail(breaker, 4)
    clock.advance(30)
    probe = breaker.acquire()
    breaker.record(late, failed=True, duration=0.0)  # ends during half-open: ignored
    assert breaker.state is State.HALF_OPEN
    breaker.record(probe, failed=False, duration=0.0)
    breaker.record(breaker.acquire(), failed=False, duration=0.0)
    assert breaker.state is State.CLOSED


async def test_count_window_slides() -> None:
    clock = FakeClock()
    breaker = make(clock, window_size=4, minimum_calls=4, failure_rate_threshold=75.0)
    await fail(breaker, 2)
    for _ in range(4):
        await breaker.call(ok)  # the failures slide out
    await fail(breaker, 2)
    assert breaker.state is State.CLOSED
    assert breaker.snapshot().failures == 2


async def test_time_window_forgets_old_seconds() -> None:
    clock = FakeClock()
    breaker = make(clock, window="time", window_size=10, minimum_calls=4)
    await fail(breaker, 3)
    clock.advance(11)
    await fail(breaker, 1)
    assert breaker.state is State.CLOSED
    assert breaker.snapshot().calls == 1
    await breaker.call(ok)
    clock.advance(5)
    await fail(breaker, 2)
    assert breaker.state is State.OPEN  # 3 of 4 inside the last 10 s


async def test_async_with_and_decorator_share_the_state() -> None:
    clock = FakeClock()
    breaker = make(clock)

    @breaker
    async def guarded(value: int) -> int:
        if value < 0:
            raise RuntimeError("negative")
        return value * 2

    assert await guarded(2) == 4
    for _ in range(2):
        with pytest.raises(RuntimeError):
            async with breaker:
                raise RuntimeError("down")
    assert breaker.snapshot().calls == 3
    async with breaker:
        pass
    assert breaker.state is State.OPEN  # 2 failures of 4
    with pytest.raises(CircuitOpen):
        await guarded(1)
    with pytest.raises(CircuitOpen):
        async with breaker:
            pytest.fail("the block must not run")


async def test_nested_async_with_on_two_breakers() -> None:
    clock = FakeClock()
    outer, inner = make(clock), Breaker("inner", clock=clock, minimum_calls=1)

    async def nested() -> None:
        async with outer:
            async with inner:
                pass
            raise RuntimeError("outer fails")

    with pytest.raises(RuntimeError):
        await nested()
    assert outer.snapshot().failures == 1
    assert inner.snapshot().failures == 0
    assert inner.snapshot().calls == 1


async def test_snapshot_is_json_ready() -> None:
    clock = FakeClock()
    breaker = make(clock)
    await fail(breaker, 4)
    data = breaker.snapshot().to_dict()
    assert data["state"] == "open"
    assert data["retry_after"] == 30
    assert data["failure_rate"] == 100.0


async def test_registry_keys_breakers_and_applies_overrides() -> None:
    clock, events = FakeClock(), Events()
    registry = BreakerRegistry(
        BreakerConfig(minimum_calls=2, window_size=4),
        overrides={"b": BreakerConfig(minimum_calls=1, window_size=1)},
        clock=clock,
        emit=events,
    )
    a, b = registry.get("a"), registry.get("b")
    assert registry.get("a") is a
    await fail(b, 1)
    assert b.state is State.OPEN
    assert a.state is State.CLOSED
    assert not registry.all_open()
    await fail(a, 2)
    assert registry.all_open()
    assert set(registry.snapshot()) == {"a", "b"}
    assert len(registry) == 2
    assert events.events[0].details["breaker"] == "b"


def test_constructor_and_config_validation() -> None:
    with pytest.raises(ValueError, match="window"):
        Breaker(window="sliding")
    with pytest.raises(ValueError, match=">= 1"):
        Breaker(half_open_calls=0)
    from secmw.config import parse_config

    base = {"upstreams": {"a": {"targets": ["http://127.0.0.1:1"]}}, "routes": [{"upstream": "a"}]}
    with pytest.raises(ConfigError) as info:
        parse_config(
            {
                "gateway": {
                    **base,
                    "breaker": {
                        "failure_statuses": [99],
                        "open_duration": 10,
                        "max_open_duration": 5,
                    },
                }
            }
        )
    assert "gateway.breaker" in str(info.value)


async def test_guard_blocks_record_like_async_with() -> None:
    clock = FakeClock()
    breaker = make(clock)
    async with breaker.guard():
        clock.advance(0.5)
    for _ in range(3):
        with pytest.raises(RuntimeError):
            async with breaker.guard():
                raise RuntimeError("down")
    assert breaker.state is State.OPEN
    with pytest.raises(CircuitOpen):
        async with breaker.guard():
            pytest.fail("the block must not run")
    clock.advance(30)
    for _ in range(2):
        async with breaker.guard():
            pass
    assert breaker.state is State.CLOSED
