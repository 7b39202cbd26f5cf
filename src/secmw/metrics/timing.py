"""Timing the authenticate stage from the pipeline's guard hooks.

The guard's ``before`` runs right before authentication and
``after_authentication`` right after it, so a guard can time the stage without
timers inside the pipeline. Authentication is the stage whose cost varies most
(signature checks, key fetches, introspection calls).
"""

from __future__ import annotations

import time

from secmw.context import RequestContext
from secmw.hooks import SCREENED, Guard
from secmw.metrics.registry import Histogram

STARTED = "secmw.metrics.authenticate_started"


class AuthenticationTimer:
    """A guard that times authentication, then hands over to ``inner`` (the anomaly monitor).

    A successful authentication is observed in ``after_authentication``; a
    refused one never reaches it, so :meth:`failed` (called by the metrics
    observer at record time) observes it with outcome ``failure``.
    """

    __slots__ = ("_histogram", "inner")

    def __init__(self, histogram: Histogram, inner: Guard | None = None) -> None:
        self._histogram = histogram
        self.inner = inner

    async def before(self, ctx: RequestContext) -> None:
        """Run the inner guard, then start the clock."""
        if self.inner is not None:
            await self.inner.before(ctx)
        if not ctx.state.get(SCREENED):  # an endpoint's own check: nothing to time
            ctx.state[STARTED] = time.perf_counter()

    async def after_authentication(self, ctx: RequestContext) -> None:
        """Stop the clock, then run the inner guard."""
        started = ctx.state.pop(STARTED, None)
        if started is not None:
            self._histogram.observe(time.perf_counter() - started, ("authenticate", "success"))
        if self.inner is not None:
            await self.inner.after_authentication(ctx)

    def failed(self, ctx: RequestContext) -> None:
        """Observe an authentication that raised (its clock is still running)."""
        started = ctx.state.pop(STARTED, None)
        if started is not None:
            self._histogram.observe(time.perf_counter() - started, ("authenticate", "failure"))
