"""The processor chain, the OCSF shape, the structlog sink and the audit config."""

from __future__ import annotations

import contextvars
import io
import json
from pathlib import Path
from typing import Any

import pytest
import structlog
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from secmw.audit import (
    AuditEvent,
    AuditFormatter,
    JSONLFileSink,
    StreamAuditSink,
    StructlogAuditSink,
    bind_request,
)
from secmw.audit.build import build_sink
from secmw.audit.config import AuditConfig
from secmw.audit.format import unbind_request
from secmw.audit.ocsf import ocsf_class
from secmw.config import build_pipeline, parse_config
from secmw.errors import ConfigError

pytestmark = pytest.mark.anyio

DENIED = AuditEvent(
    name="authz_fail",
    outcome="failure",
    severity="warning",
    request_id="r1",
    method="GET",
    path="/admin",
    client="203.0.113.7",
    subject="alice",
    tenant="t1",
    auth_method="jwt",
    rpc_method="tools/call",
    tool="delete_repo",
    rule_ids=("admins-only",),
    reason="role admin required",
    status=403,
    latency_ms=1.5,
    details={"component": "policy"},
)


def test_default_chain_renders_the_plain_event() -> None:
    assert AuditFormatter().render(DENIED) == DENIED.to_json()


def test_request_id_comes_from_the_context_when_missing() -> None:
    structlog.contextvars.bind_contextvars(request_id="ctx-42")
    try:
        line = AuditFormatter().render(AuditEvent(name="secret_redacted", outcome="success"))
        kept = AuditFormatter().render(DENIED)
    finally:
        structlog.contextvars.clear_contextvars()
    assert line is not None and json.loads(line)["request_id"] == "ctx-42"
    assert kept is not None and json.loads(kept)["request_id"] == "r1"


def test_user_processors_run_in_order_and_can_drop() -> None:
    def add(logger: Any, method: str, data: Any) -> Any:
        data["env"] = "prod"
        data["seq"] = 99  # the chain owns seq and prev: removed before rendering
        return data

    def drop_allows(logger: Any, method: str, data: Any) -> Any:
        if data["event"] == "authz_allow":
            raise structlog.DropEvent
        return data

    formatter = AuditFormatter([add, drop_allows])
    line = formatter.render(DENIED)
    assert line is not None
    data = json.loads(line)
    assert data["env"] == "prod" and "seq" not in data
    assert formatter.render(AuditEvent(name="authz_allow", outcome="success")) is None


@pytest.mark.parametrize(
    ("final", "expected"),
    [
        pytest.param(structlog.processors.JSONRenderer(), {"event": "authz_fail"}, id="json"),
        pytest.param(lambda _l, _m, _d: "plain text", {"message": "plain text"}, id="text"),
        pytest.param(lambda _l, _m, _d: b'{"a":1}', {"a": 1}, id="bytes"),
    ],
)
def test_a_processor_may_render_itself(final: Any, expected: dict[str, Any]) -> None:
    line = AuditFormatter([final]).render(DENIED)
    assert line is not None
    assert expected.items() <= json.loads(line).items()


def test_ocsf_shape() -> None:
    line = AuditFormatter(ocsf=True).render(DENIED)
    assert line is not None
    data = json.loads(line)
    assert data["class_uid"] == 6004 and data["activity_id"] == 2
    assert data["type_uid"] == 600402 and data["category_uid"] == 6
    assert data["severity_id"] == 3 and data["status_id"] == 2
    assert data["actor"] == {"user": {"uid": "alice", "org_uid": "t1"}}
    assert data["src_endpoint"] == {"ip": "203.0.113.7"}
    assert data["http_request"] == {"http_method": "GET", "uid": "r1", "url": {"path": "/admin"}}
    assert data["http_response"] == {"code": 403}
    assert data["api"] == {"operation": "tools/call", "service": "delete_repo"}
    assert data["status_detail"] == "role admin required"
    assert data["metadata"]["event_code"] == "authz_fail"
    assert data["unmapped"]["rule_ids"] == ["admins-only"]
    assert isinstance(data["time"], int)


@pytest.mark.parametrize(
    ("name", "outcome", "status", "expected"),
    [
        pytest.param("authn_token_expired", "failure", 401, (3002, 1), id="authn"),
        pytest.param("authz_allow", "success", 200, (6004, 1), id="allow"),
        pytest.param("excess_rate_limit_exceeded", "failure", 429, (6004, 2), id="deny"),
        pytest.param("sys_unavailable", "failure", 503, (6004, 4), id="error"),
        pytest.param("sys_monitor_disabled", "failure", 503, (6004, 4), id="audit-503"),
        pytest.param("sys_startup", "success", None, (6002, 3), id="start"),
        pytest.param("sys_shutdown", "success", None, (6002, 4), id="stop"),
        pytest.param("sys_monitor_disabled", "failure", None, (6002, 7), id="disabled"),
        pytest.param("request_aborted", "unknown", None, (6003, 99), id="other"),
        # Websocket close codes are refusals, not server errors.
        pytest.param("input_validation_fail", "failure", 1009, (6004, 2), id="ws-too-big"),
        pytest.param("session_expired", "failure", 1008, (6004, 2), id="ws-expired"),
    ],
)
def test_ocsf_classes(name: str, outcome: str, status: int | None, expected: Any) -> None:
    assert ocsf_class(name, outcome, status) == expected


def test_a_websocket_close_code_is_not_an_http_status_in_ocsf() -> None:
    event = AuditEvent(name="session_expired", outcome="failure", severity="warning", status=1008)
    data = json.loads(AuditFormatter(ocsf=True).render(event) or "{}")
    assert "http_response" not in data
    assert data["unmapped"]["close_code"] == 1008


@pytest.mark.parametrize(
    "final",
    [
        pytest.param(structlog.processors.JSONRenderer(ensure_ascii=False), id="non-ascii"),
        pytest.param(lambda _l, _m, d: json.dumps({**d, "seq": 7, "prev": "x"}), id="chain-keys"),
    ],
)
def test_a_rendering_processor_cannot_break_the_line(final: Any) -> None:
    # A client's lone surrogate and a renderer that writes non-ASCII (or that
    # sets the chain's own fields) still give one ASCII object without them.
    event = AuditEvent(
        name="authz_fail", outcome="failure", path="/caf\u00e9", tool="\ud800\u202e", request_id="r"
    )
    line = AuditFormatter([final]).render(event)
    assert line is not None and line.isascii()
    data = json.loads(line)
    assert "seq" not in data and "prev" not in data
    assert data["tool"] == "\ud800\u202e" and data["path"] == "/caf\u00e9"


async def test_structlog_sink_hands_the_app_printable_text() -> None:
    event = AuditEvent(
        name="authz_allow",
        outcome="success",
        tool="\x1b[2J\x1b[Hsearch",
        path="/a\u202eb\u200f\u200b\u061c",
        subject="\ud800",
        details={"note\n": ["\x07"]},
    )
    with structlog.testing.capture_logs() as logs:
        await StructlogAuditSink().emit(event)
    (logged,) = logs
    assert logged["tool"] == "\\u001b[2J\\u001b[Hsearch"
    assert logged["path"] == "/a\\u202eb\\u200f\\u200b\\u061c" and logged["subject"] == "\\ud800"
    assert logged["details"] == {"note\\u000a": ["\\u0007"]}
    # What a console renderer writes can be encoded and holds no escape character.
    rendered = structlog.dev.ConsoleRenderer(colors=False)(None, "info", dict(logged))
    assert "\x1b" not in rendered
    rendered.encode("utf-8")


async def test_stream_sink_uses_the_formatter() -> None:
    buffer = io.StringIO()
    sink = StreamAuditSink(buffer, formatter=AuditFormatter(ocsf=True))
    await sink.emit(DENIED)
    assert json.loads(buffer.getvalue())["class_uid"] == 6004


async def test_structlog_sink_goes_through_the_apps_structlog() -> None:
    with structlog.testing.capture_logs() as logs:
        sink = StructlogAuditSink()
        await sink.emit(DENIED)
        await sink.aclose()
    assert logs[0]["event"] == "authz_fail" and logs[0]["log_level"] == "warning"
    assert logs[0]["subject"] == "alice"


# -- configuration --------------------------------------------------------------------


def test_build_sinks_by_name(tmp_path: Path) -> None:
    assert isinstance(build_sink(AuditConfig(sink="stderr")), StreamAuditSink)
    assert isinstance(build_sink(AuditConfig(sink="structlog")), StructlogAuditSink)
    sink = build_sink(
        AuditConfig.model_validate(
            {
                "sink": "file",
                "format": "ocsf",
                "file": {"path": str(tmp_path / "a.jsonl"), "handle_sigterm": False},
            }
        )
    )
    assert isinstance(sink, JSONLFileSink) and sink.formatter.ocsf
    sink.close()


def test_file_sink_needs_its_section() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"audit": {"sink": "file"}})
    assert "audit" in str(info.value) and "[audit.file]" in str(info.value)


def _pem(key: Any) -> bytes:
    return bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        pytest.param("missing", "cannot load the key", id="missing"),
        pytest.param("ec", "not an Ed25519", id="wrong-type"),
        pytest.param("garbage", "cannot load the key", id="garbage"),
    ],
)
def test_bad_checkpoint_key_names_the_key(tmp_path: Path, setup: str, message: str) -> None:
    key_file = tmp_path / "key.pem"
    if setup == "ec":
        key_file.write_bytes(_pem(generate_private_key(SECP256R1())))
    elif setup == "garbage":
        key_file.write_bytes(b"not a key")
    config = parse_config(
        {
            "audit": {
                "sink": "file",
                "file": {"path": str(tmp_path / "a.jsonl"), "checkpoint_key": str(key_file)},
            }
        }
    )
    with pytest.raises(ConfigError) as info:
        build_pipeline(config)
    assert [issue.key for issue in info.value.issues] == ["audit.file.checkpoint_key"]
    assert message in str(info.value)


def test_unwritable_path_names_the_path(tmp_path: Path) -> None:
    config = parse_config(
        {"audit": {"sink": "file", "file": {"path": str(tmp_path / "no" / "a.jsonl")}}}
    )
    with pytest.raises(ConfigError) as info:
        build_pipeline(config)
    assert [issue.key for issue in info.value.issues] == ["audit.file.path"]


def test_file_sink_with_signed_checkpoints_and_fail_open_is_listed(tmp_path: Path) -> None:
    key_file = tmp_path / "key.pem"
    key_file.write_bytes(_pem(Ed25519PrivateKey.generate()))
    config = parse_config(
        {
            "audit": {
                "sink": "file",
                "file": {
                    "path": str(tmp_path / "a.jsonl"),
                    "checkpoint_key": str(key_file),
                    "on_failure": "fail_open",
                    "fallback": "none",
                    "handle_sigterm": False,
                },
            }
        }
    )
    pipeline = build_pipeline(config)
    assert pipeline.fail_open == ("audit.file.on_failure",)
    assert isinstance(pipeline.audit, JSONLFileSink)
    pipeline.audit.close()


class _Ctx:
    def __init__(self, request_id: str) -> None:
        self.request_id = request_id
        self.state: dict[str, Any] = {}


def test_bind_and_restore_the_request_id() -> None:
    structlog.contextvars.bind_contextvars(request_id="outer")
    try:
        inner = _Ctx("inner")
        bind_request(inner)
        assert structlog.contextvars.get_contextvars()["request_id"] == "inner"
        unbind_request(inner)
        unbind_request(inner)  # a second call does nothing
        assert structlog.contextvars.get_contextvars()["request_id"] == "outer"
        # Restored from another context: the binding is removed there instead.
        other = _Ctx("other")
        bind_request(other)
        copied = contextvars.copy_context()
        copied.run(unbind_request, other)
        assert "request_id" not in copied.run(structlog.contextvars.get_contextvars)
    finally:
        structlog.contextvars.clear_contextvars()
