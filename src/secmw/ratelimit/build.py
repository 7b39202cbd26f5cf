"""Building the configured rate limiter from the ``ratelimit`` section."""

from __future__ import annotations

from secmw.errors import ConfigError, ConfigIssue
from secmw.ratelimit.config import RateLimitConfig
from secmw.ratelimit.failover import Failover
from secmw.ratelimit.limiter import TieredRateLimiter
from secmw.ratelimit.memory import MemoryStore
from secmw.ratelimit.redis_store import RedisStore
from secmw.ratelimit.tiers import Tier


def build_rate_limiter(config: RateLimitConfig) -> TieredRateLimiter | None:
    """The limiter the section describes; ``None`` when no tier is configured."""
    if not config.tiers:
        return None
    tiers = []
    issues: list[ConfigIssue] = []
    for index, tier in enumerate(config.tiers):
        try:
            tiers.append(Tier(tier))
        except ConfigError as exc:
            issues.extend(
                ConfigIssue(f"tiers[{index}].{issue.key}", issue.message) for issue in exc.issues
            )
    storage = config.storage
    store: MemoryStore | RedisStore
    if storage.url.startswith("memory://"):
        store = MemoryStore(max_keys=storage.max_keys)
    else:
        try:
            store = RedisStore(
                storage.url,
                prefix=storage.prefix,
                connect_timeout=storage.connect_timeout,
                timeout=storage.timeout,
                max_connections=storage.max_connections,
            )
        except ConfigError as exc:
            issues.extend(
                ConfigIssue(f"storage.{issue.key}", issue.message) for issue in exc.issues
            )
    if issues:
        raise ConfigError(issues)
    failover = Failover(
        storage.on_failure,
        fraction=storage.fallback_fraction,
        retry_interval=storage.retry_interval,
        max_keys=storage.max_keys,
    )
    return TieredRateLimiter(tiers, store=store, failover=failover, headers=config.headers)


def fail_open_settings(config: RateLimitConfig) -> list[str]:
    """The section's fail-open settings (shadow tiers, storage failure modes)."""
    found = [
        f"ratelimit.tiers[{index}].shadow" for index, tier in enumerate(config.tiers) if tier.shadow
    ]
    storage = config.storage
    redis = not storage.url.startswith("memory://")
    if config.tiers and redis and storage.on_failure != "fail_closed":
        found.append(f"ratelimit.storage.on_failure={storage.on_failure}")
    return found
