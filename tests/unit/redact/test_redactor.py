"""SecretRedactor: styles, findings, allow-lists, custom types, configuration."""

from __future__ import annotations

import random

import pytest

from secmw.config import build_pipeline, load_config
from secmw.errors import ConfigError
from secmw.redact import BUILTIN, RedactConfig, SecretRedactor, Styler, build_redactor
from secmw.redact.engine import Scanner
from tests.redact_corpus import SPECS

GITHUB = SPECS["github_token"].make(random.Random(11))[1]
TEXT = f"deploy with {GITHUB} now"


@pytest.mark.parametrize(
    ("style", "expected"),
    [
        pytest.param("placeholder", "deploy with [REDACTED:github_token] now", id="placeholder"),
        pytest.param("mask", "deploy with " + "*" * 40 + " now", id="mask"),
        pytest.param("partial", f"deploy with {GITHUB[:4]}\u2026{GITHUB[-4:]} now", id="partial"),
    ],
)
def test_styles(style: str, expected: str) -> None:
    redactor = SecretRedactor(styler=Styler(style))  # type: ignore[arg-type]
    assert redactor.redact(TEXT)[0] == expected


def test_hash_style_is_stable_under_one_salt_and_differs_across_salts() -> None:
    one = SecretRedactor(styler=Styler("hash", b"a" * 32)).redact(TEXT)[0]
    again = SecretRedactor(styler=Styler("hash", b"a" * 32)).redact(TEXT)[0]
    other = SecretRedactor(styler=Styler("hash", b"b" * 32)).redact(TEXT)[0]
    assert one == again != other
    assert one.startswith("deploy with [REDACTED:github_token:") and GITHUB not in one


def test_findings_carry_type_offsets_and_fingerprint_never_the_value() -> None:
    out, findings = SecretRedactor(styler=Styler(salt=b"s" * 32)).redact(TEXT + " " + GITHUB)
    first, second = findings
    assert (first.kind, first.start, first.end) == ("github_token", 12, 52)
    assert TEXT[first.start : first.end] == GITHUB
    assert first.fingerprint == second.fingerprint
    assert first.source == "redact"
    assert GITHUB not in repr(findings)


def test_allow_list_and_allow_patterns_keep_known_test_values() -> None:
    scanner = Scanner(BUILTIN, allow=[GITHUB])
    assert SecretRedactor(scanner).redact(TEXT) == (TEXT, [])
    scanner = Scanner(BUILTIN, allow_patterns=[r"gh[a-z]_\w+"])
    assert SecretRedactor(scanner).redact(TEXT)[0] == TEXT


def build(**section: object) -> SecretRedactor:
    redactor = build_redactor(RedactConfig.model_validate({"enabled": True, **section}))
    assert redactor is not None
    return redactor


def test_custom_types_and_disabled_types_from_configuration() -> None:
    redactor = build(
        custom=[
            {
                "name": "acme_key",
                "pattern": r"(?<![A-Za-z0-9])acme_[a-z0-9]{24}(?![A-Za-z0-9])",
                "anchors": ["acme_"],
                "max_len": 29,
            },
            {
                "name": "internal_password",
                "pattern": r"(?i:dbpass)\s*=\s*(?P<s>\S{6,64})",
                "anchors": ["dbpass"],
                "ignore_case": True,
                "max_len": 80,
                "min_entropy": 2.5,
            },
        ],
        disabled_types=["github_token"],
    )
    text = f"key acme_{'k3' * 12} DBPASS = Qw9!xZ2#pL {GITHUB} dbpass=aaaaaaaa"
    out, findings = redactor.redact(text)
    assert (
        out
        == f"key [REDACTED:acme_key] DBPASS = [REDACTED:internal_password] {GITHUB} dbpass=aaaaaaaa"
    )
    assert [f.kind for f in findings] == ["acme_key", "internal_password"]


@pytest.mark.parametrize(
    ("section", "key"),
    [
        pytest.param({"disabled_types": ["nope"]}, "redact.disabled_types[0]", id="unknown-type"),
        pytest.param(
            {"custom": [{"name": "github_token", "pattern": "x", "anchors": ["x"]}]},
            "redact.custom[0].name",
            id="clashing-name",
        ),
        pytest.param(
            {"custom": [{"name": "bad", "pattern": "(", "anchors": ["x"]}]},
            "redact.custom.0.pattern",
            id="bad-regex",
        ),
        pytest.param(
            {"custom": [{"name": "grp", "pattern": "x(y)", "anchors": ["x"]}]},
            "redact.custom[0].pattern",
            id="unnamed-group",
        ),
        pytest.param({"max_holdback": 2048}, "redact.max_holdback", id="holdback-too-small"),
        pytest.param({"style": "rot13"}, "redact.style", id="unknown-style"),
        pytest.param({"colour": "red"}, "redact.colour", id="unknown-key"),
    ],
)
def test_configuration_errors_name_the_key(section: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        build_pipeline(load_config({"redact": {"enabled": True, **section}}))
    keys = [issue.key.replace("[", ".").replace("]", "") for issue in caught.value.issues]
    assert key.replace("[", ".").replace("]", "") in keys, caught.value.issues


def test_redaction_is_off_by_default_and_on_when_enabled() -> None:
    assert build_pipeline(load_config({})).redactor is None
    pipeline = build_pipeline(load_config({"redact": {"enabled": True}}))
    assert isinstance(pipeline.redactor, SecretRedactor)


def test_sse_media_type_one_shot_equals_stream() -> None:
    redactor = SecretRedactor()
    body = f"event: note\ndata: {GITHUB}\n\n: comment\ndata: plain\n\n"
    out, findings = redactor.redact(body, "text/event-stream")
    assert out == "event: note\ndata: [REDACTED:github_token]\n\n: comment\ndata: plain\n\n"
    assert [f.kind for f in findings] == ["github_token"]
