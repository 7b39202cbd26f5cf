"""The pipeline hooks (observers, guard, endpoints) and the anomaly/metrics config sections."""

from __future__ import annotations

from typing import Any

import pytest

from secmw import Pipeline, SecurityMiddleware
from secmw.anomaly import AnomalyAuditSink, AnomalyMonitor
from secmw.anomaly.webhook import WebhookAlertSink
from secmw.audit.base import AuditEvent
from secmw.config import build_pipeline, load_config
from secmw.context import Principal, RequestContext
from secmw.errors import AccessDenied, ConfigError
from secmw.metrics.timing import AuthenticationTimer
from secmw.testing import AuditCapture
from tests.support import EchoApp, call, http_scope

pytestmark = pytest.mark.anyio

ALICE = Principal(subject="alice", auth_method="test")


class Auth:
    def __init__(self, log: list[str]) -> None:
        self.log = log

    async def authenticate(self, ctx: RequestContext) -> Principal:
        self.log.append("authenticate")
        return ALICE


class Guard:
    def __init__(self, log: list[str], refuse_after: bool = False) -> None:
        self.log, self.refuse_after = log, refuse_after

    async def before(self, ctx: RequestContext) -> None:
        self.log.append(f"before:{ctx.principal.subject or '-'}")

    async def after_authentication(self, ctx: RequestContext) -> None:
        self.log.append(f"after:{ctx.principal.subject}")
        if self.refuse_after:
            denial = AccessDenied("No.", reason="guard says no")
            denial.event = "anomaly_test"
            raise denial


class Observer:
    def __init__(self, log: list[str]) -> None:
        self.log = log

    def observe(self, ctx: RequestContext, event: AuditEvent) -> None:
        self.log.append(f"observe:{event.name}:{event.status}")


class Broken:
    def observe(self, ctx: RequestContext, event: AuditEvent) -> None:
        raise RuntimeError("token=abc")


async def test_guard_runs_around_authentication_and_observers_see_the_event() -> None:
    log: list[str] = []
    audit = AuditCapture()
    pipeline = Pipeline(
        authenticator=Auth(log), guard=Guard(log), observers=(Observer(log),), audit=audit
    )
    response = await call(SecurityMiddleware(EchoApp(), pipeline=pipeline), http_scope("/x"))
    assert response.status == 200
    assert log == ["before:-", "authenticate", "after:alice", "observe:authz_allow:200"]


async def test_startup_names_the_guard() -> None:
    audit = AuditCapture()
    await Pipeline(guard=Guard([]), audit=audit).startup()
    assert audit.last.details["stages"] == ["guard", "authorize"]
    await Pipeline(audit=audit).startup()
    assert audit.last.details["stages"] == ["authorize"]


async def test_guard_denial_is_rendered_and_audited_with_its_event() -> None:
    log: list[str] = []
    audit = AuditCapture()
    pipeline = Pipeline(authenticator=Auth(log), guard=Guard(log, refuse_after=True), audit=audit)
    response = await call(SecurityMiddleware(EchoApp(), pipeline=pipeline), http_scope("/x"))
    assert response.status == 403
    assert audit.last.name == "anomaly_test" and audit.last.reason == "guard says no"


async def test_observers_run_without_an_audit_sink_and_failures_are_contained(
    capsys: pytest.CaptureFixture[str],
) -> None:
    log: list[str] = []
    pipeline = Pipeline(authenticator=Auth(log), observers=(Broken(), Observer(log)))
    response = await call(SecurityMiddleware(EchoApp(), pipeline=pipeline), http_scope("/x"))
    assert response.status == 200
    assert log[-1] == "observe:authz_allow:200"
    err = capsys.readouterr().err
    assert "observer Broken failed with RuntimeError" in err and "token=abc" not in err


async def test_endpoints_are_served_after_the_client_guard_only() -> None:
    log: list[str] = []
    audit = AuditCapture()

    def hello(ctx: RequestContext) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        return 200, [(b"content-type", b"text/plain")], b"hello"

    pipeline = Pipeline(
        authenticator=Auth(log), guard=Guard(log), audit=audit, endpoints={"/hello": hello}
    )
    app = SecurityMiddleware(EchoApp(), pipeline=pipeline)
    response = await call(app, http_scope("/hello"))
    assert (response.status, response.body) == (200, b"hello")
    assert response.header("x-request-id") == audit.last.request_id
    assert log == ["before:-"]  # a blocked address stays blocked; nothing else runs
    assert (audit.last.name, audit.last.reason, audit.last.status) == (
        "authz_allow",
        "served by secmw",
        200,
    )
    assert (await call(app, http_scope("/hello/x"))).status == 200  # not an endpoint: the app
    assert log == ["before:-", "before:-", "authenticate", "after:alice"]


def test_sections_are_off_by_default() -> None:
    pipeline = build_pipeline(load_config(None))
    assert pipeline.observers == () and pipeline.endpoints == {}
    assert not isinstance(pipeline.audit, AnomalyAuditSink)


def test_configured_monitor_and_metrics_are_wired() -> None:
    config = load_config(
        {
            "audit": {"sink": "memory"},
            "anomaly": {
                "enabled": True,
                "off_hours": {"enabled": True, "timezone": "Europe/Paris"},
                "alerts": {"webhook": {"url": "https://alerts.example.test/hook"}},
            },
            "metrics": {"enabled": True, "allow_cidrs": ["10.0.0.0/8"], "path": "/ops/metrics"},
        }
    )
    pipeline = build_pipeline(config)
    timer = pipeline.guard
    assert isinstance(timer, AuthenticationTimer)  # metrics time authentication
    monitor = timer.inner
    assert isinstance(monitor, AnomalyMonitor)
    assert [d.name for d in monitor.detectors] == [
        "auth_failures_by_client",
        "auth_failures_by_subject",
        "token_reuse",
        "rate_spike",
        "repeated_denials",
        "off_hours",
    ]
    assert any(isinstance(s, WebhookAlertSink) for s in monitor.alert_sinks)
    assert isinstance(pipeline.audit, AnomalyAuditSink)
    assert list(pipeline.endpoints) == ["/ops/metrics"]
    assert pipeline.fail_open == ()


def test_public_metrics_is_a_listed_fail_open() -> None:
    pipeline = build_pipeline(load_config({"metrics": {"enabled": True, "public": True}}))
    assert pipeline.fail_open == ("metrics.public",)
    timer = pipeline.guard
    assert isinstance(timer, AuthenticationTimer) and timer.inner is None


@pytest.mark.parametrize(
    ("data", "key", "message"),
    [
        pytest.param(
            {"metrics": {"enabled": True}}, "metrics", "needs token_env", id="unrestricted"
        ),
        pytest.param({"metrics": {"path": "metrics"}}, "metrics.path", "absolute path", id="path"),
        pytest.param(  # requests are matched canonical: never served, the app got the scrape
            {"metrics": {"path": "/metrics/"}},
            "metrics.path",
            "matched as '/metrics'",
            id="path-trailing-slash",
        ),
        pytest.param(
            {"metrics": {"path": "/a/../metrics"}},
            "metrics.path",
            "matched as '/metrics'",
            id="path-dot-dot",
        ),
        pytest.param(
            {"metrics": {"allow_cidrs": ["10.0.0.1/8"]}}, "metrics.allow_cidrs", "CIDR", id="cidr"
        ),
        pytest.param(
            {"metrics": {"token_env": "A", "token_file": "b"}},
            "metrics",
            "not both",
            id="two-tokens",
        ),
        pytest.param(
            {"anomaly": {"off_hours": {"timezone": "Mars/Base"}}},
            "anomaly.off_hours.timezone",
            "time zone",
            id="tz",
        ),
        pytest.param(  # a region's directory in the zone database: IsADirectoryError
            {"anomaly": {"off_hours": {"timezone": "America"}}},
            "anomaly.off_hours.timezone",
            "time zone",
            id="tz-region",
        ),
        pytest.param(  # ENAMETOOLONG
            {"anomaly": {"off_hours": {"timezone": "x" * 300}}},
            "anomaly.off_hours.timezone",
            "time zone",
            id="tz-too-long",
        ),
        pytest.param(
            {"anomaly": {"token_reuse": {"threshold": 1}}},
            "anomaly.token_reuse.threshold",
            "greater",
            id="reuse",
        ),
        pytest.param(
            {"anomaly": {"rate_spike": {"response": "ban"}}},
            "anomaly.rate_spike.response",
            "alert",
            id="response",
        ),
        pytest.param(
            {"anomaly": {"block_status": 418}}, "anomaly.block_status", "429", id="status"
        ),
        pytest.param({"anomaly": {"tresholds": 1}}, "anomaly.tresholds", "unknown key", id="typo"),
    ],
)
def test_invalid_sections_name_their_key(data: dict[str, Any], key: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(data)
    issue = next(i for i in caught.value.issues if i.key == key)
    assert message in issue.message


def test_build_errors_of_both_sections_are_reported_together() -> None:
    off = {"enabled": False}
    config = load_config(
        {
            "anomaly": {
                "enabled": True,
                **dict.fromkeys(
                    (
                        "auth_failures_by_client",
                        "auth_failures_by_subject",
                        "token_reuse",
                        "rate_spike",
                        "repeated_denials",
                    ),
                    off,
                ),
            },
            "metrics": {"enabled": True, "token_env": "SECMW_TEST_NOT_SET"},
        }
    )
    with pytest.raises(ConfigError) as caught:
        build_pipeline(config)
    assert [i.key for i in caught.value.issues] == ["metrics.token_env", "anomaly.enabled"]
