"""Circuit breakers around upstream calls."""

from secmw.breaker.base import CircuitBreaker, NoBreaker

__all__ = ["CircuitBreaker", "NoBreaker"]
