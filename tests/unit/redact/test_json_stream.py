"""Streamed JSON and NDJSON: JSON-aware like one-shot redaction, bounded by ``max_event``."""

from __future__ import annotations

import json
import random
import time

import pytest

from secmw.redact import SecretRedactor
from tests.redact_corpus import SPECS

RNG = random.Random(11)
GITHUB = SPECS["github_token"].make(RNG)[1]
REDACTOR = SecretRedactor(json_keys=frozenset({"password"}))


def _feed(stream_type: str, body: str, size: int, redactor: SecretRedactor = REDACTOR) -> str:
    stream = redactor.stream(stream_type)
    out = "".join(stream.feed(body[i : i + size]) for i in range(0, len(body), size))
    return out + stream.flush()


@pytest.mark.parametrize("size", [1, 3, 64, 10_000])
def test_a_streamed_json_document_equals_the_one_shot_result(size: int) -> None:
    body = json.dumps({"password": "hunter2-but-longer", "a\\/b": GITHUB.replace("_", "\\u005f")})
    expected, findings = REDACTOR.redact(body, "application/json")
    stream = REDACTOR.stream("application/json")
    out = "".join(stream.feed(body[i : i + size]) for i in range(0, len(body), size))
    out += stream.flush()
    assert out == expected
    assert [f.kind for f in stream.findings] == [f.kind for f in findings]
    assert "hunter2" not in out


def test_a_json_document_over_max_event_falls_back_to_text_redaction() -> None:
    redactor = SecretRedactor(max_event=100_000)
    body = json.dumps({"pad": "x" * 150_000, "token": GITHUB})
    stream = redactor.stream("application/json")
    first = stream.feed(body[:120_000])
    assert first  # past the limit the text flows again instead of being held
    out = first + stream.feed(body[120_000:]) + stream.flush()
    assert GITHUB not in out
    assert json.loads(out)["token"].startswith("[REDACTED")
    assert [f.kind for f in stream.findings] == ["github_token"]


@pytest.mark.parametrize("size", [1, 7, 1000])
def test_ndjson_lines_are_redacted_as_json_with_body_offsets(size: int) -> None:
    lines = [
        json.dumps({"password": "a-long-enough-secret"}),
        json.dumps({"token": GITHUB}),
        "not json " + GITHUB,
    ]
    body = "\n".join(lines) + "\r\n"
    out = _feed("application/x-ndjson", body, size)
    one_shot, findings = REDACTOR.redact(body, "application/x-ndjson")
    assert out == one_shot
    assert out.endswith("\r\n")
    assert GITHUB not in out and "a-long-enough-secret" not in out
    second = next(f for f in findings if f.kind == "github_token")
    assert second.start is not None
    assert body[second.start : second.end] == GITHUB


def test_an_ndjson_line_over_max_event_falls_back_and_loses_nothing() -> None:
    redactor = SecretRedactor(max_event=100_000)
    body = json.dumps({"token": GITHUB}) + "\n" + "y " * 75_000 + GITHUB + "\n"
    out = _feed("application/x-ndjson", body, 4096, redactor)
    assert GITHUB not in out
    assert len(out.split("\n")) == 3


def test_a_long_ndjson_line_in_tiny_pieces_costs_linear_time() -> None:
    # The unfinished line was re-copied at each piece: a 1 MB line sent a byte at
    # a time cost over 13 s of CPU (quadratic); an upstream chooses its pieces.
    body = json.dumps({"a": "x" * 1_000_000, "token": GITHUB}) + "\n"
    started = time.perf_counter()
    out = _feed("application/x-ndjson", body, 1)
    # Generous: a shared 2-core CI box; measured about 0.4 s.
    assert time.perf_counter() - started < 4.0
    assert GITHUB not in out and out.endswith('"token": "[REDACTED:github_token]"}\n')
