"""AuditEvent.to_json is exactly the compact encoding of to_dict, for any event."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime

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
