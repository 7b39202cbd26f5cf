"""Streaming: any chunking gives the one-shot output and never a piece of a secret."""

from __future__ import annotations

import itertools
import json
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from secmw.redact import SecretRedactor
from secmw.redact.stream import TextStream
from tests.redact_corpus import SPECS

REDACTOR = SecretRedactor()
FILLER = st.text(alphabet="abcdefgh XYZ019\n.:=_-/\"'{}", max_size=60)


@st.composite
def documents(draw: st.DrawFn) -> tuple[str, list[str]]:
    rng = random.Random(draw(st.integers(0, 2**32 - 1)))
    names = draw(st.lists(st.sampled_from(sorted(SPECS)), min_size=1, max_size=4))
    parts: list[str] = []
    secrets: list[str] = []
    for name in names:
        text, secret = SPECS[name].make(rng)
        separator = draw(st.sampled_from([" ", "\n", ", ", "\t"]))
        parts += [draw(FILLER), separator, text, separator]
        secrets.append(secret)
    if draw(st.booleans()):  # the same secret twice
        parts.append(" " + parts[2] + "\n")
    return "".join(parts), secrets


def cut(text: str, points: list[int]) -> list[str]:
    bounds = sorted({0, len(text), *(p % (len(text) + 1) for p in points)})
    return [text[a:b] for a, b in itertools.pairwise(bounds)]


def pieces(secret: str) -> set[str]:
    return {secret[i : i + 8] for i in range(len(secret) - 7)}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents(), st.lists(st.integers(0, 10**6), max_size=40))
def test_any_chunking_equals_one_shot_and_leaks_no_fragment(
    doc: tuple[str, list[str]], points: list[int]
) -> None:
    text, secrets = doc
    expected, expected_findings = REDACTOR.redact(text)
    stream = REDACTOR.stream("text/plain")
    outputs = [stream.feed(chunk) for chunk in cut(text, points)]
    outputs.append(stream.flush())
    assert "".join(outputs) == expected
    assert [(f.kind, f.start, f.end) for f in stream.findings] == [
        (f.kind, f.start, f.end) for f in expected_findings
    ]
    for secret in secrets:
        if secret in expected:
            continue  # not a secret in this context (glued to filler, say)
        for output in outputs:
            assert not any(piece in output for piece in pieces(secret))


@settings(max_examples=60, deadline=None)
@given(documents(), st.lists(st.integers(0, 10**6), max_size=30))
def test_sse_any_chunking_equals_one_shot(doc: tuple[str, list[str]], points: list[int]) -> None:
    text, secrets = doc
    words = [text[i : i + 7] for i in range(0, len(text), 7)]
    body = "".join(
        "data: "
        + json.dumps({"choices": [{"index": 0, "delta": {"content": w}, "finish_reason": None}]})
        + "\n\n"
        for w in words
    )
    body += "data: [DONE]\n\n"
    expected, _ = REDACTOR.redact(body, "text/event-stream")
    stream = REDACTOR.stream("text/event-stream")
    outputs = [stream.feed(chunk) for chunk in cut(body, points)] + [stream.flush()]
    assert "".join(outputs) == expected
    content = "".join(
        json.loads(line[6:])["choices"][0]["delta"]["content"]
        for line in expected.splitlines()
        if line.startswith("data: {")
    )
    assert content == REDACTOR.redact(text)[0]
    for output in outputs:
        for event in output.split("\n\n")[:-1]:
            assert event.startswith("data: ")  # whole events only


def test_holdback_is_zero_after_a_delimiter_and_covers_a_prefix_in_progress() -> None:
    stream = TextStream(REDACTOR)
    assert stream.feed("plain words, nothing here. ") == "plain words, nothing here. "
    assert stream.held == 0
    out = stream.feed("and now ghp_")
    assert out == "and now "
    assert stream.held == 4
    assert stream.feed("x" * 10 + " ") + stream.flush() == "ghp_xxxxxxxxxx "


def test_a_secret_split_one_character_at_a_time_never_shows() -> None:
    text, secret = SPECS["github_token"].make(random.Random(5))
    stream = REDACTOR.stream()
    sent = "".join(stream.feed(char) for char in text + " tail") + stream.flush()
    assert sent == "token [REDACTED:github_token] tail"


def test_a_long_private_key_is_held_then_redacted_whole() -> None:
    text, secret = SPECS["private_key"].make(random.Random(9))
    stream = REDACTOR.stream()
    first = stream.feed(text[:40])
    assert "BEGIN" not in first
    rest = stream.feed(text[40:]) + stream.flush()
    assert "[REDACTED:private_key]" in first + rest
    assert stream.held == 0


@pytest.mark.parametrize(
    ("text", "cut_at"),
    [
        # The keyword is final (and sent) while another anchor holds the value.
        pytest.param("n0s:sn:spassword= Bearerdtoken " + "x" * 40, 36, id="context-sent-first"),
        # A value confirmed on a prefix of itself must not be kept once it grows.
        pytest.param("e'wre.d token: 3f2b8a4e-1c2d-4e5f-8a9b-0c1d2e3f4a5b", 30, id="value-grows"),
    ],
)
def test_found_by_fuzzing(text: str, cut_at: int) -> None:
    expected, _ = REDACTOR.redact(text)
    stream = REDACTOR.stream()
    assert stream.feed(text[:cut_at]) + stream.feed(text[cut_at:]) + stream.flush() == expected


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("see https://example.com/docs for details. ", id="url-without-credentials"),
        pytest.param("the token was rotated yesterday. ", id="keyword-without-value"),
        pytest.param("Bearer authentication is described in RFC 6750. ", id="bearer-word"),
        pytest.param(
            "-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----\nok. ", id="public-key"
        ),
    ],
)
def test_anchors_that_cannot_become_secrets_are_released_early(text: str) -> None:
    stream = TextStream(REDACTOR)
    assert stream.feed(text) == text
    assert stream.held == 0


def test_a_finished_jwt_is_sent_without_waiting_for_its_maximum_length() -> None:
    token = SPECS["jwt"].make(random.Random(1))[1]
    stream = TextStream(REDACTOR)
    assert stream.feed(f"jwt {token} then more text. ") == "jwt [REDACTED:jwt] then more text. "
    assert stream.held == 0
