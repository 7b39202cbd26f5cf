"""What a circuit breaker reports: its states, its snapshot, and the refusal it raises."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from secmw.audit.base import AuditEvent
from secmw.errors import ServiceUnavailable

Emitter = Callable[[AuditEvent], Awaitable[None]]


class State(StrEnum):
    """The three states of a circuit."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitOpen(ServiceUnavailable):
    """The circuit is open (or its half-open trial calls are taken): 503 with Retry-After."""

    event = "upstream_circuit_open"

    def __init__(self, name: str, retry_after: float) -> None:
        super().__init__(
            "The upstream service is temporarily unavailable.",
            retry_after=retry_after,
            reason=f"circuit {name} open",
        )
        self.name = name


@dataclass(frozen=True, slots=True)
class BreakerSnapshot:
    """A breaker's state and counters, for health checks and metrics."""

    name: str
    state: State
    calls: int
    failures: int
    slow_calls: int
    failure_rate: float
    slow_call_rate: float
    rejected: int
    openings: int
    retry_after: float | None

    def to_dict(self) -> dict[str, Any]:
        """The snapshot as a JSON-ready dict."""
        return {
            "state": str(self.state),
            "calls": self.calls,
            "failures": self.failures,
            "slow_calls": self.slow_calls,
            "failure_rate": round(self.failure_rate, 2),
            "slow_call_rate": round(self.slow_call_rate, 2),
            "rejected": self.rejected,
            "openings": self.openings,
            "retry_after": None if self.retry_after is None else math.ceil(self.retry_after),
        }


__all__ = ["BreakerSnapshot", "CircuitOpen", "Emitter", "State"]
