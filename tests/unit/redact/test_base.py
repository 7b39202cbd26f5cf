"""The pass-through redactor."""

from __future__ import annotations

from secmw.redact import NoRedactor


def test_no_redactor_changes_nothing() -> None:
    redactor = NoRedactor()
    assert redactor.redact("ghp_secret", "text/plain") == ("ghp_secret", ())
    stream = redactor.stream("text/event-stream")
    assert stream.feed("a") + stream.feed("b") + stream.flush() == "ab"
    assert stream.findings == []
