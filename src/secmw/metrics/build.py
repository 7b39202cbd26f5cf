"""Building the metrics and their scrape endpoint from the ``metrics`` section."""

from __future__ import annotations

import ipaddress
import os

from secmw._config_base import read_regular_file
from secmw.errors import ConfigError, ConfigIssue
from secmw.hooks import Endpoint
from secmw.metrics.collector import SecurityMetrics
from secmw.metrics.config import MetricsConfig
from secmw.metrics.endpoint import MetricsEndpoint


def _token(config: MetricsConfig) -> str | None:
    if config.token_env:
        token = os.environ.get(config.token_env, "").strip()
        if not token:
            raise ConfigError(
                [ConfigIssue("token_env", f"environment variable {config.token_env} is empty")]
            )
        return token
    if config.token_file:
        try:
            token = read_regular_file(config.token_file, 64 * 1024).decode("utf-8").strip()
        except (OSError, ValueError) as exc:
            raise ConfigError(
                [ConfigIssue("token_file", f"cannot read the file: {type(exc).__name__}")]
            ) from None
        if not token:
            raise ConfigError([ConfigIssue("token_file", "the file is empty")])
        return token
    return None


def build_metrics(config: MetricsConfig) -> tuple[SecurityMetrics | None, dict[str, Endpoint]]:
    """The metrics and the endpoints serving them; ``(None, {})`` when switched off."""
    if not config.enabled:
        return None, {}
    metrics = SecurityMetrics(buckets=config.buckets, max_series=config.max_series)
    if not config.endpoint:
        return metrics, {}
    endpoint = MetricsEndpoint(
        metrics.render,
        token=_token(config),
        allow_networks=[ipaddress.ip_network(cidr) for cidr in config.allow_cidrs],
    )
    return metrics, {config.path: endpoint}
