"""Rate limiting."""

from secmw.ratelimit.base import ALLOWED, NoRateLimiter, RateDecision, RateLimiter

__all__ = ["ALLOWED", "NoRateLimiter", "RateDecision", "RateLimiter"]
