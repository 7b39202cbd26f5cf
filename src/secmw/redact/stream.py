"""Incremental plain-text redaction with a bounded, minimal holdback."""

from __future__ import annotations

from typing import TYPE_CHECKING

from secmw.context import Finding

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

    __slots__ = ("_base", "_boundary", "_redactor", "_text", "findings")

    def __init__(self, redactor: SecretRedactor) -> None:
        self._redactor = redactor
        self._text = ""
        self._boundary = 0
        self._base = 0
        self.findings: list[Finding] = []

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
        candidates, hits = scanner.scan(text, lo)
        if final:
            cut = len(text)
        else:
            cut = max(lo, scanner.hold_from(text, hits, lo))
            for candidate in candidates:
                # A confirmed secret that straddles the holdback point is final
                # (only later-starting matches are in progress): send it whole.
                if candidate.start < cut < candidate.end:
                    cut = candidate.end
        out = redactor.apply(text, candidates, lo, cut, findings=self.findings, offset=self._base)
        keep = max(0, cut - CONTEXT)
        self._text = text[keep:]
        self._boundary = cut - keep
        self._base += cut - lo
        return out


__all__ = ["CONTEXT", "TextStream"]
