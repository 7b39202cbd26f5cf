"""The monitor: responses (alert, step-up, block) that end on time, audit events, alerts."""

from __future__ import annotations

import pytest

from secmw.anomaly import (
    AlertDeduplicator,
    AnomalyMonitor,
    AuthFailureBurst,
    CallbackAlertSink,
    MemoryAlertSink,
    RateSpike,
    StructlogAlertSink,
    TokenReuse,
)
from secmw.anomaly.base import Alert, Anomaly
from secmw.audit.base import MemoryAuditSink
from secmw.errors import AccessDenied, RateLimited, StepUpRequired
from tests.anomaly_support import MONDAY_10H, FakeClock, context, event, principal

pytestmark = pytest.mark.anyio


def _monitor(clock: FakeClock, response: str = "block", **kw: object) -> AnomalyMonitor:
    detector = AuthFailureBurst(threshold=3, window=60, response=response, cool_down=300)  # type: ignore[arg-type]
    return AnomalyMonitor([detector], clock=clock, **kw)  # type: ignore[arg-type]


def _fail(monitor: AnomalyMonitor, client: str = "198.51.100.1", times: int = 3) -> None:
    for _ in range(times):
        monitor.observe(context(client=client), event("authn_token_invalid", client=client))


async def test_block_refuses_the_address_until_the_cool_down_ends() -> None:
    clock = FakeClock()
    monitor = _monitor(clock)
    _fail(monitor, times=2)
    await monitor.before(context())  # not yet
    _fail(monitor, times=1)
    with pytest.raises(RateLimited) as caught:
        await monitor.before(context())
    denial = caught.value
    assert denial.status == 429 and denial.event == "authn_brute_force"
    assert denial.retry_after == 300
    assert denial.problem_type.endswith("#abnormal-usage-detected")
    assert "198.51.100.1" not in (denial.detail or "")
    await monitor.before(context(client="198.51.100.2"))  # other addresses pass
    clock.advance(299.5)
    with pytest.raises(RateLimited) as caught:
        await monitor.before(context())
    assert caught.value.retry_after == pytest.approx(0.5)
    clock.advance(0.5)
    await monitor.before(context())  # ends exactly at the cool-down
    assert monitor.active("client", "198.51.100.1") is None


async def test_block_as_403_carries_retry_after() -> None:
    clock = FakeClock()
    monitor = _monitor(clock, block_status=403)
    _fail(monitor)
    with pytest.raises(AccessDenied) as caught:
        await monitor.before(context())
    assert caught.value.status == 403
    assert (b"retry-after", b"300") in caught.value.headers


async def test_alert_response_never_refuses() -> None:
    clock = FakeClock()
    monitor = _monitor(clock, response="alert")
    _fail(monitor, times=9)
    await monitor.before(context())
    await monitor.after_authentication(context(who=principal()))
    assert monitor.active("client", "198.51.100.1") is None


async def test_step_up_until_a_fresh_authentication_and_ends_on_time() -> None:
    clock = FakeClock()
    monitor = AnomalyMonitor(
        [TokenReuse(threshold=3, window=600, response="step_up", cool_down=600)],
        clock=clock,
        step_up_acr_values=["mfa"],
    )
    stale = principal("gina", credential="jti:t1", auth_time=MONDAY_10H - 3600)
    await monitor.after_authentication(context(client="192.0.2.1", who=stale))
    await monitor.after_authentication(context(client="192.0.2.2", who=stale))
    clock.advance(5)
    with pytest.raises(StepUpRequired) as caught:
        # the third address fires the detector and this very request is challenged
        await monitor.after_authentication(context(client="192.0.2.3", who=stale))
    assert caught.value.event == "authn_token_reuse"
    assert caught.value.acr_values == ("mfa",) and caught.value.max_age == 0
    clock.advance(100)
    with pytest.raises(StepUpRequired) as caught:
        await monitor.after_authentication(context(client="192.0.2.1", who=stale))
    assert caught.value.max_age == 100
    # a new token for the same subject, with MFA after the anomaly, passes
    fresh = principal("gina", credential="jti:t2", acr="mfa", auth_time=clock.now - 10)
    await monitor.after_authentication(context(client="192.0.2.1", who=fresh))
    clock.advance(500)
    await monitor.after_authentication(context(client="192.0.2.1", who=stale))  # window over


async def test_block_by_subject_acts_after_authentication() -> None:
    clock = FakeClock()
    detector = RateSpike(
        interval=60, factor=2, min_requests=3, alpha=1, warmup=1, response="block", cool_down=120
    )
    monitor = AnomalyMonitor([detector], clock=clock)
    who = principal("hank")
    await monitor.after_authentication(context(who=who))
    clock.advance(60)
    await monitor.after_authentication(context(who=who))
    await monitor.after_authentication(context(who=who))
    with pytest.raises(RateLimited) as caught:
        await monitor.after_authentication(context(who=who))
    assert caught.value.event == "anomaly_rate_spike"
    await monitor.before(context())  # not an address block
    await monitor.after_authentication(context(who=principal("ivy", credential="jti:x")))
    clock.advance(120)
    await monitor.after_authentication(context(who=who))


async def test_anomalies_are_published_after_the_request_event() -> None:
    clock = FakeClock()
    alerts = MemoryAlertSink()
    monitor = _monitor(clock, alert_sinks=[alerts])
    audit = MemoryAuditSink()
    sink = monitor.audit_sink(audit)
    for _ in range(3):
        ctx = context()
        request_event = event("authn_token_invalid")
        monitor.observe(ctx, request_event)
        await sink.emit(request_event)
    assert audit.names() == ["authn_token_invalid"] * 3 + ["authn_brute_force"]
    anomaly_event = audit.events[-1]
    assert anomaly_event.outcome == "failure" and anomaly_event.severity == "error"
    assert anomaly_event.client == "198.51.100.1"
    assert dict(anomaly_event.details) == {
        "detector": "auth_failures_by_client",
        "key_kind": "client",
        "key": "198.51.100.1",
        "response": "block",
        "evidence": {"count": 3, "window_s": 60, "last": "authn_token_invalid"},
        "cool_down_s": 300,
    }
    assert [a.anomaly.event for a in alerts.alerts] == ["authn_brute_force"]
    await sink.aclose()
    assert audit.closed and alerts.closed


async def test_credential_is_never_in_an_anomaly_event() -> None:
    clock = FakeClock()
    monitor = AnomalyMonitor([TokenReuse(threshold=2)], clock=clock)
    audit = MemoryAuditSink()
    sink = monitor.audit_sink(audit)
    who = principal("jo", credential="sha256:feedface")
    await monitor.after_authentication(context(client="192.0.2.1", who=who))
    await monitor.after_authentication(context(client="192.0.2.2", who=who))
    await sink.emit(event())
    line = audit.events[-1].to_json()
    assert audit.events[-1].name == "authn_token_reuse"
    assert "sha256:feedface" in line  # the fingerprint identifies; it does not authenticate
    assert "Bearer" not in line


async def test_alerts_are_deduplicated_per_key_per_window() -> None:
    clock = FakeClock()
    alerts = MemoryAlertSink()
    monitor = _monitor(clock, response="alert", alert_sinks=[alerts], dedup_window=600)
    audit = MemoryAuditSink()
    sink = monitor.audit_sink(audit)
    for _ in range(4):  # four detections for one address within the window
        _fail(monitor)
        clock.advance(10)
    _fail(monitor, client="198.51.100.9")
    await sink.emit(event())
    assert [a.anomaly.key for a in alerts.alerts] == ["198.51.100.1", "198.51.100.9"]
    assert audit.names().count("authn_brute_force") == 5  # the audit trail keeps them all
    clock.advance(600)
    _fail(monitor)
    await sink.emit(event())
    assert alerts.alerts[-1].anomaly.key == "198.51.100.1"
    assert alerts.alerts[-1].suppressed == 3


def test_deduplicator_window_boundary() -> None:
    dedup = AlertDeduplicator(window=60)
    anomaly = Anomaly("d", "e", "client", "k", "alert", "r")
    assert dedup.admit(anomaly, 0.0) == Alert(anomaly, 0)
    assert dedup.admit(anomaly, 59.9) is None
    assert dedup.admit(anomaly, 60.0) == Alert(anomaly, 1)


async def test_callback_sinks_plain_and_async() -> None:
    seen: list[str] = []

    def plain(alert: Alert) -> None:
        seen.append("plain:" + alert.anomaly.key)

    async def coroutine(alert: Alert) -> None:
        seen.append("async:" + alert.anomaly.key)

    anomaly = Anomaly("d", "e", "client", "k", "alert", "r")
    for sink in (CallbackAlertSink(plain), CallbackAlertSink(coroutine)):
        await sink.send(Alert(anomaly))
        await sink.aclose()
    assert seen == ["plain:k", "async:k"]


@pytest.mark.parametrize(
    ("claimed", "shown"),
    [
        pytest.param(
            "\x1b]0;pwned\x07\x1b[2J", "\\u001b]0;pwned\\u0007\\u001b[2J", id="terminal-escapes"
        ),
        pytest.param("root\ud800", "root\\ud800", id="lone-surrogate"),
        pytest.param("admin\u202egnp.exe", "admin\\u202egnp.exe", id="bidi-override"),
        pytest.param("a\nfake_line", "a\\u000afake_line", id="newline"),
        pytest.param("x" * 5000, "x" * 48 + "\u2026sha256:", id="overlong-bounded"),
    ],
)
async def test_structlog_alerts_show_a_claimed_subject_printable(claimed: str, shown: str) -> None:
    import io

    import structlog

    # A console renderer writing to a UTF-8 stream, as an app's terminal log would.
    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", write_through=True)
    logger = structlog.wrap_logger(
        structlog.PrintLogger(out),
        processors=[structlog.dev.ConsoleRenderer(colors=False, pad_event_to=0)],
    )
    monitor = AnomalyMonitor(
        [AuthFailureBurst(key_kind="subject", threshold=3)],
        alert_sinks=[StructlogAlertSink(logger)],
        clock=FakeClock(),
    )
    audit = MemoryAuditSink()
    sink = monitor.audit_sink(audit)
    for _ in range(3):
        ctx = context()
        ctx.state["claimed_subject"] = claimed  # a login form's user name
        failed = event("authn_login_fail")
        monitor.observe(ctx, failed)
        await sink.emit(failed)
    assert audit.names()[-1] == "authn_brute_force"
    out.buffer.seek(0)
    (line,) = out.buffer.read().decode("utf-8").splitlines()
    assert "secmw_anomaly" in line and f"key={shown}" in line
    assert line.isprintable()


async def test_structlog_sink_logs_a_warning() -> None:
    from structlog.testing import capture_logs

    anomaly = Anomaly(
        "token_reuse", "authn_token_reuse", "credential", "jti:1", "alert", "r", {"addresses": 5}
    )
    with capture_logs() as logs:
        await StructlogAlertSink().send(Alert(anomaly, suppressed=2))
    assert logs == [
        {
            "event": "secmw_anomaly",
            "log_level": "warning",
            "detector": "token_reuse",
            "anomaly": "authn_token_reuse",
            "key_kind": "credential",
            "key": "jti:1",
            "response": "alert",
            "reason": "r",
            "evidence": {"addresses": 5},
            "time": 0.0,
            "request_id": None,
            "client": None,
            "subject": None,
            "suppressed": 2,
        }
    ]


async def test_failing_alert_sink_is_reported_not_raised(
    capsys: pytest.CaptureFixture[str],
) -> None:
    def broken(alert: Alert) -> None:
        raise RuntimeError("secret detail")

    clock = FakeClock()
    monitor = _monitor(clock, alert_sinks=[CallbackAlertSink(broken)])
    _fail(monitor)
    await monitor.flush(None)
    err = capsys.readouterr().err
    assert "alert sink CallbackAlertSink failed with RuntimeError" in err
    assert "secret detail" not in err


def test_detector_names_must_be_unique() -> None:
    with pytest.raises(ValueError):
        AnomalyMonitor([AuthFailureBurst(), AuthFailureBurst()])


def test_tracked_keys_per_detector() -> None:
    clock = FakeClock()
    monitor = _monitor(clock)
    _fail(monitor, client="192.0.2.1", times=1)
    _fail(monitor, client="192.0.2.2", times=1)
    assert monitor.tracked_keys() == {"auth_failures_by_client": 2}


def test_the_audit_wrapper_exposes_the_inner_sinks_attributes() -> None:
    audit = MemoryAuditSink()
    sink = _monitor(FakeClock()).audit_sink(audit)
    assert sink.events is audit.events
    with pytest.raises(AttributeError):
        _ = sink.no_such_attribute
    with pytest.raises(AttributeError):
        _ = _monitor(FakeClock()).audit_sink(None).events
