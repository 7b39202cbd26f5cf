"""The redaction stage's protocols and its switched-off default."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from secmw.context import Finding


class StreamRedactor(Protocol):
    """Protocol: redact one response body that arrives in pieces.

    ``feed`` returns the text that is safe to send now (it may hold back the tail
    of a possible secret); ``flush`` returns the rest at the end of the body. The
    concatenated output must equal a one-shot ``redact`` of the whole text.
    """

    findings: list[Finding]

    def feed(self, chunk: str) -> str:
        """Take the next piece of text; return what may be sent now."""
        ...

    def flush(self) -> str:
        """End of body: return everything still held back, redacted."""
        ...


class Redactor(Protocol):
    """Protocol: replace secrets in text; ``media_type`` lets it parse JSON or SSE."""

    def redact(self, text: str, media_type: str | None = None) -> tuple[str, Sequence[Finding]]:
        """Return the redacted text and what was found (never the values)."""
        ...

    def stream(self, media_type: str | None = None) -> StreamRedactor:
        """Start redacting one streamed body."""
        ...


class _PassThrough:
    __slots__ = ("findings",)

    def __init__(self) -> None:
        self.findings: list[Finding] = []

    def feed(self, chunk: str) -> str:
        return chunk

    def flush(self) -> str:
        return ""


class _ChainedStream:
    __slots__ = ("_first", "_second", "findings")

    def __init__(self, first: StreamRedactor, second: StreamRedactor) -> None:
        self._first, self._second = first, second
        self.findings: list[Finding] = []

    def feed(self, chunk: str) -> str:
        return self._second.feed(self._first.feed(chunk))

    def flush(self) -> str:
        rest = self._second.feed(self._first.flush()) + self._second.flush()
        self.findings = [*self._first.findings, *self._second.findings]
        return rest


class ChainedTransform:
    """Two body transforms in a row (a policy's response filter, then the redactor)."""

    __slots__ = ("first", "second")

    def __init__(self, first: Redactor, second: Redactor) -> None:
        self.first, self.second = first, second

    def redact(self, text: str, media_type: str | None = None) -> tuple[str, Sequence[Finding]]:
        """Apply ``first`` then ``second``; findings of both."""
        middle, found = self.first.redact(text, media_type)
        final, more = self.second.redact(middle, media_type)
        return final, [*found, *more]

    def stream(self, media_type: str | None = None) -> StreamRedactor:
        """A stream through ``first`` then ``second``."""
        return _ChainedStream(self.first.stream(media_type), self.second.stream(media_type))


class NoRedactor:
    """Returns text unchanged; useful as a placeholder in a hand-built chain."""

    __slots__ = ()

    def redact(self, text: str, media_type: str | None = None) -> tuple[str, Sequence[Finding]]:
        """Return ``text`` as it is, with no findings."""
        return text, ()

    def stream(self, media_type: str | None = None) -> StreamRedactor:
        """Return a stream redactor that passes text through."""
        return _PassThrough()
