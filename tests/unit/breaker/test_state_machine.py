"""The breaker against a plain reference model, driven by hypothesis."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from secmw.breaker import Breaker, CircuitOpen, State


class Model:
    """The specification, written for clarity rather than speed."""

    def __init__(self, kind: str, size: int, minimum: int, threshold: float, probes: int) -> None:
        self.kind, self.size, self.threshold, self.probes = kind, size, threshold, probes
        self.minimum = min(minimum, size) if kind == "count" else minimum
        self.open_duration = 10.0
        self.state = "closed"
        self.generation = 0
        self.outcomes: list[tuple[float, bool, bool]] = []
        self.open_until = 0.0
        self.given = 0
        self.probe_results: list[tuple[bool, bool]] = []

    def window(self, now: float) -> list[tuple[float, bool, bool]]:
        if self.kind == "count":
            return self.outcomes[-self.size :]
        return [o for o in self.outcomes if int(o[0]) > int(now) - self.size]

    def tripped(self, results: list[tuple[bool, bool]]) -> bool:
        calls = len(results)
        failures = sum(1 for failed, _ in results if failed)
        slow = sum(1 for _, is_slow in results if is_slow)
        return failures * 100.0 >= self.threshold * calls or slow * 100.0 >= 50.0 * calls

    def move(self, state: str, now: float) -> None:
        self.state = state
        self.generation += 1
        self.given = 0
        self.probe_results = []
        if state == "open":
            self.open_until = now + self.open_duration
        if state == "closed":
            self.outcomes = []

    def acquire(self, now: float) -> int | None:
        if self.state == "open":
            if now < self.open_until:
                return None
            self.move("half_open", now)
        if self.state == "half_open":
            if self.given >= self.probes:
                return None
            self.given += 1
        return self.generation

    def release(self, ticket: int) -> None:
        if ticket == self.generation and self.state == "half_open":
            self.given -= 1

    def record(self, ticket: int, failed: bool, slow: bool, now: float) -> None:
        if ticket != self.generation:
            return
        if self.state == "closed":
            self.outcomes.append((now, failed, slow))
            window = [(f, s) for _, f, s in self.window(now)]
            if len(window) >= self.minimum and self.tripped(window):
                self.move("open", now)
        elif self.state == "half_open":
            self.probe_results.append((failed, slow))
            if len(self.probe_results) >= self.probes:
                self.move("open" if self.tripped(self.probe_results) else "closed", now)


def drive(coroutine: Any) -> Any:
    """Run a coroutine that never suspends; return its value or the exception's name."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    except CircuitOpen as refused:
        return refused
    except RuntimeError:
        return "RuntimeError"
    raise AssertionError("the coroutine suspended")


class BreakerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = 100.0
        self.tickets: list[int] = []

    def clock(self) -> float:
        return self.now

    @initialize(
        kind=st.sampled_from(["count", "time"]),
        size=st.integers(1, 6),
        minimum=st.integers(1, 6),
        threshold=st.sampled_from([25.0, 50.0, 100.0]),
        probes=st.integers(1, 3),
    )
    def setup(self, kind: str, size: int, minimum: int, threshold: float, probes: int) -> None:
        self.model = Model(kind, size, minimum, threshold, probes)
        self.breaker = Breaker(
            "m",
            window=kind,
            window_size=size,
            minimum_calls=minimum,
            failure_rate_threshold=threshold,
            slow_call_rate_threshold=50.0,
            slow_call_duration=1.0,
            open_duration=10.0,
            half_open_calls=probes,
            clock=self.clock,
        )

    @rule()
    def acquire(self) -> None:
        expected = self.model.acquire(self.now)
        try:
            ticket = self.breaker.acquire()
        except CircuitOpen:
            assert expected is None
            return
        assert expected is not None
        self.tickets.append(ticket)

    @rule(failed=st.booleans(), slow=st.booleans())
    def call(self, failed: bool, slow: bool) -> None:
        """A whole ``breaker.call`` (its inlined fast path), driven without a loop."""
        expected = self.model.acquire(self.now)
        if expected is not None:
            self.model.record(expected, failed, slow, self.now + (1.5 if slow else 0.1))

        async def upstream() -> str:
            self.now += 1.5 if slow else 0.1
            if failed:
                raise RuntimeError("down")
            return "ok"

        outcome = drive(self.breaker.call(upstream))
        if expected is None:
            assert isinstance(outcome, CircuitOpen)
        else:
            assert outcome == ("ok" if not failed else "RuntimeError")

    @precondition(lambda self: self.tickets)
    @rule(index=st.integers(0, 10), failed=st.booleans(), slow=st.booleans())
    def record(self, index: int, failed: bool, slow: bool) -> None:
        ticket = self.tickets.pop(index % len(self.tickets))
        self.model.record(ticket, failed, slow, self.now)
        self.breaker.record(ticket, failed=failed, duration=1.5 if slow else 0.1)

    @precondition(lambda self: self.tickets)
    @rule(index=st.integers(0, 10))
    def release(self, index: int) -> None:
        ticket = self.tickets.pop(index % len(self.tickets))
        self.model.release(ticket)
        self.breaker.release(ticket)

    @rule(seconds=st.sampled_from([0.3, 1.0, 4.0, 10.0]))
    def advance(self, seconds: float) -> None:
        self.now += seconds

    @invariant()
    def same_state(self) -> None:
        assert str(self.breaker.state) == self.model.state
        if self.breaker.state is State.CLOSED:
            calls = self.breaker.snapshot().calls
            assert calls == len(self.model.window(self.now))


TestBreakerMachine = BreakerMachine.TestCase
TestBreakerMachine.settings = settings(
    max_examples=150,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def test_reference_model_sanity() -> None:
    model = Model("count", 2, 2, 50.0, 1)
    ticket = model.acquire(0.0)
    assert ticket is not None
    model.record(ticket, True, False, 0.0)
    second = model.acquire(0.0)
    assert second is not None
    model.record(second, False, False, 0.0)
    assert model.state == "open"
    assert model.acquire(5.0) is None
    assert model.acquire(10.0) == model.generation
    assert model.state == "half_open"
