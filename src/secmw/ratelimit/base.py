"""The throttling stage's protocol, its decision type and its switched-off default."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple, Protocol

from secmw.context import RequestContext


class RateDecision(NamedTuple):
    """The outcome of one rate-limit check.

    ``headers`` go on the response whatever the outcome (the RateLimit fields);
    ``retry_after`` (seconds), ``policies`` (the violated tiers) and
    ``problem_type`` (the 429 body's ``type``; ``None`` keeps ``about:blank``)
    matter only when ``allowed`` is false; ``shared`` then says that only tiers
    no single caller owns (none keyed by ``principal``, ``api_key`` or
    ``connection``) refused. A named tuple rather than a frozen dataclass: one is
    made per request, and it is immutable at a quarter of the cost.
    """

    allowed: bool
    retry_after: float | None = None
    headers: tuple[tuple[bytes, bytes], ...] = ()
    policies: tuple[str, ...] = ()
    reason: str = ""
    problem_type: str | None = None
    shared: bool = False


ALLOWED = RateDecision(allowed=True)


class RateLimiter(Protocol):
    """Protocol: count a request against its limits and say whether it may pass."""

    async def hit(self, ctx: RequestContext) -> RateDecision:
        """Consume quota for ``ctx`` and return the decision."""
        ...


class MessageRateLimiter(Protocol):
    """Protocol: a rate limiter that also counts messages on open websockets.

    A :class:`RateLimiter` that has this method gets every client message of an
    admitted websocket session; a refusal closes the session with 1008.
    """

    async def hit_message(self, ctx: RequestContext, message: Mapping[str, Any]) -> RateDecision:
        """Consume quota for one websocket message of ``ctx``'s session."""
        ...


class NoRateLimiter:
    """Admits everything and adds no headers."""

    __slots__ = ()

    async def hit(self, ctx: RequestContext) -> RateDecision:
        """Return :data:`ALLOWED`."""
        return ALLOWED
