"""Rate limiting."""

from secmw.ratelimit.base import (
    ALLOWED,
    MessageRateLimiter,
    NoRateLimiter,
    RateDecision,
    RateLimiter,
)

__all__ = ["ALLOWED", "MessageRateLimiter", "NoRateLimiter", "RateDecision", "RateLimiter"]
