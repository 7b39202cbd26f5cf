"""JSON redaction without escapes visits only the literals holding a candidate.

The fast path must give exactly what scanning every literal gives: same text,
same findings, same offsets.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator, Sequence

import pytest

from secmw.redact import SecretRedactor, json_mode
from tests.redact_corpus import SPECS

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)


def every_literal(text: str, candidates: Sequence[object]) -> Iterator[tuple[int, int]]:
    """The slow path: every string literal of the text."""
    for match in _STRING.finditer(text):
        yield match.span()


def document(rng: random.Random) -> str:
    def value(depth: int) -> object:
        roll = rng.random()
        if depth > 3 or roll < 0.35:
            texts = [
                SPECS[rng.choice(sorted(SPECS))].make(rng)[0] for _ in range(rng.randint(1, 2))
            ]
            return " and ".join(texts)
        if roll < 0.45:
            return rng.choice([4111111111111111, 5500005555555559, 12, 2.5, None, True])
        if roll < 0.55:
            return rng.choice(["plain words", "caf\u00e9 \u2028", "", "item-0001"])
        if roll < 0.75:
            return [value(depth + 1) for _ in range(rng.randint(1, 3))]
        return {f"k{i}": value(depth + 1) for i in range(rng.randint(1, 3))}

    raw = json.dumps({"result": value(0)}, ensure_ascii=False, indent=rng.choice([None, 1]))
    return raw


@pytest.mark.parametrize("seed", range(80))
def test_fast_path_equals_scanning_every_literal(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = document(random.Random(seed))
    redactor = SecretRedactor()
    fast = redactor.redact(raw, "application/json")
    monkeypatch.setattr(json_mode, "_holding", every_literal)
    slow = redactor.redact(raw, "application/json")
    assert fast[0] == slow[0]
    assert list(fast[1]) == list(slow[1])
    if "\\" not in raw:
        json.loads(fast[0])


def test_a_secret_in_one_literal_among_many_is_replaced_in_place() -> None:
    secret = "sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc"
    raw = json.dumps(
        {"items": [{"id": f"item-{n}", "name": "widget"} for n in range(20)], "key": secret},
        indent=1,
    )
    out, findings = SecretRedactor().redact(raw, "application/json")
    assert out == raw.replace(secret, "[REDACTED:stripe_secret_key]")
    assert [f.kind for f in findings] == ["stripe_secret_key"]
    assert raw[findings[0].start : findings[0].end] == secret
