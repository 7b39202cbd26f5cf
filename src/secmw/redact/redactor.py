"""The default :class:`~secmw.redact.base.Redactor`: catalogue, styles, media types."""

from __future__ import annotations

import re
from collections.abc import Sequence

from secmw.context import Finding
from secmw.redact.base import StreamRedactor
from secmw.redact.catalogue import BUILTIN
from secmw.redact.engine import Candidate, Scanner
from secmw.redact.json_stream import (
    JSONStream,
    NDJSONStream,
    json_document,
    json_lines,
    redact_lines,
)
from secmw.redact.styles import Styler

SOURCE = "redact"


class SecretRedactor:
    """Replaces every secret the scanner confirms; JSON- and SSE-aware by media type.

    ``redact`` picks the mode from ``media_type``: JSON bodies are redacted inside
    their string values (and nested JSON strings) so they stay valid JSON, SSE
    bodies event by event, anything else as plain text. ``stream`` returns the
    matching incremental redactor, whose output equals the one-shot result for
    any chunking.
    """

    __slots__ = (
        "json_keys",
        "key_probe",
        "max_event",
        "max_holdback",
        "pass_compressed",
        "scanner",
        "styler",
    )

    def __init__(
        self,
        scanner: Scanner | None = None,
        styler: Styler | None = None,
        *,
        json_keys: frozenset[str] = frozenset(),
        max_holdback: int = 65536,
        max_event: int = 1024 * 1024,
        pass_compressed: bool = False,
    ) -> None:
        if scanner is None:
            scanner = Scanner(BUILTIN)
        if scanner.max_window > max_holdback:
            raise ValueError("max_holdback is smaller than the longest window of the catalogue")
        self.scanner = scanner
        self.styler = styler or Styler()
        self.json_keys = json_keys
        # A key name ends with one of json_keys and then its closing quote.
        self.key_probe = (
            re.compile(
                "(?i)(?:" + "|".join(re.escape(k).replace("_", "[_-]?") for k in json_keys) + ')"'
            )
            if json_keys
            else None
        )
        self.max_holdback = max_holdback
        self.max_event = max_event
        # Read by the adapter: send compressed textual bodies unscanned (a fail-open).
        self.pass_compressed = pass_compressed

    def redact(self, text: str, media_type: str | None = None) -> tuple[str, Sequence[Finding]]:
        """Return ``text`` with every secret replaced, and the findings."""
        if media_type is not None:
            if json_document(media_type):
                from secmw.redact.json_mode import redact_json  # noqa: PLC0415 - cycle

                return redact_json(self, text)
            if media_type == "text/event-stream":
                stream = self.stream(media_type)
                out = stream.feed(text) + stream.flush()
                return out, stream.findings
            if json_lines(media_type):
                findings: list[Finding] = []
                return redact_lines(self, text, findings), findings
        findings = []
        return self.redact_text(text, findings), findings

    def redact_text(self, text: str, findings: list[Finding], offset: int = 0) -> str:
        """Plain-text redaction of ``text``; findings are appended with ``offset`` added."""
        candidates, _ = self.scanner.scan(text)
        if not candidates:
            return text
        return self.apply(text, candidates, 0, len(text), findings=findings, offset=offset)

    def apply(
        self,
        text: str,
        candidates: Sequence[Candidate],
        lo: int,
        hi: int,
        *,
        findings: list[Finding],
        offset: int,
    ) -> str:
        """``text[lo:hi]`` with the candidates inside it replaced."""
        parts: list[str] = []
        position = lo
        replace, fingerprint, name = self.styler.replace, self.styler.fingerprint, self.scanner.name
        for candidate in candidates:
            start, end = candidate.start, candidate.end
            if start < lo or end > hi:
                continue
            value = text[start:end]
            kind = name(candidate.rule)
            parts.append(text[position:start])
            parts.append(replace(kind, value))
            position = end
            findings.append(
                Finding(
                    SOURCE,
                    kind,
                    1.0,
                    start - lo + offset,
                    end - lo + offset,
                    fingerprint(value),
                )
            )
        parts.append(text[position:hi])
        return "".join(parts)

    def stream(self, media_type: str | None = None) -> StreamRedactor:
        """An incremental redactor for one body of ``media_type``.

        JSON is held whole and NDJSON line by line (each up to ``max_event``
        characters) so that they get the JSON-aware redaction of :meth:`redact`.
        """
        if media_type == "text/event-stream":
            from secmw.redact.sse import SSEStream  # noqa: PLC0415 - cycle

            return SSEStream(self, self.max_event)
        if media_type is not None and json_document(media_type):
            return JSONStream(self, self.max_event)
        if media_type is not None and json_lines(media_type):
            return NDJSONStream(self, self.max_event)
        from secmw.redact.stream import TextStream  # noqa: PLC0415 - cycle

        return TextStream(self)


__all__ = ["SOURCE", "SecretRedactor"]
