"""Metrics: the Prometheus text format, bounded labels, the collector and the endpoint."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import pytest

from secmw.anomaly.base import Anomaly
from secmw.context import Finding
from secmw.errors import ConfigError
from secmw.metrics import MetricsEndpoint, Registry, SecurityMetrics, build_metrics
from secmw.metrics.config import MetricsConfig
from secmw.ratelimit.base import RateDecision
from tests.anomaly_support import context, event
from tests.support import http_scope


def test_counter_and_histogram_exposition() -> None:
    registry = Registry()
    counter = registry.counter("demo_total", "A demo.", ("kind",))
    counter.inc(("a",))
    counter.inc(("a",), 2)
    counter.inc(('q"u\\o\nte',))
    histogram = registry.histogram("demo_seconds", "Durations.", (), buckets=(0.1, 1.0))
    for value in (0.05, 0.1, 0.5, 3.0):
        histogram.observe(value)
    assert registry.render() == (
        "# HELP demo_total A demo.\n"
        "# TYPE demo_total counter\n"
        'demo_total{kind="a"} 3\n'
        'demo_total{kind="q\\"u\\\\o\\nte"} 1\n'
        "# HELP demo_seconds Durations.\n"
        "# TYPE demo_seconds histogram\n"
        'demo_seconds_bucket{le="0.1"} 2\n'
        'demo_seconds_bucket{le="1"} 3\n'
        'demo_seconds_bucket{le="+Inf"} 4\n'
        "demo_seconds_sum 3.65\n"
        "demo_seconds_count 4\n"
    )
    assert histogram.count() == 4


def test_series_are_capped_and_overflow_to_other() -> None:
    registry = Registry()
    counter = registry.counter("c_total", "c", ("path",), max_series=3)
    histogram = registry.histogram("h", "h", ("path",), buckets=(1.0,), max_series=2)
    for index in range(100):
        counter.inc((f"/users/{index}",))
        histogram.observe(0.5, (f"/users/{index}",))
    assert counter.value(("other",)) == 97
    assert histogram.count(("other",)) == 98
    assert registry.render().count("\nc_total{") == 4


def test_gauges_read_at_scrape_time_and_survive_a_failing_callback() -> None:
    registry = Registry()
    depth = {"value": 3}
    registry.gauge("q_depth", "Queue depth.", (), lambda: [((), depth["value"])])

    def broken() -> list[tuple[tuple[str, ...], float]]:
        raise RuntimeError

    registry.gauge("broken", "Broken.", ("x",), broken)
    assert "q_depth 3\n" in registry.render()
    depth["value"] = 7
    text = registry.render()
    assert "q_depth 7\n" in text and "# TYPE broken gauge\n" in text
    with pytest.raises(ValueError):
        registry.counter("q_depth", "again")


def test_a_gauge_of_nan_or_with_bad_labels_never_breaks_the_scrape() -> None:
    registry = Registry()
    registry.gauge("ratio", "A ratio.", (), lambda: [((), float("nan"))])
    registry.gauge("odd", "Bad labels.", ("x",), lambda: [(("a", "b"), 1.0)])
    registry.gauge("fine", "Fine.", (), lambda: [((), 2.0)])
    text = registry.render()
    assert "ratio NaN\n" in text
    assert "# TYPE odd gauge\n" in text and "odd{" not in text
    assert "fine 2\n" in text


def test_collector_counts_every_stage_with_bounded_labels() -> None:
    metrics = SecurityMetrics(buckets=(0.01, 1.0))
    ok = context()
    ok.findings.append(Finding("redactor", "github_token"))
    metrics.observe(ok, event("authz_allow", status=200))
    metrics.observe(context(), event("authn_token_invalid", status=401))
    limited = context()
    limited.state["rate"] = RateDecision(False, 1.0, policies=("burst", "daily"))
    metrics.observe(limited, event("excess_rate_limit_exceeded", subject="alice", status=429))
    metrics.anomaly(Anomaly("rate_spike", "anomaly_rate_spike", "subject", "alice", "alert", "r"))
    text = metrics.render()
    assert 'secmw_requests_total{transport="http",event="authz_allow",status_class="2xx"} 1' in text
    assert 'secmw_auth_failures_total{reason="authn_token_invalid"} 1' in text
    assert 'secmw_rate_limit_rejections_total{tier="burst"} 1' in text
    assert 'secmw_rate_limit_rejections_total{tier="daily"} 1' in text
    assert 'secmw_findings_total{source="redactor",kind="github_token"} 1' in text
    assert 'secmw_anomalies_total{detector="rate_spike",response="alert"} 1' in text
    assert "secmw_request_duration_seconds_bucket" not in text  # events without latency
    assert "alice" not in text and "198.51.100.1" not in text and "/api/items" not in text


def test_collector_observes_latency() -> None:
    metrics = SecurityMetrics(buckets=(0.01, 1.0))
    from secmw.audit.base import AuditEvent

    metrics.observe(
        context(), AuditEvent("authz_allow", "success", transport="http", latency_ms=5.0)
    )
    assert metrics.duration.count(("http", "success")) == 1


def _scrape(
    endpoint: MetricsEndpoint,
    *,
    client: str = "10.0.0.5",
    headers: tuple[tuple[str, str], ...] = (),
    method: str = "GET",
) -> tuple[int, dict[bytes, bytes], bytes]:
    from secmw.context import RequestContext

    ctx = RequestContext.from_scope(
        http_scope("/metrics", method=method, client=(client, 1), headers=headers)
    )
    status, raw, body = endpoint(ctx)
    return status, dict(raw), body


@pytest.mark.parametrize(
    ("client", "headers", "status"),
    [
        pytest.param(
            "10.0.0.5", [("authorization", "Bearer s3cret-scrape")], 200, id="inside+token"
        ),
        pytest.param(
            "10.0.0.5", [("authorization", "bearer s3cret-scrape")], 200, id="scheme-case"
        ),
        pytest.param("10.0.0.5", [], 401, id="no-token"),
        pytest.param("10.0.0.5", [("authorization", "Bearer wrong")], 401, id="wrong-token"),
        pytest.param(
            "10.0.0.5", [("authorization", "Basic s3cret-scrape")], 401, id="wrong-scheme"
        ),
        pytest.param(
            "10.0.0.5",
            [("authorization", "Bearer s3cret-scrape"), ("authorization", "Bearer s3cret-scrape")],
            401,
            id="twice",
        ),
        pytest.param("192.0.2.1", [("authorization", "Bearer s3cret-scrape")], 403, id="outside"),
    ],
)
def test_endpoint_access(client: str, headers: list[tuple[str, str]], status: int) -> None:
    endpoint = MetricsEndpoint(
        lambda: "up 1\n", token="s3cret-scrape", allow_networks=[ipaddress.ip_network("10.0.0.0/8")]
    )
    got, raw, body = _scrape(endpoint, client=client, headers=tuple(headers))
    assert got == status
    assert raw[b"cache-control"] == b"no-store"
    if status == 200:
        assert raw[b"content-type"] == b"text/plain; version=0.0.4; charset=utf-8"
        assert body == b"up 1\n"
    else:
        assert b"up 1" not in body
        problem = json.loads(body)
        assert problem["status"] == status and problem["detail"] and problem["request_id"]
    if status == 401:
        assert raw[b"www-authenticate"] == b'Bearer realm="metrics"'


def test_endpoint_methods() -> None:
    endpoint = MetricsEndpoint(lambda: "up 1\n")
    assert _scrape(endpoint, method="HEAD")[0] == 200
    assert _scrape(endpoint, method="HEAD")[2] == b""
    status, raw, _ = _scrape(endpoint, method="POST")
    assert status == 405 and raw[b"allow"] == b"GET, HEAD"


def test_build_metrics_reads_the_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert build_metrics(MetricsConfig()) == (None, {})
    monkeypatch.setenv("SCRAPE_TOKEN", "from-env")
    metrics, endpoints = build_metrics(MetricsConfig(enabled=True, token_env="SCRAPE_TOKEN"))
    assert metrics is not None and list(endpoints) == ["/metrics"]
    assert _scrape(endpoints["/metrics"], headers=(("authorization", "Bearer from-env"),))[0] == 200
    token = tmp_path / "token"
    token.write_text("from-file\n")
    _, endpoints = build_metrics(MetricsConfig(enabled=True, token_file=str(token), path="/ops/m"))
    assert _scrape(endpoints["/ops/m"], headers=(("authorization", "Bearer from-file"),))[0] == 200
    metrics, endpoints = build_metrics(MetricsConfig(enabled=True, endpoint=False))
    assert metrics is not None and endpoints == {}


@pytest.mark.parametrize(
    ("section", "key", "message"),
    [
        pytest.param(
            {"enabled": True, "token_env": "SECMW_TEST_UNSET"}, "token_env", "is empty", id="env"
        ),
        pytest.param(
            {"enabled": True, "token_file": "/nonexistent/t"},
            "token_file",
            "cannot read",
            id="file",
        ),
    ],
)
def test_build_metrics_token_errors(section: dict[str, object], key: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        build_metrics(MetricsConfig.model_validate(section))
    assert caught.value.issues[0].key == key
    assert message in caught.value.issues[0].message
