"""Acceptance: every type's valid samples are redacted; near misses are left alone.

The table of recall and near-miss rates per type is printed with the test output
(run ``pytest tests/unit/redact/test_corpus.py -s`` to see it) and copied into
docs/redaction.md.
"""

from __future__ import annotations

import random

import pytest

from secmw.redact import BUILTIN, SecretRedactor
from tests.redact_corpus import SPECS, near_misses

SAMPLES = 25


def measure(redactor: SecretRedactor) -> dict[str, tuple[int, int, int, int, int]]:
    """type -> (valid, redacted, near misses, flagged as the type, flagged at all)."""
    rng = random.Random(20261121)
    table = {}
    for name, spec in SPECS.items():
        valid = hit = misses = own = anything = 0
        for _ in range(SAMPLES):
            text, secret = spec.make(rng)
            out, findings = redactor.redact(text)
            valid += 1
            if secret not in out and any(f.kind == name for f in findings):
                hit += 1
            for _label, near, _original in near_misses(spec, rng):
                misses += 1
                _, flagged = redactor.redact(near)
                own += any(f.kind == name for f in flagged)
                anything += bool(flagged)
        table[name] = (valid, hit, misses, own, anything)
    return table


def test_every_type_has_a_corpus_entry() -> None:
    assert {secret.name for secret in BUILTIN} == set(SPECS)
    assert len(SPECS) >= 40


def test_recall_and_near_miss_rates(capsys: pytest.CaptureFixture[str]) -> None:
    table = measure(SecretRedactor())
    with capsys.disabled():
        print("\n| type | recall | near misses | flagged as the type | flagged at all |")
        print("|---|---|---|---|---|")
        for name, (valid, hit, misses, own, anything) in sorted(table.items()):
            print(
                f"| {name} | {hit}/{valid} | {misses} | {own / misses:.0%} | {anything / misses:.0%} |"
            )
        total = sum(row[2] for row in table.values())
        own_total = sum(row[3] for row in table.values())
        any_total = sum(row[4] for row in table.values())
        print(f"| **all** | | {total} | {own_total / total:.1%} | {any_total / total:.1%} |")
    for name, (valid, hit, misses, own, _anything) in table.items():
        assert hit == valid, f"{name}: {valid - hit} valid samples not redacted"
        assert own / misses <= 0.05, f"{name}: near misses flagged as the type"
    assert sum(row[4] for row in table.values()) / total <= 0.10


@pytest.mark.parametrize("name", sorted(SPECS))
def test_secret_repeated_is_redacted_every_time_and_whole(name: str) -> None:
    rng = random.Random(name)
    text, secret = SPECS[name].make(rng)
    doubled = text + "\n---\n" + text
    out, findings = SecretRedactor().redact(doubled)
    assert secret not in out
    # No 8-character piece of the secret survives: the whole value is replaced,
    # not only a prefix or a capture group.
    pieces = {secret[i : i + 8] for i in range(len(secret) - 7)} if len(secret) >= 8 else set()
    assert not any(piece in out for piece in pieces if piece.strip())
    assert [f.kind for f in findings].count(name) == 2
    assert secret not in repr(findings)
