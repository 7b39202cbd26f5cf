"""Audit events and the simple sinks."""

from __future__ import annotations

import io
import json
from datetime import datetime

import pytest

from secmw.audit import AuditEvent, MemoryAuditSink, NullAuditSink, StreamAuditSink
from secmw.testing import AuditCapture

pytestmark = pytest.mark.anyio


def test_event_renders_one_json_line_without_empty_fields() -> None:
    event = AuditEvent(
        name="authz_fail",
        outcome="failure",
        path="/x",
        rule_ids=("r1",),
        status=403,
        latency_ms=1.23456,
    )
    data = json.loads(event.to_json())
    assert data["event"] == "authz_fail"
    assert data["rule_ids"] == ["r1"]
    assert data["latency_ms"] == 1.235
    assert "subject" not in data and "details" not in data
    assert datetime.fromisoformat(data["time"]).utcoffset() is not None


@pytest.mark.parametrize(
    "hostile", ["a\nb", "a\rb", "a\x00b", "a\u2028b", "a\u2029b", "a\x1b[31mb"]
)
def test_user_supplied_text_cannot_break_the_line(hostile: str) -> None:
    line = AuditEvent(name="x", outcome="failure", path=hostile, subject=hostile).to_json()
    assert "\n" not in line and "\r" not in line and "\u2028" not in line and "\x00" not in line
    assert line.isascii()
    assert json.loads(line)["path"] == hostile


def test_long_fields_are_clipped() -> None:
    data = AuditEvent(name="x", outcome="failure", path="/" + "a" * 5000).to_dict()
    assert len(data["path"]) == 512
    assert data["path"].endswith("\u2026")


async def test_stream_sink_writes_lines() -> None:
    buffer = io.StringIO()
    sink = StreamAuditSink(buffer)
    await sink.emit(AuditEvent(name="a", outcome="success"))
    await sink.emit(AuditEvent(name="b", outcome="success"))
    await sink.aclose()
    assert [json.loads(line)["event"] for line in buffer.getvalue().splitlines()] == ["a", "b"]


async def test_stream_sink_defaults_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    await StreamAuditSink().emit(AuditEvent(name="a", outcome="success"))
    assert json.loads(capsys.readouterr().out)["event"] == "a"


async def test_memory_and_null_sinks() -> None:
    memory, null = MemoryAuditSink(), NullAuditSink()
    event = AuditEvent(name="a", outcome="success")
    await memory.emit(event)
    await null.emit(event)
    await null.aclose()
    assert memory.names() == ["a"]
    memory.clear()
    assert memory.events == []
    await memory.aclose()
    assert memory.closed


async def test_capture_helpers() -> None:
    capture = AuditCapture()
    await capture.emit(AuditEvent(name="a", outcome="success", request_id="r1"))
    await capture.emit(AuditEvent(name="b", outcome="failure", request_id="r2"))
    assert [e.name for e in capture.named("b")] == ["b"]
    assert [e.name for e in capture.for_request("r1")] == ["a"]
    assert capture.last.name == "b"
    assert json.loads(capture.lines()[0])["event"] == "a"
