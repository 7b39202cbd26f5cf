"""Security metrics: counters and histograms per stage, Prometheus text exposition."""

from secmw.metrics.build import build_metrics
from secmw.metrics.collector import SecurityMetrics
from secmw.metrics.endpoint import MetricsEndpoint
from secmw.metrics.registry import Counter, Gauge, Histogram, Registry

__all__ = [
    "Counter",
    "Gauge",
    "Histogram",
    "MetricsEndpoint",
    "Registry",
    "SecurityMetrics",
    "build_metrics",
]
