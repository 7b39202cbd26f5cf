"""The switched-off rate limiter."""

from __future__ import annotations

import pytest

from secmw.context import RequestContext
from secmw.ratelimit import ALLOWED, NoRateLimiter, RateDecision
from tests.support import http_scope


@pytest.mark.anyio
async def test_no_rate_limiter_admits_everything_without_headers() -> None:
    decision = await NoRateLimiter().hit(RequestContext.from_scope(http_scope("/")))
    assert decision is ALLOWED
    assert decision.allowed and decision.headers == () and decision.retry_after is None


def test_decision_is_immutable() -> None:
    decision = RateDecision(allowed=False, retry_after=3.0, policies=("burst",))
    with pytest.raises(AttributeError):
        decision.allowed = True  # type: ignore[misc]
