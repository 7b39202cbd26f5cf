"""Redaction throughput: secmw against detect-secrets on the same 1 MiB texts.

Run: ``.venv/bin/python benchmarks/bench_redact.py`` (about 30 s). Two texts of
1 MiB are generated (fixed seed): *clean* (prose, log lines, JSON, Python code,
UUIDs, hashes; no secrets) and *dense* (the same mix with a secret from the test
corpus about every 1 KiB, ~1000 secrets) and *dense+* (one about every 200
bytes, ~5000 secrets), and a hostile *cards* text (``card2222222222222 ``
repeated: secmw only). secmw is timed one-shot and
streamed in 4 KiB chunks; detect-secrets with ``scan_line`` over every line,
with its default plugins and filters.
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.redact_corpus import SPECS

from secmw.redact import SecretRedactor

MIB = 1024 * 1024
WORD_TEXT = (
    "the of and to in is for that on with as this by be are from at or an it not which have "
    "request response server client handler error value config user session cache service "
    "deploy build release version module package function return import class object list "
    "string number field record event stream window buffer header body status route path "
    "query table index column row schema migration database backup storage network latency "
    "timeout retry policy limit quota metric trace span log audit review change commit branch "
    "merge test suite case fixture mock token key secret password credential access"
)
WORDS = tuple(WORD_TEXT.split())


def clean_line(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.4:
        words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 20)))
        return words.capitalize() + "."
    if kind < 0.65:
        return (
            f"2026-11-21T12:{rng.randint(10, 59)}:{rng.randint(10, 59)}.{rng.randint(100, 999)}Z "
            f"INFO svc=api method=GET path=/v1/items/{rng.randint(1, 99999)} status=200 "
            f"duration_ms={rng.randint(1, 900)} trace={rng.getrandbits(128):032x}"
        )
    if kind < 0.85:
        return (
            f'{{"id": "{rng.getrandbits(64)}", "name": "{rng.choice(WORDS)}", '
            f'"uuid": "{rng.getrandbits(32):08x}-{rng.getrandbits(16):04x}-4abc-8def-'
            f'{rng.getrandbits(48):012x}", "sha": "{rng.getrandbits(160):040x}", '
            f'"count": {rng.randint(0, 999)}, "ok": true}}'
        )
    name = rng.choice(WORDS)
    return f"    def {name}_{rng.choice(WORDS)}(self, {name}: int = {rng.randint(0, 9)}) -> None:"


def make_text(rng: random.Random, every: int = 0) -> str:
    """1 MiB of clean lines; with ``every``, a corpus secret about every ``every`` bytes."""
    names = sorted(SPECS)
    lines: list[str] = []
    size = 0
    next_secret = every
    while size < MIB:
        line = clean_line(rng)
        if every and size >= next_secret:
            next_secret += every
            sample, _ = SPECS[rng.choice(names)].make(rng)
            line = line[: rng.randint(0, len(line))] + " " + sample + " " + clean_line(rng)[:60]
        lines.append(line)
        size += len(line) + 1
    return "\n".join(lines)[:MIB]


def best(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    """The best wall-clock and the best CPU time (seconds) of ``repeat`` runs.

    On a shared machine the wall clock includes time spent waiting for a core;
    the process's CPU time does not, so both are reported.
    """
    walls, cpus = [], []
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return min(walls), min(cpus)


def secmw_stream(redactor: SecretRedactor, text: str) -> None:
    stream = redactor.stream("text/plain")
    for i in range(0, len(text), 4096):
        stream.feed(text[i : i + 4096])
    stream.flush()


def detect_secrets_lines(text: str) -> int:
    from detect_secrets.core.scan import scan_line  # noqa: PLC0415
    from detect_secrets.settings import default_settings  # noqa: PLC0415

    found = 0
    with default_settings():
        for line in text.splitlines():
            found += sum(1 for _ in scan_line(line))
    return found


def main() -> None:
    rng = random.Random(20261121)
    texts = {
        "clean": make_text(rng),
        "dense": make_text(rng, every=1024),
        "dense+": make_text(rng, every=200),
        # Hostile: a card keyword before every number, so each keyword's list could
        # be walked again by every keyword before it (secmw only).
        "cards": ("card2222222222222 " * (MIB // 18 + 1))[:MIB],
    }
    redactor = SecretRedactor()
    print(f"{'text':6} {'tool':28} {'MB/s wall':>10} {'MB/s CPU':>9} {'findings':>9}")

    def row(label: str, name: str, wall: float, cpu: float, count: object = "") -> None:
        mb = MIB / 1e6
        print(f"{label:6} {name:28} {mb / wall:10.2f} {mb / cpu:9.2f} {count!s:>9}")

    for label, text in texts.items():
        _, findings = redactor.redact(text)
        one = best(lambda text=text: redactor.redact(text), 5)
        row(label, "secmw one-shot", *one, len(findings))
        streamed = best(lambda text=text: secmw_stream(redactor, text), 3)
        row(label, "secmw stream, 4 KiB chunks", *streamed)
        print(f"{'':6} {'  stream / one-shot (CPU)':28} {streamed[1] / one[1]:10.2f}x")
        if label == "cards":
            continue
        counted: list[int] = []
        ds = best(lambda text=text, out=counted: out.append(detect_secrets_lines(text)), 1)
        row(label, "detect-secrets scan_line", *ds, counted[0])


if __name__ == "__main__":
    main()
