"""Configuration of the gateway (the ``gateway`` section).

```toml
[gateway]
listen = "127.0.0.1:8080"

[gateway.egress]
allow = ["https://mcp.internal.example:443"]

[gateway.upstreams.tools]
targets = ["https://mcp.internal.example/"]

[[gateway.routes]]
prefix = "/mcp"
upstream = "tools"
```
"""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from secmw._config_base import ConfigModel, cidr_list, header_name, header_value_problem
from secmw.breaker.config import BreakerConfig
from secmw.proxy.egress import EgressDenied, canonical_host, parse_rule


class EgressConfig(ConfigModel):
    """Where the gateway may connect (see :class:`~secmw.proxy.egress.EgressGuard`)."""

    allow: list[str] = Field(default_factory=list)
    allow_networks: list[str] = Field(default_factory=list)
    block_networks: list[str] = Field(default_factory=list)
    dns_cache_seconds: float = Field(default=30.0, ge=0, le=3600)

    @field_validator("allow")
    @classmethod
    def _rules(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                parse_rule(entry)
            except (ValueError, EgressDenied) as exc:
                raise ValueError(getattr(exc, "reason", None) or str(exc)) from None
        return value

    @field_validator("allow_networks", "block_networks")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        return cidr_list(value)


class TimeoutsConfig(ConfigModel):
    """Upstream timeouts in seconds; ``total`` bounds an exchange (event streams excepted)."""

    connect: float = Field(default=5.0, gt=0, le=600)
    read: float = Field(default=30.0, gt=0, le=3600)
    write: float = Field(default=30.0, gt=0, le=3600)
    pool: float = Field(default=5.0, gt=0, le=600)
    total: float | None = Field(default=60.0, gt=0, le=86400)


class RetryConfig(ConfigModel):
    """Retries of idempotent requests whose body is known (none by default)."""

    attempts: int = Field(default=0, ge=0, le=5)
    backoff: float = Field(default=0.05, ge=0, le=10)
    max_backoff: float = Field(default=1.0, ge=0, le=60)
    statuses: list[int] = Field(default_factory=lambda: [502, 503, 504])


# A probe's request target: an absolute path of visible ASCII, no fragment. Anything
# else cannot be sent (the probe task died at start-up, health checks silently off).
PROBE_PATH = re.compile(r"/[\x21\x22\x24-\x7e]*")


class HealthCheckConfig(ConfigModel):
    """Active health checks of the targets (off unless ``interval`` is set)."""

    interval: float | None = Field(default=None, gt=0, le=3600)
    path: str = "/"

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not PROBE_PATH.fullmatch(value):
            raise ValueError(f"{value!r} must be a path such as /healthz (visible ASCII)")
        return value


class UpstreamConfig(ConfigModel):
    """One upstream: its targets, balancing, retries, credentials and breaker."""

    targets: list[str] = Field(min_length=1)
    balance: Literal["round_robin", "least_outstanding"] = "round_robin"
    retry: RetryConfig = Field(default_factory=RetryConfig)
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    headers_from_env: dict[str, str] = Field(default_factory=dict)
    breaker: BreakerConfig | None = None

    @field_validator("targets")
    @classmethod
    def _targets(cls, value: list[str]) -> list[str]:
        for entry in value:
            parts = urlsplit(entry)
            # Never echoed whole: userinfo or a query may be a credential.
            shown = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"
            if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
                raise ValueError(f"{shown!r}: a target is http(s)://host[:port][/path]")
            if "@" in parts.netloc or parts.query or parts.fragment:
                raise ValueError(f"{shown!r}: no userinfo, query or fragment in a target")
            try:
                canonical_host(parts.hostname)
                _ = parts.port
            except EgressDenied as exc:
                raise ValueError(f"{shown!r}: {exc.reason}") from None
        return value

    @field_validator("headers", "headers_from_env")
    @classmethod
    def _header_names(cls, value: dict[str, object]) -> dict[str, object]:
        for name in value:
            header_name(name)
        return value

    @field_validator("headers")
    @classmethod
    def _header_values(cls, value: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for name, secret in value.items():
            problem = header_value_problem(secret.get_secret_value())
            if problem is not None:
                raise ValueError(f"the value of {name!r} {problem}")  # the value is not echoed
        return value


class RouteConfig(ConfigModel):
    """Requests at ``prefix`` and below go to ``upstream``."""

    prefix: str = "/"
    upstream: str
    strip_prefix: bool = False

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not value.startswith("/") or "*" in value or "//" in value:
            raise ValueError(f"{value!r} must be a path prefix such as /mcp")
        return value


class HealthConfig(ConfigModel):
    """The gateway's own probes, answered before any check (off by default)."""

    liveness_path: str | None = None
    readiness_path: str | None = None

    @field_validator("liveness_path", "readiness_path")
    @classmethod
    def _path(cls, value: str | None) -> str | None:
        # Compared with the request's path: one without "/" (or with a query) never matches.
        if value is not None and (not value.startswith("/") or "?" in value or "#" in value):
            raise ValueError(f"{value!r} must be a path such as /healthz")
        return value


class GatewayConfig(ConfigModel):
    """The gateway: upstreams, routes, timeouts, egress allow-list, health endpoints."""

    listen: str = "127.0.0.1:8080"
    upstreams: dict[str, UpstreamConfig] = Field(min_length=1)
    routes: list[RouteConfig] = Field(min_length=1)
    timeouts: TimeoutsConfig = Field(default_factory=TimeoutsConfig)
    egress: EgressConfig = Field(default_factory=EgressConfig)
    breaker: BreakerConfig = Field(default_factory=BreakerConfig)
    health: HealthConfig = Field(default_factory=HealthConfig)
    health_checks: HealthCheckConfig = Field(default_factory=HealthCheckConfig)
    strip_headers: list[str] = Field(default_factory=list)
    strip_response_headers: list[str] = Field(default_factory=list)
    forward_client_ip: bool = True
    follow_redirects: bool = False
    max_connections: int = Field(default=100, ge=1, le=10_000)
    websockets: bool = True
    ca_file: str | None = None
    client: Literal["builtin", "httpx"] = "builtin"

    @field_validator("strip_headers", "strip_response_headers")
    @classmethod
    def _names(cls, value: list[str]) -> list[str]:
        return [header_name(name) for name in value]

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        host, _, port = value.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{value!r} must be host:port")
        return value

    @model_validator(mode="after")
    def _routes_name_upstreams(self) -> GatewayConfig:
        for route in self.routes:
            if route.upstream not in self.upstreams:
                raise ValueError(f"route {route.prefix}: unknown upstream {route.upstream!r}")
        return self


__all__ = [
    "EgressConfig",
    "GatewayConfig",
    "HealthCheckConfig",
    "HealthConfig",
    "RetryConfig",
    "RouteConfig",
    "TimeoutsConfig",
    "UpstreamConfig",
]
