"""Configuration model of a circuit breaker (``gateway.breaker`` and per-upstream overrides)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from secmw._config_base import ConfigModel


class BreakerConfig(ConfigModel):
    """Sliding-window circuit breaker settings, after resilience4j's model.

    ``window_size`` counts calls for a ``count`` window and seconds for a ``time``
    window. Rates are percentages of the calls in the window; nothing is judged
    before ``minimum_calls`` calls were seen.
    """

    window: Literal["count", "time"] = "count"
    window_size: int = Field(default=50, ge=1, le=10_000)
    minimum_calls: int = Field(default=10, ge=1, le=100_000)
    failure_rate_threshold: float = Field(default=50.0, gt=0, le=100)
    slow_call_rate_threshold: float = Field(default=100.0, gt=0, le=100)
    slow_call_duration: float = Field(default=30.0, gt=0)
    open_duration: float = Field(default=30.0, gt=0)
    open_duration_multiplier: float = Field(default=1.0, ge=1, le=100)
    max_open_duration: float | None = Field(default=None, gt=0)
    half_open_calls: int = Field(default=3, ge=1, le=1_000)
    failure_statuses: list[int] = Field(default_factory=lambda: [500, 502, 503, 504])

    @model_validator(mode="after")
    def _check(self) -> BreakerConfig:
        for status in self.failure_statuses:
            if not 100 <= status <= 599:
                raise ValueError(f"failure_statuses: {status} is not an HTTP status code")
        if self.max_open_duration is not None and self.max_open_duration < self.open_duration:
            raise ValueError("max_open_duration must not be below open_duration")
        return self
