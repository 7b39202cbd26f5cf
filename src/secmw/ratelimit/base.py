"""The throttling stage's protocol, its decision type and its switched-off default."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from secmw.context import RequestContext


@dataclass(frozen=True, slots=True)
class RateDecision:
    """The outcome of one rate-limit check.

    ``headers`` go on the response whatever the outcome (the RateLimit fields);
    ``retry_after`` (seconds) and ``policies`` (the violated tiers) matter only
    when ``allowed`` is false.
    """

    allowed: bool
    retry_after: float | None = None
    headers: tuple[tuple[bytes, bytes], ...] = ()
    policies: tuple[str, ...] = ()
    reason: str = ""


ALLOWED = RateDecision(allowed=True)


class RateLimiter(Protocol):
    """Protocol: count a request against its limits and say whether it may pass."""

    async def hit(self, ctx: RequestContext) -> RateDecision:
        """Consume quota for ``ctx`` and return the decision."""
        ...


class NoRateLimiter:
    """Admits everything and adds no headers."""

    __slots__ = ()

    async def hit(self, ctx: RequestContext) -> RateDecision:
        """Return :data:`ALLOWED`."""
        return ALLOWED
