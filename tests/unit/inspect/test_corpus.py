"""Detection and false-positive rates on the labelled set, with floors.

The table is printed on every run (``pytest -s`` not needed) so a change in a
rule shows up as a change in the figures; docs/inspection.md quotes them.
"""

from __future__ import annotations

from collections import defaultdict

import pytest

from secmw.inspect import PromptInjectionScanner
from tests.inspect_corpus import Sample, all_samples, attacks, benign

THRESHOLD = 0.7
SCANNER = PromptInjectionScanner()


def _flagged(sample: Sample) -> bool:
    return SCANNER.scan(sample.text).score >= THRESHOLD


def _rates(samples: list[Sample]) -> dict[str, tuple[int, int]]:
    """Per category: (flagged, total)."""
    table: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for sample in samples:
        row = table[sample.category]
        row[0] += _flagged(sample)
        row[1] += 1
    return {category: (row[0], row[1]) for category, row in table.items()}


def _report(title: str, rates: dict[str, tuple[int, int]], what: str) -> str:
    lines = [f"{title} (threshold {THRESHOLD})", f"  {'category':<22}{what:>10}  of"]
    flagged = total = 0
    for category, (hit, count) in sorted(rates.items()):
        lines.append(f"  {category:<22}{hit / count:>10.1%}  {hit}/{count}")
        flagged += hit
        total += count
    lines.append(f"  {'ALL':<22}{flagged / total:>10.1%}  {flagged}/{total}")
    return "\n".join(lines)


def test_detection_and_false_positive_rates(capsys: pytest.CaptureFixture[str]) -> None:
    detected = _rates(attacks())
    false_positives = _rates(benign())
    with capsys.disabled():
        print()
        print(_report("prompt-injection detection rate", detected, "detected"))
        print(_report("prompt-injection false-positive rate", false_positives, "flagged"))
    hit = sum(h for h, _ in detected.values())
    total = sum(n for _, n in detected.values())
    fp = sum(h for h, _ in false_positives.values())
    clean = sum(n for _, n in false_positives.values())
    assert hit / total >= 0.95
    assert fp / clean <= 0.02
    # Obfuscation and translation must never be a way around a phrase that is caught plainly.
    assert detected["obfuscated"] == (40, 40)
    assert detected["multilingual"][0] == detected["multilingual"][1]
    # The held-out samples were written after tuning; their floors are looser on purpose.
    assert detected["heldout_attack"][0] / detected["heldout_attack"][1] >= 0.8
    assert false_positives["heldout_benign"][0] / false_positives["heldout_benign"][1] <= 0.15
    for category in ("tool_args", "blobs", "multilingual_benign", "chat"):
        assert false_positives[category][0] == 0, category


def test_sample_ids_are_unique_and_both_labels_present() -> None:
    samples = all_samples()
    assert len({s.id for s in samples}) == len(samples)
    assert {s.attack for s in samples} == {True, False}
    assert len(attacks()) >= 100
    assert len(benign()) >= 150
