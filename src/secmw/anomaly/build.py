"""Building the anomaly monitor, and the pipeline hooks of anomaly detection and metrics."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from secmw._contract import check_audit_sink
from secmw.anomaly.alerts import StructlogAlertSink
from secmw.anomaly.base import AlertSink, Anomaly, Detector
from secmw.anomaly.baseline import RateSpike
from secmw.anomaly.config import AnomalyConfig
from secmw.anomaly.detectors import AuthFailureBurst, RepeatedDenials, TokenReuse
from secmw.anomaly.monitor import AnomalyMonitor
from secmw.anomaly.profile import NewTarget, OffHours
from secmw.anomaly.shared import SharedState
from secmw.audit.base import AuditSink
from secmw.errors import ConfigError, ConfigIssue
from secmw.metrics.build import build_metrics
from secmw.metrics.collector import SecurityMetrics, samples
from secmw.metrics.config import MetricsConfig

_DAY = 86_400.0


def build_detectors(config: AnomalyConfig) -> list[Detector]:
    """The detectors the section switches on, in a fixed order."""
    cap = config.max_keys
    found: list[Detector] = []
    for kind, section in (
        ("client", config.auth_failures_by_client),
        ("subject", config.auth_failures_by_subject),
    ):
        if section.enabled:
            found.append(
                AuthFailureBurst(
                    key_kind=kind,  # type: ignore[arg-type]
                    failure_events=section.failure_events,
                    count_app_401=section.count_app_401,
                    threshold=section.threshold,
                    window=section.window,
                    response=section.response,
                    cool_down=section.cool_down,
                    max_keys=cap,
                )
            )
    reuse = config.token_reuse
    if reuse.enabled:
        found.append(
            TokenReuse(
                threshold=reuse.threshold,
                window=reuse.window,
                response=reuse.response,
                cool_down=reuse.cool_down,
                max_keys=cap,
            )
        )
    spike = config.rate_spike
    if spike.enabled:
        found.append(
            RateSpike(
                interval=spike.interval,
                factor=spike.factor,
                min_requests=spike.min_requests,
                alpha=spike.alpha,
                warmup=spike.warmup,
                response=spike.response,
                cool_down=spike.cool_down,
                max_keys=cap,
            )
        )
    denials = config.repeated_denials
    if denials.enabled:
        found.append(
            RepeatedDenials(
                denial_events=denials.denial_events,
                threshold=denials.threshold,
                window=denials.window,
                response=denials.response,
                cool_down=denials.cool_down,
                max_keys=cap,
            )
        )
    new = config.new_target
    if new.enabled:
        found.append(
            NewTarget(
                learning_period=new.learning_days * _DAY,
                min_requests=new.min_requests,
                route_depth=new.route_depth,
                max_targets=new.max_targets,
                response=new.response,
                cool_down=new.cool_down,
                max_keys=cap,
            )
        )
    hours = config.off_hours
    if hours.enabled:
        found.append(
            OffHours(
                learning_period=hours.learning_days * _DAY,
                min_requests=hours.min_requests,
                timezone=hours.timezone,
                response=hours.response,
                cool_down=hours.cool_down,
                max_keys=cap,
            )
        )
    return found


def build_alert_sinks(config: AnomalyConfig) -> list[AlertSink]:
    """The alert sinks the ``alerts`` table names."""
    sinks: list[AlertSink] = []
    if config.alerts.structlog:
        sinks.append(StructlogAlertSink())
    webhook = config.alerts.webhook
    if webhook is not None:
        from secmw.anomaly.webhook import WebhookAlertSink  # noqa: PLC0415 - needs httpx

        sinks.append(
            WebhookAlertSink(
                str(webhook.url),
                headers=webhook.headers,
                timeout=webhook.timeout,
                max_queue=webhook.max_queue,
                retries=webhook.retries,
                backoff=webhook.backoff,
            )
        )
    return sinks


def build_shared(config: AnomalyConfig) -> SharedState | None:
    """The Redis-backed shared state ``anomaly.storage`` names, or ``None`` for memory."""
    storage = config.storage
    if storage.url.startswith("memory://"):
        return None
    from secmw.ratelimit.redis_store import parse_target  # noqa: PLC0415 - Redis only

    try:
        parse_target(storage.url)
        return SharedState(
            storage.url,
            prefix=storage.prefix,
            connect_timeout=storage.connect_timeout,
            timeout=storage.timeout,
            on_failure=storage.on_failure,
            retry_interval=storage.retry_interval,
        )
    except ConfigError as exc:
        raise ConfigError(_prefixed("storage", exc)) from None


def fail_open_settings(config: AnomalyConfig) -> list[str]:
    """The section's fail-open settings: counting per instance while Redis is down."""
    storage = config.storage
    shared = config.enabled and not storage.url.startswith("memory://")
    if shared and storage.on_failure == "local_fallback":
        return ["anomaly.storage.on_failure=local_fallback"]
    return []


def build_monitor(
    config: AnomalyConfig,
    *,
    clock: Callable[[], float] = time.time,
    on_anomaly: Callable[[Anomaly], None] | None = None,
) -> AnomalyMonitor | None:
    """The monitor the ``anomaly`` section describes; ``None`` when switched off."""
    if not config.enabled:
        return None
    detectors = build_detectors(config)
    if not detectors:
        raise ConfigError([ConfigIssue("enabled", "every detector is switched off")])
    return AnomalyMonitor(
        detectors,
        shared=build_shared(config),
        alert_sinks=build_alert_sinks(config),
        dedup_window=config.alerts.dedup_window,
        block_status=config.block_status,
        step_up_acr_values=config.step_up_acr_values,
        clock=clock,
        max_enforced=config.max_keys,
        on_anomaly=on_anomaly,
    )


def _prefixed(prefix: str, exc: ConfigError) -> list[ConfigIssue]:
    return [ConfigIssue(f"{prefix}.{issue.key}".rstrip("."), issue.message) for issue in exc.issues]


def pipeline_hooks(
    anomaly: AnomalyConfig,
    metrics: MetricsConfig,
    audit: AuditSink | None,
    *,
    clock: Callable[[], float] = time.time,
) -> dict[str, Any]:
    """The ``Pipeline`` keywords for anomaly detection and metrics.

    Returns ``observers``, ``guard``, ``endpoints`` and ``audit`` (the given sink,
    wrapped when the monitor is on, so anomaly events are published); raises
    :class:`ConfigError` with keys under ``anomaly.`` and ``metrics.``.
    """
    issues: list[ConfigIssue] = []
    collector: SecurityMetrics | None = None
    endpoints: dict[str, Any] = {}
    monitor: AnomalyMonitor | None = None
    try:
        collector, endpoints = build_metrics(metrics)
    except ConfigError as exc:
        issues.extend(_prefixed("metrics", exc))
    try:
        monitor = build_monitor(
            anomaly, clock=clock, on_anomaly=collector.anomaly if collector else None
        )
    except ConfigError as exc:
        issues.extend(_prefixed("anomaly", exc))
    if issues:
        raise ConfigError(issues)
    observers: list[Any] = []
    if collector is not None:
        observers.append(collector)
    if monitor is not None:
        observers.append(monitor)
        check_audit_sink(audit)  # the wrapper would hide a sink that cannot work
        audit = monitor.audit_sink(audit)
        if collector is not None:
            watched = monitor
            collector.gauge(
                "secmw_anomaly_tracked_keys",
                "Keys each detector holds state for (bounded by anomaly.max_keys).",
                ("detector",),
                lambda: samples(watched.tracked_keys()),
            )
            collector.scraped_counter(
                "secmw_anomaly_evicted_keys_total",
                "Live keys each detector dropped to stay under anomaly.max_keys.",
                ("detector",),
                lambda: samples(watched.evicted_keys()),
            )
    guard = collector.guard(monitor) if collector is not None else monitor
    return {
        "observers": tuple(observers),
        "guard": guard,
        "endpoints": endpoints,
        "audit": audit,
    }
