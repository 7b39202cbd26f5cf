"""Building a breaker registry from configuration."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from secmw.breaker.config import BreakerConfig
from secmw.breaker.registry import BreakerRegistry
from secmw.breaker.state import Emitter


def build_registry(
    default: BreakerConfig,
    overrides: Mapping[str, BreakerConfig] | None = None,
    *,
    emit: Emitter | None = None,
    clock: Callable[[], float] = time.monotonic,
    ignore_exceptions: tuple[type[BaseException], ...] = (),
) -> BreakerRegistry:
    """A :class:`BreakerRegistry` for the configured defaults and per-key overrides."""
    return BreakerRegistry(
        default, overrides=overrides, clock=clock, emit=emit, ignore_exceptions=ignore_exceptions
    )
