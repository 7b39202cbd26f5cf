"""AuditEvent: its constructor, and to_json as exactly the compact encoding of to_dict."""

from __future__ import annotations

import dataclasses
import inspect
import json
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from secmw.audit import AuditEvent, utc_now

text = st.text(max_size=600)
optional = st.none() | text


@given(
    name=text,
    outcome=st.sampled_from(["success", "failure", "unknown"]),
    request_id=optional,
    path=optional,
    subject=optional,
    reason=optional,
    rule_ids=st.lists(text, max_size=3).map(tuple),
    status=st.none() | st.integers(100, 599),
    latency=st.none() | st.floats() | st.integers(0, 10**6),
    details=st.dictionaries(st.text(max_size=5), text | st.integers() | st.booleans(), max_size=3),
)
def test_to_json_is_the_encoding_of_to_dict(
    name: str,
    outcome: str,
    request_id: str | None,
    path: str | None,
    subject: str | None,
    reason: str | None,
    rule_ids: tuple[str, ...],
    status: int | None,
    latency: float | int | None,
    details: dict[str, object],
) -> None:
    event = AuditEvent(
        name=name,
        outcome=outcome,
        request_id=request_id,
        path=path,
        subject=subject,
        reason=reason,
        rule_ids=rule_ids,
        status=status,
        latency_ms=latency,
        details=details,
    )
    line = event.to_json()
    assert line == json.dumps(
        event.to_dict(), ensure_ascii=True, separators=(",", ":"), default=str
    )
    assert line.isascii() and "\n" not in line and "\r" not in line


def test_odd_status_types_still_encode() -> None:
    event = AuditEvent(name="x", outcome="success", status=True)  # type: ignore[arg-type]
    assert json.loads(event.to_json())["status"] is True


def test_utc_now_is_iso_8601_utc_with_microseconds() -> None:
    before = datetime.now(UTC)
    stamp = utc_now()
    after = datetime.now(UTC)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00", stamp)
    assert before <= datetime.fromisoformat(stamp) <= after
    time.sleep(0.001)
    assert utc_now() > stamp


def test_constructor_matches_the_fields() -> None:
    """The hand-written __init__ takes every field, in order, with the field's default."""
    parameters = list(inspect.signature(AuditEvent).parameters.values())
    fields = dataclasses.fields(AuditEvent)
    assert [p.name for p in parameters] == [f.name for f in fields]
    for parameter, field in zip(parameters, fields, strict=True):
        if field.default is not dataclasses.MISSING:
            assert parameter.default == field.default, field.name
        elif field.default_factory is not dataclasses.MISSING:
            assert parameter.default in (None, field.default_factory()), field.name
        else:
            assert parameter.default is inspect.Parameter.empty, field.name


def test_constructor_sets_every_field_and_stays_frozen() -> None:
    values = {
        f.name: f"v-{f.name}" for f in dataclasses.fields(AuditEvent) if f.type == "str | None"
    }
    event = AuditEvent(
        name="n", outcome="success", rule_ids=("r",), status=201, latency_ms=1.5, **values
    )
    for key, value in values.items():
        assert getattr(event, key) == value
    assert (event.rule_ids, event.status, event.latency_ms) == (("r",), 201, 1.5)
    assert dict(event.details) == {}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00", event.time)
    assert AuditEvent(name="n", outcome="success", time="t").time == "t"
    assert dataclasses.replace(event, status=500).status == 500
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.name = "other"  # type: ignore[misc]


class _Opaque:
    """A value JSON has no type for, rendered through ``str``."""

    def __str__(self) -> str:
        return "o" * 5000


@pytest.mark.parametrize(
    ("details", "clipped"),
    [
        pytest.param({"k" * 5000: 1}, list, id="top-level-key"),
        pytest.param({"n": {"k" * 5000: 1}}, lambda d: list(d["n"]), id="nested-key"),
        pytest.param({"b": b"x" * 5000}, lambda d: [d["b"]], id="bytes"),
        pytest.param({"n": [{1, 2, *range(3000)}]}, lambda d: [d["n"][0]], id="set"),
        pytest.param({"o": _Opaque()}, lambda d: [d["o"]], id="object"),
        pytest.param({_Opaque(): "v"}, list, id="object-key"),
    ],
)
def test_details_keys_and_values_without_a_json_type_are_clipped(
    details: dict[object, object], clipped: Callable[[dict[str, Any]], list[str]]
) -> None:
    event = AuditEvent(name="sys_error", outcome="failure", details=details)
    line = event.to_json()
    written = json.loads(line)["details"]
    assert [len(text) for text in clipped(written)] == [512]
    assert len(line) < 1024
    assert event.to_dict()["details"] == written
