"""The audit trail through SecurityMiddleware: one line per outcome, no credentials."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import structlog

from secmw import SecurityMiddleware
from secmw.audit import AuditEvent, verify_files
from secmw.context import Principal
from secmw.errors import ComponentError
from secmw.policy.base import Decision, Effect
from secmw.ratelimit.base import RateDecision
from secmw.testing import TokenIssuer
from tests.audit_support import fallback_records, make_sink, records, trail_files, wait_until
from tests.support import EchoApp, Receiver, Sender, call, http_scope, ws_scope

pytestmark = pytest.mark.anyio

PUBLIC = ["/health"]


class Raising:
    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("app broke")


async def _socket(scope: Any, receive: Any, send: Any) -> None:
    await receive()
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.close", "code": 1000})


async def test_every_outcome_is_one_line_with_the_right_fields_and_no_credential(
    tmp_path: Path,
) -> None:
    issuer, stranger = TokenIssuer(), TokenIssuer()
    good = issuer.mint("alice", tenant="t1", scopes=["read"])
    expired = issuer.mint("bob", expires_in=-600)
    forged = stranger.mint("mallory", headers={"kid": issuer.kid})
    tokens = [good, expired, forged]
    path = tmp_path / "audit.jsonl"
    sink, fallback = make_sink(path, rotate_bytes=8192)
    config = {"auth": {"jwt": issuer.jwt_config(), "public_paths": PUBLIC}, "max_body_bytes": 64}
    echo = EchoApp()
    app = SecurityMiddleware(echo, config, audit=sink)
    crash = SecurityMiddleware(Raising(), pipeline=app.pipeline)
    socket = SecurityMiddleware(_socket, pipeline=app.pipeline)

    def bearer(token: str, path: str = "/api", **extra: Any) -> dict[str, Any]:
        return http_scope(path, headers=[("authorization", f"Bearer {token}")], **extra)

    hostile = "/api/\u2028x\r\ny"
    cases: list[tuple[str, int, dict[str, Any]]] = []

    async def run(rid: str, scope: dict[str, Any], receive: Any = None) -> Sender:
        scope["headers"].append((b"x-request-id", rid.encode()))
        sent = await call(app, scope, receive)
        return sent

    sent = await run("ok-1", bearer(good))
    cases.append(
        (
            "ok-1",
            sent.status,
            {
                "event": "authz_allow",
                "status": 200,
                "subject": "alice",
                "tenant": "t1",
                "auth_method": "jwt",
                "outcome": "success",
            },
        )
    )
    sent = await run("missing-1", http_scope("/api"))
    cases.append(
        (
            "missing-1",
            sent.status,
            {
                "event": "authn_token_missing",
                "status": 401,
                "outcome": "failure",
                "severity": "warning",
            },
        )
    )
    sent = await run("expired-1", bearer(expired))
    cases.append(
        (
            "expired-1",
            sent.status,
            {"event": "authn_token_expired", "status": 401, "reason": "token expired"},
        )
    )
    sent = await run("forged-1", bearer(forged))
    cases.append(("forged-1", sent.status, {"event": "authn_token_invalid", "status": 401}))
    sent = await run("public-1", http_scope("/health"))
    cases.append(("public-1", sent.status, {"event": "authz_allow", "status": 200}))
    sent = await run("bad-path-1", http_scope("/a/%2e%2e/b", raw_path=b"/a/%252e%252e/b"))
    cases.append(("bad-path-1", sent.status, {"event": "input_validation_fail", "status": 400}))
    big = http_scope(
        "/api",
        method="POST",
        headers=[("authorization", f"Bearer {good}"), ("content-length", "999")],
    )
    sent = await run("big-1", big)
    cases.append(("big-1", sent.status, {"event": "input_validation_fail", "status": 413}))
    sent = await run("hostile-1", bearer(good, hostile))
    cases.append(("hostile-1", sent.status, {"event": "input_validation_fail", "status": 400}))
    sneaky = 'eve\r\n{"event":"authz_allow"}\u2028\x00'
    tokens.append(issuer.mint(sneaky))
    sent = await run("hostile-2", bearer(tokens[-1]))
    cases.append(("hostile-2", sent.status, {"event": "authz_allow", "subject": sneaky}))

    scope = bearer(good)
    scope["headers"].append((b"x-request-id", b"crash-1"))
    with pytest.raises(RuntimeError):
        await crash(scope, Receiver.body(b""), Sender())
    cases.append(("crash-1", 0, {"event": "app_error", "outcome": "unknown", "subject": "alice"}))

    ws = ws_scope(headers=[("authorization", f"Bearer {good}"), ("x-request-id", "ws-1")])
    await socket(ws, Receiver([{"type": "websocket.connect"}]), Sender())
    cases.append(
        ("ws-1", 0, {"event": "authz_allow", "transport": "websocket", "subject": "alice"})
    )
    ws = ws_scope(headers=[("x-request-id", "ws-2")])
    await socket(ws, Receiver([{"type": "websocket.connect"}]), Sender())
    cases.append(("ws-2", 0, {"event": "authn_token_missing", "transport": "websocket"}))

    await app.pipeline.aclose()
    raw = b"".join(p.read_bytes() for p in trail_files(path))
    rows = records(trail_files(path))
    assert rows[0]["event"] == "sys_startup"
    assert rows[-1]["event"] == "sys_shutdown"
    for rid, status, expected in cases:
        mine = [row for row in rows if row.get("request_id") == rid]
        assert len(mine) == 1, rid
        assert expected.items() <= mine[0].items(), (rid, mine[0])
        if status:
            assert mine[0]["status"] == status
        assert isinstance(mine[0]["latency_ms"], float)
    assert len(rows) == len(cases) + 2
    # One line per event, whatever was in the path; every line plain ASCII JSON.
    assert raw.count(b"\n") == len(rows) and raw.isascii()
    assert b"\r" not in raw and "\u2028".encode() not in raw
    # No credential anywhere: whole tokens, and their signature parts alone.
    everything = raw + fallback.getvalue().encode()
    for token in tokens:
        assert token.encode() not in everything
        assert token.rsplit(".", 1)[1].encode() not in everything
    assert verify_files(trail_files(path)).ok


async def test_app_sees_the_request_id_in_structlog_contextvars(tmp_path: Path) -> None:
    seen: dict[str, Any] = {}
    sink, _ = make_sink(tmp_path / "audit.jsonl")

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.update(structlog.contextvars.get_contextvars())
        # A component event emitted inside the request, without a request id:
        await middleware.pipeline.emit(AuditEvent(name="secret_redacted", outcome="success"))
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    middleware = SecurityMiddleware(app, {"auth": {"allow_anonymous": True}}, audit=sink)
    structlog.contextvars.bind_contextvars(request_id="outer")  # e.g. an outer middleware's
    try:
        sent = await call(middleware, http_scope("/x"))
        after = structlog.contextvars.get_contextvars().get("request_id")
    finally:
        structlog.contextvars.clear_contextvars()
    assert after == "outer"  # restored once the request was recorded
    await middleware.pipeline.aclose()
    rid = sent.header("x-request-id")
    assert rid and seen["request_id"] == rid
    rows = records([tmp_path / "audit.jsonl"])
    redacted = [row for row in rows if row["event"] == "secret_redacted"]
    assert redacted[0]["request_id"] == rid


@pytest.mark.parametrize(
    ("policy", "second_status"),
    [
        pytest.param("fail_closed", 503, id="fail-closed"),
        pytest.param("fail_open", 200, id="fail-open"),
    ],
)
async def test_disk_full_fails_closed_or_open(policy: str, second_status: int) -> None:
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system")
    sink, fallback = make_sink(Path("/dev/full"), on_failure=policy, retry_interval=30)
    app = SecurityMiddleware(EchoApp(), {"auth": {"allow_anonymous": True}}, audit=sink)
    await call(app, http_scope("/first"))
    wait_until(lambda: sink.error is not None)
    sent = await call(app, http_scope("/second"))
    assert sent.status == second_status
    if policy == "fail_closed":
        assert sent.json()["status"] == 503 and sent.header("retry-after") == "1"
    await app.pipeline.aclose()
    alerts = fallback_records(fallback)
    second = [row for row in alerts if row.get("path") == "/second"]
    assert len(second) == 1 and second[0]["audit_diverted"] is True
    if policy == "fail_closed":
        assert second[0]["event"] == "sys_monitor_disabled" and second[0]["status"] == 503
    else:
        assert second[0]["event"] == "authz_allow"
    assert any(row["event"] == "sys_monitor_disabled" and "details" in row for row in alerts)


async def test_while_the_trail_cannot_record_secmws_own_endpoints_decide_nothing(
    tmp_path: Path,
) -> None:
    # AU-5 covers the metrics endpoint's token check and the metadata document too.
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system")
    token_file = tmp_path / "metrics-token"
    token_file.write_text("t" * 32)
    sink, _ = make_sink(Path("/dev/full"), retry_interval=30)
    config = {
        "auth": {"allow_anonymous": True},
        "metrics": {"enabled": True, "token_file": str(token_file)},
    }
    app = SecurityMiddleware(EchoApp(), config, audit=sink)
    await call(app, http_scope("/first"))
    wait_until(lambda: sink.error is not None)
    for token in ("wrong", "t" * 32):
        sent = await call(
            app, http_scope("/metrics", headers=[("authorization", f"Bearer {token}")])
        )
        assert sent.status == 503
    await app.pipeline.aclose()


async def test_lifespan_shutdown_flushes_everything(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    sink, _ = make_sink(path, fsync="never")
    echo = EchoApp()

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await echo(scope, receive, send)
            return
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})

    app = SecurityMiddleware(inner, {"auth": {"allow_anonymous": True}}, audit=sink)
    for n in range(200):
        await call(app, http_scope(f"/n{n}"))
    await app(
        {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}},
        Receiver([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]),
        Sender(),
    )
    rows = records([path])
    assert len(rows) == 202 and rows[-1]["event"] == "sys_shutdown"
    assert json.dumps(rows[0]).count("sys_startup") == 1


class _Policy:
    needs_body = False

    def __init__(self, decision: Decision) -> None:
        self.decision = decision

    def evaluate(self, ctx: Any) -> Decision:
        return self.decision


class _Limiter:
    async def hit(self, ctx: Any) -> RateDecision:
        return RateDecision(False, retry_after=3, policies=("burst",), reason="burst exceeded")


class _Known:
    async def authenticate(self, ctx: Any) -> Principal:
        return Principal("alice", auth_method="jwt")


class _Broken:
    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    async def authenticate(self, ctx: Any) -> None:
        raise self.exc


class _BodyInspector:
    needs_body = True

    def inspect(self, ctx: Any) -> list[Any]:
        return []


@pytest.mark.parametrize(
    ("components", "receive", "status", "expected"),
    [
        pytest.param(
            {"policy": _Policy(Decision(Effect.DENY, ("r-deny",), "no"))},
            None,
            401,
            {"event": "authn_token_missing", "rule_ids": ["r-deny"], "reason": "no"},
            id="anonymous-deny",
        ),
        pytest.param(
            {
                "authenticator": _Known(),
                "policy": _Policy(Decision(Effect.STEP_UP, ("r-mfa",), "mfa", acr_values=("mfa",))),
            },
            None,
            401,
            {"event": "authz_step_up_required", "rule_ids": ["r-mfa"]},
            id="step-up",
        ),
        pytest.param(
            {"policy": _Policy(Decision(Effect.STEP_UP, ("r-mfa",), "mfa", acr_values=("mfa",)))},
            None,
            401,
            {"event": "authn_token_missing", "rule_ids": ["r-mfa"]},  # no credential sent
            id="step-up-anonymous",
        ),
        pytest.param(
            {"rate_limiter": _Limiter()},
            None,
            429,
            {"event": "excess_rate_limit_exceeded", "reason": "burst exceeded"},
            id="rate-limited",
        ),
        pytest.param(
            {"authenticator": _Broken(ComponentError("db down: password=hunter2"))},
            None,
            503,
            {"event": "sys_monitor_disabled", "severity": "error"},
            id="backend-down",
        ),
        pytest.param(
            {"authenticator": _Broken(RuntimeError("secret=hunter2"))},
            None,
            503,
            {"event": "sys_error", "reason": "authenticate stage failed: RuntimeError"},
            id="stage-crash",
        ),
        pytest.param(
            {"inspector": _BodyInspector()},
            Receiver([{"type": "http.disconnect"}]),
            None,
            {"event": "request_aborted", "outcome": "unknown"},
            id="client-gone",
        ),
    ],
)
async def test_more_outcomes_one_line_each(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    components: dict[str, Any],
    receive: Any,
    status: int | None,
    expected: dict[str, Any],
) -> None:
    path = tmp_path / "audit.jsonl"
    sink, _ = make_sink(path)
    config = {"auth": {"allow_anonymous": "policy" not in components}}
    app = SecurityMiddleware(EchoApp(), config, audit=sink, **components)
    scope = http_scope("/x", headers=[("x-request-id", "one")])
    sent = await call(app, scope, receive)
    if status is not None:
        assert sent.status == status
    await app.pipeline.aclose()
    rows = [row for row in records([path]) if row.get("request_id") == "one"]
    assert len(rows) == 1
    assert expected.items() <= rows[0].items()
    if status is not None:
        assert rows[0]["status"] == status
    assert "hunter2" not in path.read_text() + capsys.readouterr().err
