"""Incremental plain-text redaction with a bounded, minimal holdback."""

from __future__ import annotations

from typing import TYPE_CHECKING

from secmw.context import Finding
from secmw.redact.engine import Candidate

if TYPE_CHECKING:
    from secmw.redact.redactor import SecretRedactor

# Characters of already-sent text kept for the look-behind boundaries of the next scan.
CONTEXT = 32


class TextStream:
    """Redacts one body fed in pieces; the output equals a one-shot ``redact``.

    After each piece the text is scanned again from the first character not yet
    sent. Everything before the earliest position where a secret could still be
    in progress is sent (with the confirmed secrets in it replaced); the rest is
    held back. A secret is therefore never sent in part, and the holdback is at
    most the longest window of the catalogue (checked against ``max_holdback``
    when the redactor is built).
    """

    __slots__ = ("_base", "_boundary", "_carried", "_redactor", "_text", "findings")

    def __init__(self, redactor: SecretRedactor, offset: int = 0) -> None:
        self._redactor = redactor
        self._text = ""
        self._boundary = 0
        self._base = offset  # finding offsets count from here (the stream's place in a body)
        # Confirmed candidates not sent yet: their anchor may already be sent
        # (``password=`` before a held value), so the next scan might not find them.
        self._carried: list[Candidate] = []
        self.findings: list[Finding] = []

    @property
    def sent(self) -> int:
        """The offset (``offset`` plus the characters sent) where the next output starts."""
        return self._base

    @property
    def held(self) -> int:
        """How many characters are held back right now."""
        return len(self._text) - self._boundary

    def feed(self, chunk: str) -> str:
        """Take the next piece; return the text that is safe to send now."""
        if not chunk:
            return ""
        return self._emit(self._text + chunk, final=False)

    def flush(self) -> str:
        """End of body: return everything still held back, redacted."""
        if len(self._text) == self._boundary:
            return ""
        return self._emit(self._text, final=True)

    def _emit(self, text: str, *, final: bool) -> str:
        redactor = self._redactor
        scanner = redactor.scanner
        lo = self._boundary
        found, hits = scanner.confirmed(text, lo)
        candidates = scanner.select(found + self._carried)
        if final:
            cut = hold = len(text)
        else:
            cut = hold = max(lo, scanner.hold_from(text, hits, lo))
            for candidate in candidates:
                # A confirmed secret that straddles the holdback point is held whole.
                if candidate.start < cut < candidate.end:
                    cut = candidate.start
        out = redactor.apply(text, candidates, lo, cut, findings=self.findings, offset=self._base)
        keep = max(0, cut - CONTEXT)
        # A match that starts before ``hold`` is final (were its window still
        # open, the holdback would start at or before it); one starting later is
        # found again by the next scan, whose anchors start at ``cut <= hold``.
        self._carried = [
            Candidate(c.start - keep, c.end - keep, c.rule, c.origin - keep)
            for c in set(found + self._carried)
            if c.start >= cut and c.origin < hold
        ]
        self._text = text[keep:]
        self._boundary = cut - keep
        self._base += cut - lo
        return out


__all__ = ["CONTEXT", "TextStream"]
