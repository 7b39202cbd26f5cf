"""What a scan produces and the state it carries: results, budgets, signal kinds.

Per-kind scores combine as independent evidence (``1 - prod(1 - s)``, one value
per kind, the strongest), so two weak signals of different kinds add up and many
matches of one kind do not.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from secmw.context import Finding

SIGNAL_KINDS = (
    "override_phrase",
    "role_override",
    "instruction_injection",
    "concealment",
    "prompt_leak",
    "output_hijack",
    "exfiltration",
    "sensitive_path",
    "dangerous_command",
    "role_token",
    "fake_tool_call",
    "invisible_characters",
    "bidi_control",
    "unicode_tags",
    "homoglyph",
    "spaced_letters",
    "encoded_payload",
    "scan_limit",
)


@dataclass(frozen=True, slots=True)
class ScanResult:
    """The outcome of scanning text: the combined score and the signals behind it."""

    score: float
    findings: tuple[Finding, ...] = ()
    truncated: bool = False

    @property
    def signals(self) -> tuple[str, ...]:
        """The distinct signal kinds found, sorted."""
        return tuple(sorted({f.kind for f in self.findings}))


@dataclass(slots=True)
class Budget:
    """Characters left to scan for one request or one call; shared across strings."""

    chars: int
    exhausted: bool = False


@dataclass(slots=True)
class ScanState:
    """The state of one scan call (or of one request's scans): never kept on the scanner.

    ``source`` labels the findings; ``budget`` may be shared by several states so
    one request's strings draw on one character budget.
    """

    source: str
    budget: Budget
    findings: list[Finding] = field(default_factory=list)


def combine(findings: Iterable[Finding]) -> float:
    """Combine findings into one score: the strongest per kind, as independent evidence."""
    best: dict[str, float] = {}
    for finding in findings:
        if finding.score > best.get(finding.kind, 0.0):
            best[finding.kind] = finding.score
    remaining = 1.0
    for score in best.values():
        remaining *= 1.0 - min(score, 1.0)
    return round(1.0 - remaining, 4)


__all__ = ["SIGNAL_KINDS", "Budget", "ScanResult", "ScanState", "combine"]
