"""Configuration model of security metrics (the ``metrics`` section)."""

from __future__ import annotations

import itertools
import math

from pydantic import Field, field_validator, model_validator

from secmw._config_base import ConfigModel, cidr_list
from secmw._paths import canonical_path
from secmw.errors import BadRequest


class MetricsConfig(ConfigModel):
    """Counters and histograms per stage, and the Prometheus scrape endpoint.

    The endpoint needs an access restriction (``token_env``, ``token_file`` or
    ``allow_cidrs``) unless ``public`` says, visibly, that anyone may scrape.
    """

    enabled: bool = False
    path: str = "/metrics"
    endpoint: bool = True
    token_env: str | None = None
    token_file: str | None = None
    allow_cidrs: list[str] = Field(default_factory=list)
    public: bool = False
    buckets: list[float] = Field(
        default_factory=lambda: [
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0
        ],
        min_length=1,
        max_length=40,
    )  # fmt: skip
    max_series: int = Field(default=1000, ge=1, le=100_000)

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/") or "?" in value or "#" in value or "//" in value:
            raise ValueError("must be an absolute path without query or fragment")
        # Requests are matched on their canonical path: "/metrics/" or "/a/../metrics"
        # would never be served (the scrape would reach the app).
        try:
            canonical = canonical_path(value)
        except BadRequest:
            raise ValueError("is not a path a request can have") from None
        if canonical != value:
            raise ValueError(f"requests for it are matched as {canonical!r}: write that")
        return value

    @field_validator("allow_cidrs")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        return cidr_list(value)

    @field_validator("buckets")
    @classmethod
    def _buckets(cls, value: list[float]) -> list[float]:
        # Two equal bounds give two identical le="..." series, which Prometheus refuses.
        if any(not math.isfinite(bound) or bound <= 0 for bound in value):
            raise ValueError("every bucket bound must be a positive finite number")
        if any(later <= earlier for earlier, later in itertools.pairwise(value)):
            raise ValueError("bucket bounds must be strictly increasing")
        return value

    @model_validator(mode="after")
    def _restricted(self) -> MetricsConfig:
        if self.token_env and self.token_file:
            raise ValueError("set token_env or token_file, not both")
        restricted = self.token_env or self.token_file or self.allow_cidrs
        if self.enabled and self.endpoint and not restricted and not self.public:
            raise ValueError(
                "the metrics endpoint needs token_env, token_file or allow_cidrs "
                "(or public = true to expose it to anyone)"
            )
        return self
