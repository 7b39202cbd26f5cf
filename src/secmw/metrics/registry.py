"""Counters, histograms and callback gauges, rendered in the Prometheus text format.

Written here rather than taken from ``prometheus_client`` to keep the core
dependencies fixed; the exposition is format 0.0.4. Every metric caps its
number of label combinations (``max_series``): once full, new combinations are
counted under the label value ``other``, so a label fed from request data can
never grow memory or scrape size without bound.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence

Labels = tuple[str, ...]
GaugeCallback = Callable[[], Iterable[tuple[Labels, float]]]

DEFAULT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def _selector(names: Sequence[str], values: Labels, extra: str = "") -> str:
    parts = [f'{name}="{_escape(value)}"' for name, value in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


class _Metric(ABC):
    __slots__ = ("_other", "help", "labelnames", "max_series", "name")

    kind = "untyped"

    def __init__(self, name: str, help: str, labelnames: Sequence[str], max_series: int) -> None:
        self.name = name
        self.help = help
        self.labelnames = tuple(labelnames)
        self.max_series = max_series
        self._other: Labels = ("other",) * len(self.labelnames)

    def _header(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]

    @abstractmethod
    def render(self) -> list[str]:
        """The metric's exposition lines."""


class Counter(_Metric):
    """A monotonically increasing count per label combination."""

    __slots__ = ("_values",)

    kind = "counter"

    def __init__(
        self, name: str, help: str, labelnames: Sequence[str] = (), max_series: int = 1000
    ) -> None:
        super().__init__(name, help, labelnames, max_series)
        self._values: dict[Labels, float] = {}

    def inc(self, labels: Labels = (), amount: float = 1.0) -> None:
        """Add ``amount`` to the series ``labels``."""
        values = self._values
        if labels not in values and len(values) >= self.max_series:
            labels = self._other
        values[labels] = values.get(labels, 0.0) + amount

    def value(self, labels: Labels = ()) -> float:
        """The current count of ``labels`` (0 when never counted)."""
        return self._values.get(labels, 0.0)

    def render(self) -> list[str]:
        """The metric's exposition lines."""
        lines = self._header()
        for labels, value in sorted(self._values.items()):
            lines.append(f"{self.name}{_selector(self.labelnames, labels)} {_number(value)}")
        return lines


class Histogram(_Metric):
    """Observations counted in cumulative buckets, with their sum and count."""

    __slots__ = ("_series", "buckets")

    kind = "histogram"

    def __init__(
        self,
        name: str,
        help: str,
        labelnames: Sequence[str] = (),
        buckets: Sequence[float] = DEFAULT_BUCKETS,
        max_series: int = 1000,
    ) -> None:
        super().__init__(name, help, labelnames, max_series)
        self.buckets = tuple(sorted(buckets))
        # labels -> per-bucket counts (last slot is +Inf), then the sum at the end
        self._series: dict[Labels, list[float]] = {}

    def observe(self, value: float, labels: Labels = ()) -> None:
        """Record one observation of ``value``."""
        series = self._series.get(labels)
        if series is None:
            if len(self._series) >= self.max_series:
                labels = self._other
                series = self._series.get(labels)
            if series is None:
                series = [0.0] * (len(self.buckets) + 2)
                self._series[labels] = series
        series[bisect_left(self.buckets, value)] += 1
        series[-1] += value

    def count(self, labels: Labels = ()) -> int:
        """How many observations ``labels`` has."""
        series = self._series.get(labels)
        return int(sum(series[:-1])) if series is not None else 0

    def render(self) -> list[str]:
        """The metric's exposition lines."""
        lines = self._header()
        names = self.labelnames
        for labels, series in sorted(self._series.items()):
            running = 0.0
            for bound, count in zip((*self.buckets, math.inf), series[:-1], strict=True):
                running += count
                le = f'le="{_number(bound)}"'
                lines.append(f"{self.name}_bucket{_selector(names, labels, le)} {_number(running)}")
            lines.append(f"{self.name}_sum{_selector(names, labels)} {_number(series[-1])}")
            lines.append(f"{self.name}_count{_selector(names, labels)} {_number(running)}")
        return lines


class Gauge(_Metric):
    """A value read at scrape time from a callback (queue depth, breaker state)."""

    __slots__ = ("_callback",)

    kind = "gauge"

    def __init__(
        self, name: str, help: str, labelnames: Sequence[str], callback: GaugeCallback
    ) -> None:
        super().__init__(name, help, labelnames, 1000)
        self._callback = callback

    def render(self) -> list[str]:
        """The metric's exposition lines (a failing callback renders no samples)."""
        lines = self._header()
        try:
            samples = sorted(self._callback())[: self.max_series]
            rendered = [
                f"{self.name}{_selector(self.labelnames, labels)} {_number(float(value))}"
                for labels, value in samples
            ]
        except Exception:  # a callback bug (bad labels, a value that is no number)
            return lines
        return lines + rendered


class ScrapedCounter(Gauge):
    """A count another component keeps (it only grows), read at scrape time."""

    __slots__ = ()

    kind = "counter"


class Registry:
    """The set of metrics one pipeline exposes."""

    __slots__ = ("_metrics",)

    def __init__(self) -> None:
        self._metrics: dict[str, _Metric] = {}

    def _add(self, metric: _Metric) -> None:
        if metric.name in self._metrics:
            raise ValueError(f"metric {metric.name} is already registered")
        self._metrics[metric.name] = metric

    def counter(
        self, name: str, help: str, labelnames: Sequence[str] = (), max_series: int = 1000
    ) -> Counter:
        """Register and return a counter."""
        metric = Counter(name, help, labelnames, max_series)
        self._add(metric)
        return metric

    def histogram(
        self,
        name: str,
        help: str,
        labelnames: Sequence[str] = (),
        buckets: Sequence[float] = DEFAULT_BUCKETS,
        max_series: int = 1000,
    ) -> Histogram:
        """Register and return a histogram."""
        metric = Histogram(name, help, labelnames, buckets, max_series)
        self._add(metric)
        return metric

    def gauge(
        self, name: str, help: str, labelnames: Sequence[str], callback: GaugeCallback
    ) -> Gauge:
        """Register a gauge whose samples ``callback`` returns at scrape time."""
        metric = Gauge(name, help, labelnames, callback)
        self._add(metric)
        return metric

    def scraped_counter(
        self, name: str, help: str, labelnames: Sequence[str], callback: GaugeCallback
    ) -> ScrapedCounter:
        """Register a counter whose samples ``callback`` returns at scrape time."""
        metric = ScrapedCounter(name, help, labelnames, callback)
        self._add(metric)
        return metric

    def render(self) -> str:
        """Every metric in the Prometheus text exposition format."""
        lines: list[str] = []
        for metric in self._metrics.values():
            lines.extend(metric.render())
        return "\n".join(lines) + "\n"
