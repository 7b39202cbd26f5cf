"""The circuit breaker's protocol and its switched-off default."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Protocol, TypeVar

T = TypeVar("T")


class CircuitBreaker(Protocol):
    """Protocol: guard calls to one upstream and stop calling it while it fails.

    When open, ``call`` and ``__aenter__`` raise
    :class:`~secmw.errors.ServiceUnavailable` without touching the upstream.
    """

    async def call(self, fn: Callable[..., Awaitable[T]], /, *args: object, **kwargs: object) -> T:
        """Run ``fn(*args, **kwargs)`` under the breaker."""
        ...

    async def __aenter__(self) -> None:
        """Enter a guarded block (raises when the circuit is open)."""
        ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        """Record the block's outcome."""
        ...


class NoBreaker:
    """Never opens: calls go straight through."""

    __slots__ = ()

    async def call(self, fn: Callable[..., Awaitable[T]], /, *args: object, **kwargs: object) -> T:
        """Await ``fn(*args, **kwargs)`` and return its result."""
        return await fn(*args, **kwargs)

    async def __aenter__(self) -> None:
        """Do nothing."""

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        """Let any exception propagate."""
        return None
