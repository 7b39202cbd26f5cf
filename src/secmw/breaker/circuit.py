"""The sliding-window circuit breaker (:class:`Breaker`), modelled on resilience4j.

States: ``closed`` (calls pass, outcomes fill the window; when at least
``minimum_calls`` are in it and the failure rate or the slow-call rate reaches its
threshold, the circuit opens), ``open`` (calls are refused with
:class:`CircuitOpen` until ``open_duration`` has passed), ``half_open`` (at most
``half_open_calls`` trial calls; when they all ended, their rates decide between
``closed`` and ``open`` again). Each opening in a row may last longer
(``open_duration_multiplier``, capped by ``max_open_duration``).

No lock is held across the wrapped call: every state change is a synchronous
step between awaits, so it is atomic on one event loop (asyncio or trio). An
outcome is only counted in the state it was admitted in: a call admitted while
closed that ends after the circuit opened changes nothing. The breaker is not
thread-safe; use one per event loop.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

from secmw.audit.base import AuditEvent
from secmw.breaker.state import BreakerSnapshot, CircuitOpen, Emitter, State
from secmw.breaker.window import FAILED, SLOW, CountWindow, TimeWindow, Window

T = TypeVar("T")
P = ParamSpec("P")
# Module-level: a global is read faster than an enum member (the hot paths read it).
_CLOSED = State.CLOSED
# The longest a circuit stays open when no max_open_duration caps its growth (a year):
# Retry-After and the reopen time stay finite numbers.
_LONGEST_OPEN = 365 * 86400.0


class Guard:
    """One guarded block: ``async with breaker.guard():`` (see :meth:`Breaker.guard`)."""

    __slots__ = ("_breaker", "_start", "_ticket")

    def __init__(self, breaker: Breaker) -> None:
        self._breaker = breaker
        self._ticket = -1
        self._start = 0.0

    async def __aenter__(self) -> None:
        """Take a permission; raises :class:`CircuitOpen` when calls are refused."""
        breaker = self._breaker
        if breaker._state is _CLOSED:
            self._ticket = breaker._generation
        else:
            self._ticket = breaker.acquire()
        self._start = breaker._clock()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        """Record the block's outcome (the closed-state success is judged inline)."""
        breaker = self._breaker
        end = breaker._clock()
        duration = end - self._start
        if exc is not None:
            breaker.record_exception(self._ticket, exc, duration)
        elif self._ticket == breaker._generation and breaker._state is _CLOSED:
            window = breaker._window
            if duration < breaker._slow_duration:
                window.ok(end)
            else:
                window.add(SLOW, end)
            if (window.slow or window.failures) and window.calls >= breaker._minimum_calls:
                breaker._judge_closed(end)
        else:
            breaker._record(self._ticket, False, duration, end)
        if breaker._events:
            await breaker.flush_events()
        return None


# The breakers entered with ``async with`` in the current task: (breaker, ticket, start).
_ACTIVE: ContextVar[tuple[tuple[Breaker, int, float], ...]] = ContextVar(
    "secmw_breaker_active", default=()
)


class Breaker:
    """A circuit breaker for one upstream: ``await breaker.call(fn, ...)``,
    ``async with breaker:``, or ``@breaker`` on a coroutine function.

    ``failure_exceptions`` count as failures, ``ignore_exceptions`` (checked
    first) and cancellation count as nothing. A result counts as a failure when
    its ``status_code`` (or ``status``) is in ``failure_statuses`` or
    ``failure_result(result)`` is true. A call is slow when it took at least
    ``slow_call_duration`` seconds on ``clock`` (monotonic by default).
    State changes are sent to ``emit`` as audit events ``breaker_opened``,
    ``breaker_half_open`` and ``breaker_closed``.
    """

    __slots__ = (
        "_clock",
        "_emit",
        "_events",
        "_failure_exceptions",
        "_failure_result",
        "_failure_statuses",
        "_failure_threshold",
        "_generation",
        "_half_open_calls",
        "_ho_done",
        "_ho_failures",
        "_ho_given",
        "_ho_slow",
        "_ignore_exceptions",
        "_max_open",
        "_minimum_calls",
        "_multiplier",
        "_open_duration",
        "_open_until",
        "_openings",
        "_plain",
        "_rejected",
        "_slow_duration",
        "_slow_threshold",
        "_state",
        "_streak",
        "_window",
        "name",
    )

    def __init__(
        self,
        name: str = "default",
        *,
        window: str = "count",
        window_size: int = 50,
        minimum_calls: int = 10,
        failure_rate_threshold: float = 50.0,
        slow_call_rate_threshold: float = 100.0,
        slow_call_duration: float = 30.0,
        open_duration: float = 30.0,
        open_duration_multiplier: float = 1.0,
        max_open_duration: float | None = None,
        half_open_calls: int = 3,
        failure_statuses: frozenset[int] | set[int] | tuple[int, ...] = (),
        failure_exceptions: tuple[type[BaseException], ...] = (Exception,),
        ignore_exceptions: tuple[type[BaseException], ...] = (),
        failure_result: Callable[[Any], bool] | None = None,
        clock: Callable[[], float] = time.monotonic,
        emit: Emitter | None = None,
    ) -> None:
        if window not in ("count", "time"):
            raise ValueError("window must be 'count' or 'time'")
        if window_size < 1 or minimum_calls < 1 or half_open_calls < 1:
            raise ValueError("window_size, minimum_calls and half_open_calls must be >= 1")
        self.name = name
        self._window: Window = (
            CountWindow(window_size) if window == "count" else TimeWindow(window_size)
        )
        # A count window can never hold more than its size (resilience4j does the same).
        self._minimum_calls = (
            min(minimum_calls, window_size) if window == "count" else minimum_calls
        )
        self._failure_threshold = failure_rate_threshold
        self._slow_threshold = slow_call_rate_threshold
        self._slow_duration = slow_call_duration
        self._open_duration = open_duration
        self._multiplier = open_duration_multiplier
        self._max_open = max_open_duration
        self._half_open_calls = half_open_calls
        self._failure_statuses = frozenset(failure_statuses)
        self._failure_exceptions = failure_exceptions
        self._ignore_exceptions = ignore_exceptions
        self._failure_result = failure_result
        self._plain = not self._failure_statuses and failure_result is None
        self._clock = clock
        self._emit = emit
        self._events: list[AuditEvent] = []
        self._state = State.CLOSED
        self._generation = 0
        self._open_until = 0.0
        self._openings = 0
        self._streak = 0
        self._rejected = 0
        self._ho_given = self._ho_done = self._ho_failures = self._ho_slow = 0

    # -- the public API ------------------------------------------------------

    @property
    def state(self) -> State:
        """The current state (an open circuit past its duration still reads ``open``)."""
        return self._state

    @property
    def failure_statuses(self) -> frozenset[int]:
        """The result statuses that count as failures."""
        return self._failure_statuses

    async def call(self, fn: Callable[..., Awaitable[T]], /, *args: Any, **kwargs: Any) -> T:
        """Run ``fn(*args, **kwargs)`` under the breaker; raises :class:`CircuitOpen`."""
        ticket = self._generation if self._state is _CLOSED else self.acquire()
        clock = self._clock
        start = clock()
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            self.record_exception(ticket, exc, clock() - start)
            if self._events:
                await self.flush_events()
            raise
        end = clock()
        if self._plain and ticket == self._generation and self._state is _CLOSED:
            # The hot path: a success in the closed state, judged inline.
            window = self._window
            if end - start < self._slow_duration:
                window.ok(end)
            else:
                window.add(SLOW, end)
            if (window.slow or window.failures) and window.calls >= self._minimum_calls:
                self._judge_closed(end)
        else:
            self._record(ticket, self._result_failed(result), end - start, end)
        if self._events:
            await self.flush_events()
        return result

    def __call__(self, fn: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
        """Decorate a coroutine function so every call goes through the breaker."""

        @functools.wraps(fn)
        async def guarded(*args: P.args, **kwargs: P.kwargs) -> T:
            return await self.call(fn, *args, **kwargs)

        return guarded

    async def __aenter__(self) -> None:
        """Enter a guarded block; raises :class:`CircuitOpen` when calls are refused."""
        ticket = self.acquire()
        _ACTIVE.set((*_ACTIVE.get(), (self, ticket, self._clock())))

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        """Record the block's outcome (an exception is judged like one from ``call``)."""
        stack = _ACTIVE.get()
        for index in range(len(stack) - 1, -1, -1):
            if stack[index][0] is self:
                _, ticket, start = stack[index]
                _ACTIVE.set(stack[:index] + stack[index + 1 :])
                break
        else:
            return None
        duration = self._clock() - start
        if exc is None:
            self.record(ticket, failed=False, duration=duration)
        else:
            self.record_exception(ticket, exc, duration)
        if self._events:
            await self.flush_events()
        return None

    def guard(self) -> Guard:
        """A one-use ``async with`` block; cheaper than ``async with breaker:``.

        ``async with breaker:`` must find its per-task state in a ``ContextVar``;
        the guard carries its own ticket and start time.
        """
        return Guard(self)

    # -- the building blocks (for proxies that span a call over a stream) ----

    def acquire(self) -> int:
        """Ask for permission to call; returns a ticket for :meth:`record`.

        Raises :class:`CircuitOpen` (with the seconds until a retry makes sense)
        while the circuit is open or its half-open trial calls are all taken.
        """
        state = self._state
        if state is State.CLOSED:
            return self._generation
        if state is State.OPEN:
            now = self._clock()
            if now < self._open_until:
                self._rejected += 1
                raise CircuitOpen(self.name, self._open_until - now)
            self._transition(State.HALF_OPEN, now)
        if self._ho_given >= self._half_open_calls:
            self._rejected += 1
            raise CircuitOpen(self.name, 1.0)
        self._ho_given += 1
        return self._generation

    def refused(self) -> None:
        """Count a call refused without :meth:`acquire` (a pool that found no target available)."""
        self._rejected += 1

    def release(self, ticket: int) -> None:
        """Give a permission back without an outcome (the call was cancelled or ignored)."""
        if ticket == self._generation and self._state is State.HALF_OPEN:
            self._ho_given -= 1

    def record_exception(self, ticket: int, exc: BaseException, duration: float) -> None:
        """Record a call that raised ``exc``: a failure, or nothing when ignored."""
        if isinstance(exc, self._ignore_exceptions) or not isinstance(
            exc, self._failure_exceptions
        ):
            self.release(ticket)
        else:
            self.record(ticket, failed=True, duration=duration)

    def _result_failed(self, result: object) -> bool:
        failed = False
        if self._failure_statuses:
            status = getattr(result, "status_code", None)
            if status is None:
                status = getattr(result, "status", None)
            failed = status in self._failure_statuses
        if not failed and self._failure_result is not None:
            failed = bool(self._failure_result(result))
        return failed

    def record_result(self, ticket: int, result: object, duration: float) -> None:
        """Record a call that returned ``result``, judged by status and predicate."""
        self._record(ticket, self._result_failed(result), duration, self._clock())

    def record(self, ticket: int, *, failed: bool, duration: float) -> None:
        """Count one outcome of a call admitted with ``ticket``."""
        self._record(ticket, failed, duration, self._clock())

    def _judge_closed(self, now: float) -> None:
        window = self._window
        if self._tripped(window.calls, window.failures, window.slow):
            self._transition(State.OPEN, now)

    def _record(self, ticket: int, failed: bool, duration: float, now: float) -> None:
        if ticket != self._generation:
            return  # admitted in an earlier state: it says nothing about this one
        outcome = (FAILED if failed else 0) | (SLOW if duration >= self._slow_duration else 0)
        state = self._state
        if state is State.CLOSED:
            window = self._window
            window.add(outcome, now)
            if window.calls >= self._minimum_calls:
                self._judge_closed(now)
        elif state is State.HALF_OPEN:
            self._ho_done += 1
            self._ho_failures += outcome & FAILED
            self._ho_slow += (outcome & SLOW) >> 1
            if self._ho_done >= self._half_open_calls:
                tripped = self._tripped(self._ho_done, self._ho_failures, self._ho_slow)
                self._transition(State.OPEN if tripped else State.CLOSED, now)

    @property
    def has_events(self) -> bool:
        """True when state changes wait for :meth:`flush_events`."""
        return bool(self._events)

    async def flush_events(self) -> None:
        """Send the pending state-change events to the emitter."""
        events, self._events = self._events, []
        if self._emit is not None:
            for event in events:
                await self._emit(event)

    def snapshot(self) -> BreakerSnapshot:
        """The state and counters now, for ``/readyz`` and metrics."""
        now = self._clock()
        if self._state is State.HALF_OPEN:
            calls, failures, slow = self._ho_done, self._ho_failures, self._ho_slow
        else:
            calls, failures, slow = self._window.totals(now)
        return BreakerSnapshot(
            name=self.name,
            state=self._state,
            calls=calls,
            failures=failures,
            slow_calls=slow,
            failure_rate=100.0 * failures / calls if calls else 0.0,
            slow_call_rate=100.0 * slow / calls if calls else 0.0,
            rejected=self._rejected,
            openings=self._openings,
            retry_after=max(0.0, self._open_until - now) if self._state is State.OPEN else None,
        )

    def retry_after(self) -> float | None:
        """Seconds until an open circuit admits a trial call, else ``None``."""
        if self._state is not State.OPEN:
            return None
        return max(0.0, self._open_until - self._clock())

    def available(self) -> bool:
        """True when :meth:`acquire` would admit a call now (without taking a permit)."""
        if self._state is State.CLOSED:
            return True
        if self._state is State.OPEN:
            return self._clock() >= self._open_until
        return self._ho_given < self._half_open_calls

    # -- transitions -----------------------------------------------------------

    def _tripped(self, calls: int, failures: int, slow: int) -> bool:
        return (
            failures * 100.0 >= self._failure_threshold * calls
            or slow * 100.0 >= self._slow_threshold * calls
        )

    def _transition(self, state: State, now: float) -> None:
        before = self._state
        calls, failures, slow = (
            (self._ho_done, self._ho_failures, self._ho_slow)
            if before is State.HALF_OPEN
            else self._window.totals(now)
        )
        self._state = state
        self._generation += 1
        self._ho_given = self._ho_done = self._ho_failures = self._ho_slow = 0
        details: dict[str, Any] = {"breaker": self.name, "from": str(before)}
        if state is State.OPEN:
            self._streak += 1
            self._openings += 1
            duration = self._open_duration
            if self._multiplier != 1.0:
                try:
                    duration *= self._multiplier ** (self._streak - 1)
                except OverflowError:  # a long outage under a cap: the cap applies
                    duration = math.inf
            if self._max_open is not None:
                duration = min(duration, self._max_open)
            duration = min(duration, _LONGEST_OPEN)
            self._open_until = now + duration
            details.update(
                calls=calls,
                failure_rate=round(100.0 * failures / calls, 2) if calls else 0.0,
                slow_call_rate=round(100.0 * slow / calls, 2) if calls else 0.0,
                open_seconds=round(duration, 3),
            )
            name, severity = "breaker_opened", "warning"
        elif state is State.HALF_OPEN:
            name, severity = "breaker_half_open", "info"
        else:
            self._streak = 0
            self._window.reset()
            name, severity = "breaker_closed", "info"
        if self._emit is not None:
            self._events.append(
                AuditEvent(
                    name=name,
                    outcome="success" if state is State.CLOSED else "failure",
                    severity=severity,
                    reason=f"circuit {self.name} {state}",
                    details=details,
                )
            )

    def __repr__(self) -> str:
        return f"Breaker({self.name!r}, state={self._state})"
