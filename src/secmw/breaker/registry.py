"""A registry of breakers keyed by upstream, sharing one emitter and clock."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping

from secmw.breaker.circuit import Breaker
from secmw.breaker.config import BreakerConfig
from secmw.breaker.state import BreakerSnapshot, Emitter, State


def breaker_from_config(
    name: str,
    config: BreakerConfig,
    *,
    clock: Callable[[], float] = time.monotonic,
    emit: Emitter | None = None,
    ignore_exceptions: tuple[type[BaseException], ...] = (),
) -> Breaker:
    """Build one :class:`Breaker` from its configuration section."""
    return Breaker(
        name,
        window=config.window,
        window_size=config.window_size,
        minimum_calls=config.minimum_calls,
        failure_rate_threshold=config.failure_rate_threshold,
        slow_call_rate_threshold=config.slow_call_rate_threshold,
        slow_call_duration=config.slow_call_duration,
        open_duration=config.open_duration,
        open_duration_multiplier=config.open_duration_multiplier,
        max_open_duration=config.max_open_duration,
        half_open_calls=config.half_open_calls,
        failure_statuses=frozenset(config.failure_statuses),
        ignore_exceptions=ignore_exceptions,
        clock=clock,
        emit=emit,
    )


class BreakerRegistry:
    """One breaker per key (an upstream target), created on first use.

    ``overrides`` maps a key to its own :class:`BreakerConfig`; every other key
    gets ``default``. All breakers share the ``clock`` and the ``emit`` callable
    (typically :meth:`secmw.pipeline.Pipeline.emit`).
    """

    __slots__ = ("_breakers", "_clock", "_default", "_emit", "_ignore", "_overrides")

    def __init__(
        self,
        default: BreakerConfig | None = None,
        *,
        overrides: Mapping[str, BreakerConfig] | None = None,
        clock: Callable[[], float] = time.monotonic,
        emit: Emitter | None = None,
        ignore_exceptions: tuple[type[BaseException], ...] = (),
    ) -> None:
        self._default = default or BreakerConfig()
        self._overrides = dict(overrides or {})
        self._clock = clock
        self._emit = emit
        self._ignore = ignore_exceptions
        self._breakers: dict[str, Breaker] = {}

    def get(self, key: str, config: BreakerConfig | None = None) -> Breaker:
        """The breaker for ``key``; ``config`` is used only when it is created."""
        breaker = self._breakers.get(key)
        if breaker is None:
            settings = config or self._overrides.get(key) or self._default
            breaker = breaker_from_config(
                key, settings, clock=self._clock, emit=self._emit, ignore_exceptions=self._ignore
            )
            self._breakers[key] = breaker
        return breaker

    def __iter__(self) -> Iterator[Breaker]:
        return iter(list(self._breakers.values()))

    def __len__(self) -> int:
        return len(self._breakers)

    def snapshot(self) -> dict[str, BreakerSnapshot]:
        """Every breaker's snapshot, by key."""
        return {key: breaker.snapshot() for key, breaker in self._breakers.items()}

    def all_open(self) -> bool:
        """True when there is at least one breaker and every one is open."""
        return bool(self._breakers) and all(
            breaker.state is State.OPEN for breaker in self._breakers.values()
        )
