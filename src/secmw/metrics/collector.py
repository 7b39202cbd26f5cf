"""The security metrics of one pipeline, fed by the audit event of every request.

Labels are low-cardinality by construction: event names, transports, status
classes, rate-limit tiers, finding kinds and detector names all come from
configuration or from secmw's code, never from paths, subjects or addresses.
Each metric still caps its series (see :mod:`secmw.metrics.registry`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from secmw.anomaly.base import ENFORCED, Anomaly
from secmw.audit.base import AuditEvent
from secmw.context import RequestContext
from secmw.hooks import Guard
from secmw.metrics.registry import DEFAULT_BUCKETS, GaugeCallback, Labels, Registry
from secmw.metrics.timing import AuthenticationTimer

_STATUS_CLASS = {1: "1xx", 2: "2xx", 3: "3xx", 4: "4xx", 5: "5xx"}


class SecurityMetrics:
    """Counters and histograms for every stage; an observer of the pipeline.

    ``observe`` costs a few dictionary updates per request. Metrics that other
    components own (audit queue depth, breaker state) are registered as gauges
    with :meth:`gauge`, read at scrape time.
    """

    __slots__ = (
        "anomalies",
        "auth_failures",
        "duration",
        "findings",
        "rate_limited",
        "registry",
        "requests",
        "stages",
        "timer",
    )

    def __init__(
        self,
        registry: Registry | None = None,
        *,
        buckets: Sequence[float] = DEFAULT_BUCKETS,
        max_series: int = 1000,
    ) -> None:
        self.registry = registry if registry is not None else Registry()
        reg = self.registry
        self.requests = reg.counter(
            "secmw_requests_total",
            "Requests by how they ended (audit event name) and status class.",
            ("transport", "event", "status_class"),
            max_series,
        )
        self.auth_failures = reg.counter(
            "secmw_auth_failures_total",
            "Failed authentications by reason (audit event name).",
            ("reason",),
            max_series,
        )
        self.rate_limited = reg.counter(
            "secmw_rate_limit_rejections_total",
            "Requests refused by the rate limiter, by violated tier.",
            ("tier",),
            max_series,
        )
        self.findings = reg.counter(
            "secmw_findings_total",
            "Findings by stage and kind (redactions, inspection signals).",
            ("source", "kind"),
            max_series,
        )
        self.anomalies = reg.counter(
            "secmw_anomalies_total",
            "Anomalies detected, by detector and configured response.",
            ("detector", "response"),
            max_series,
        )
        self.duration = reg.histogram(
            "secmw_request_duration_seconds",
            "Time from the request's arrival to its audit record (secmw and the app).",
            ("transport", "outcome"),
            buckets,
            max_series,
        )
        self.stages = reg.histogram(
            "secmw_stage_duration_seconds",
            "Time spent in one pipeline stage (authenticate), by outcome.",
            ("stage", "outcome"),
            buckets,
            max_series,
        )
        self.timer: AuthenticationTimer | None = None

    def guard(self, inner: Guard | None = None) -> AuthenticationTimer:
        """A guard that times authentication and then runs ``inner``; pass it to the pipeline."""
        self.timer = AuthenticationTimer(self.stages, inner)
        return self.timer

    def observe(self, ctx: RequestContext, event: AuditEvent) -> None:
        """Count the request's outcome, failures, rejections and findings."""
        if self.timer is not None:
            self.timer.failed(ctx)
        transport = event.transport or "other"
        status = event.status
        status_class = _STATUS_CLASS.get(status // 100, "other") if status else "none"
        self.requests.inc((transport, event.name, status_class))
        if event.outcome == "failure":
            if event.name.startswith("authn_"):
                # An anomaly block is named after its detector (authn_brute_force), but
                # no authentication ran: it is counted with the requests, not here.
                if ENFORCED not in ctx.state:
                    self.auth_failures.inc((event.name,))
            elif event.name == "excess_rate_limit_exceeded":
                rate = ctx.state.get("rate")
                tiers = getattr(rate, "policies", ()) or ("unknown",)
                for tier in tiers:
                    self.rate_limited.inc((str(tier),))
        for finding in ctx.findings:
            self.findings.inc((finding.source, finding.kind))
        if event.latency_ms is not None:
            self.duration.observe(event.latency_ms / 1000.0, (transport, event.outcome))

    def anomaly(self, anomaly: Anomaly) -> None:
        """Count one anomaly (the monitor's ``on_anomaly`` hook)."""
        self.anomalies.inc((anomaly.detector, anomaly.response))

    def gauge(
        self, name: str, help: str, labelnames: Sequence[str], callback: GaugeCallback
    ) -> None:
        """Register a scrape-time gauge (another component's queue depth, state)."""
        self.registry.gauge(name, help, labelnames, callback)

    def scraped_counter(
        self, name: str, help: str, labelnames: Sequence[str], callback: GaugeCallback
    ) -> None:
        """Register a counter another component keeps, read at scrape time (evictions)."""
        self.registry.scraped_counter(name, help, labelnames, callback)

    def render(self) -> str:
        """The Prometheus text exposition of every metric."""
        return self.registry.render()


def samples(values: dict[str, int]) -> Iterable[tuple[Labels, float]]:
    """Gauge samples from a ``{label: value}`` mapping with one label."""
    return [((name,), float(value)) for name, value in values.items()]
