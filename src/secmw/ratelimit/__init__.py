"""Rate limiting: multi-tier limits in memory or Redis, with the IETF RateLimit fields."""

from secmw.ratelimit.algorithms import ALGORITHMS, Limit, Outcome
from secmw.ratelimit.base import (
    ALLOWED,
    MessageRateLimiter,
    NoRateLimiter,
    RateDecision,
    RateLimiter,
)
from secmw.ratelimit.build import build_rate_limiter
from secmw.ratelimit.config import RateLimitConfig, StorageConfig, TierConfig
from secmw.ratelimit.failover import Failover
from secmw.ratelimit.limiter import QUOTA_EXCEEDED, TieredRateLimiter
from secmw.ratelimit.memory import MemoryStore
from secmw.ratelimit.redis_store import RedisStore, StorageUnavailable
from secmw.ratelimit.tiers import Tier

__all__ = [
    "ALGORITHMS",
    "ALLOWED",
    "QUOTA_EXCEEDED",
    "Failover",
    "Limit",
    "MemoryStore",
    "MessageRateLimiter",
    "NoRateLimiter",
    "Outcome",
    "RateDecision",
    "RateLimitConfig",
    "RateLimiter",
    "RedisStore",
    "StorageConfig",
    "StorageUnavailable",
    "Tier",
    "TierConfig",
    "TieredRateLimiter",
    "build_rate_limiter",
]
