"""Configuration models of the throttle stage (the ``ratelimit`` section)."""

from __future__ import annotations

import re
from typing import Literal

from limits import parse_many
from pydantic import Field, field_validator, model_validator

from secmw._config_base import ConfigModel, storage_url
from secmw.ratelimit.tiers import compile_limits

Algorithm = Literal["fixed-window", "moving-window", "sliding-window-counter", "gcra"]
KeyPart = Literal["global", "principal", "tenant", "ip", "route", "tool", "api_key", "connection"]
_KEY_PARTS = frozenset(KeyPart.__args__)  # type: ignore[attr-defined]


def check_rate(value: str) -> str:
    """Validate a rate string as ``limits`` parses it (``"10/second;1000/hour"``)."""
    try:
        items = parse_many(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a rate such as '100/minute'") from None
    if _ZERO_WINDOW.search(value):
        # limits reads a zero multiple as one ("5/0 minutes" is 5 per minute).
        raise ValueError(f"{value!r} has a window of zero length")
    if not items or any(item.amount < 1 for item in items):
        raise ValueError(f"{value!r} must allow at least one request per window")
    if any(item.amount > MAX_AMOUNT for item in items):
        # RateLimit header values are RFC 8941 integers (at most 15 digits), and
        # Redis counts in doubles: keep every count exact and every header valid.
        raise ValueError(f"{value!r} allows more than {MAX_AMOUNT:,} requests per window")
    if any(item.get_expiry() > MAX_WINDOW for item in items):
        raise ValueError(f"{value!r} has a window longer than a year")
    windows = [item.get_expiry() for item in items]
    if len(set(windows)) != len(windows):
        # One counter per window length: the second would share the first's
        # (doing nothing) and both would be listed under one policy name.
        raise ValueError(f"{value!r} names one window length twice")
    return value


_ZERO_WINDOW = re.compile(r"(?:/|\bper)\s*0+\s*[A-Za-z]", re.IGNORECASE)
MAX_AMOUNT = 10**12
MAX_WINDOW = 366 * 24 * 3600


class CostConfig(ConfigModel):
    """Per-route and per-tool costs (how much quota one request consumes)."""

    routes: dict[str, int] = Field(default_factory=dict)
    tools: dict[str, int] = Field(default_factory=dict)

    @field_validator("routes", "tools")
    @classmethod
    def _positive(cls, value: dict[str, int]) -> dict[str, int]:
        for name, cost in value.items():
            if not 0 <= cost <= MAX_AMOUNT:
                raise ValueError(f"cost of {name!r} must be 0 to {MAX_AMOUNT:,}")
        return value


class ExemptConfig(ConfigModel):
    """Who and what a tier never counts."""

    principals: list[str] = Field(default_factory=list)
    roles: list[str] = Field(default_factory=list)
    routes: list[str] = Field(default_factory=list)


class TierConfig(ConfigModel):
    """One named limit: what it counts by, how much it allows, and to whom."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")
    key: str = "principal"
    rate: str
    plans: dict[str, str] = Field(default_factory=dict)
    algorithm: Algorithm = "fixed-window"
    burst: int | None = Field(default=None, ge=1, le=10**12)
    cost: int = Field(default=1, ge=0, le=10**12)
    costs: CostConfig = Field(default_factory=CostConfig)
    exempt: ExemptConfig = Field(default_factory=ExemptConfig)
    shadow: bool = False
    applies_to: Literal["requests", "messages"] = "requests"

    @field_validator("key")
    @classmethod
    def _check_key(cls, value: str) -> str:
        parts = value.split("+")
        for part in parts:
            if part not in _KEY_PARTS:
                raise ValueError(
                    f"{part!r} is not one of {', '.join(sorted(_KEY_PARTS))} (joined by '+')"
                )
        if len(set(parts)) != len(parts):
            raise ValueError(f"{value!r} names a part twice")
        if "global" in parts and len(parts) > 1:
            raise ValueError("'global' cannot be combined with other parts")
        return value

    @field_validator("rate")
    @classmethod
    def _check_rate(cls, value: str) -> str:
        return check_rate(value)

    @field_validator("plans")
    @classmethod
    def _check_plans(cls, value: dict[str, str]) -> dict[str, str]:
        for rate in value.values():
            check_rate(rate)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> TierConfig:
        parts = self.key.split("+")
        if "connection" in parts and self.applies_to != "messages":
            raise ValueError("key part 'connection' needs applies_to = 'messages'")
        if "tool" in parts and self.applies_to == "messages":
            # Websocket messages are not read as JSON-RPC: such a tier would never count.
            raise ValueError("key part 'tool' does not apply to websocket messages")
        if self.burst is not None and self.algorithm != "gcra":
            raise ValueError("burst applies to the gcra algorithm only")
        return self


class StorageConfig(ConfigModel):
    """Where counters live and what happens when that place fails."""

    url: str = "memory://"
    max_keys: int = Field(default=1_000_000, ge=1)
    connect_timeout: float = Field(default=0.25, gt=0, le=30)
    timeout: float = Field(default=0.25, gt=0, le=30)
    max_connections: int = Field(default=100, ge=1, le=10_000)
    prefix: str = Field(default="secmw:rl", pattern=r"^[A-Za-z0-9_.:\-]{1,64}$")
    on_failure: Literal["fail_closed", "fail_open", "local_fallback"] = "fail_closed"
    fallback_fraction: float = Field(default=0.25, gt=0, le=1)
    retry_interval: float = Field(default=0.5, ge=0, le=60)

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        return storage_url(value)


class RateLimitConfig(ConfigModel):
    """The ``ratelimit`` section: tiers, storage and response headers."""

    tiers: list[TierConfig] = Field(default_factory=list)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    headers: Literal["draft", "legacy", "both", "none"] = "draft"

    @field_validator("tiers")
    @classmethod
    def _unique(cls, value: list[TierConfig]) -> list[TierConfig]:
        names = [tier.name for tier in value]
        if len(set(names)) != len(names):
            raise ValueError("tier names must be unique")
        # A tier of several windows names each "<tier>-<seconds>s" in headers, 429
        # bodies and audit lines: another tier must not be called that too.
        seen: dict[str, str] = {}
        for tier in value:
            policies = {
                limit.policy
                for rate in (tier.rate, *tier.plans.values())
                for limit in compile_limits(
                    tier.name, rate, tier.algorithm, tier.burst, tier.shadow
                )
            }
            for policy in policies:
                other = seen.setdefault(policy, tier.name)
                if other != tier.name:
                    raise ValueError(f"tiers {other!r} and {tier.name!r} both name {policy!r}")
        return value
