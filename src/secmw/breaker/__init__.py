"""Circuit breakers around upstream calls."""

from secmw.breaker.base import CircuitBreaker, NoBreaker
from secmw.breaker.circuit import Breaker, Guard
from secmw.breaker.config import BreakerConfig
from secmw.breaker.registry import BreakerRegistry, breaker_from_config
from secmw.breaker.state import BreakerSnapshot, CircuitOpen, State

__all__ = [
    "Breaker",
    "BreakerConfig",
    "BreakerRegistry",
    "BreakerSnapshot",
    "CircuitBreaker",
    "CircuitOpen",
    "Guard",
    "NoBreaker",
    "State",
    "breaker_from_config",
]
