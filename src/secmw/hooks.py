"""The pipeline's extension points: guards around authentication, observers of the
audit event, and endpoints secmw answers itself (metrics, RFC 9728 metadata)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from secmw._responses import Header
from secmw.audit.base import AuditEvent
from secmw.context import RequestContext

Endpoint = Callable[[RequestContext], tuple[int, list[Header], bytes]]


class Observer(Protocol):
    """Protocol: sees every request's audit event as it is recorded (metrics, anomalies).

    ``observe`` is synchronous and must be cheap; an exception is reported on
    stderr and never changes the response.
    """

    def observe(self, ctx: RequestContext, event: AuditEvent) -> None:
        """Look at how the request ended."""
        ...


class Guard(Protocol):
    """Protocol: refuses requests around authentication (anomaly blocks and step-ups).

    ``before`` runs before authentication (blocks keyed by client address);
    ``after_authentication`` runs once the principal is known. Either raises a
    :class:`~secmw.errors.Denial` to stop the request.
    """

    async def before(self, ctx: RequestContext) -> None:
        """Refuse the request before any credential is looked at."""
        ...

    async def after_authentication(self, ctx: RequestContext) -> None:
        """Refuse the request given its principal."""
        ...


class NoGuard:
    """The guard when none is configured: refuses nothing."""

    __slots__ = ()

    async def before(self, ctx: RequestContext) -> None:
        """Refuse nothing."""

    async def after_authentication(self, ctx: RequestContext) -> None:
        """Refuse nothing."""


# Set in ``ctx.state`` when a guard runs for an endpoint secmw serves itself
# (``Pipeline.screen``): no authentication follows, so none is timed.
SCREENED = "secmw.screened"

__all__ = ["SCREENED", "Endpoint", "Guard", "NoGuard", "Observer"]
