"""JSON-aware redaction of streamed bodies: whole documents, or NDJSON line by line.

Plain-text redaction of a JSON body misses what only the JSON view shows: a
secret spelled with escapes (``\\/``, ``\\u0067``), a secret inside a nested
JSON string, a ``json_keys`` field. So a streamed JSON body is held until it is
complete and redacted as one document, and an NDJSON body line by line. Both
are bounded by ``max_event`` characters held at once: past that, the stream
falls back to plain-text redaction for the rest of the body (the JSON view is
lost, the text view is kept: a secret is still never sent in part).
"""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING

from secmw._media import names_json
from secmw.context import Finding
from secmw.redact._held import Held
from secmw.redact.stream import TextStream

if TYPE_CHECKING:
    from secmw.redact.redactor import SecretRedactor

NDJSON_TYPES = frozenset(
    {"application/x-ndjson", "application/ndjson", "application/jsonl", "application/x-jsonlines"}
)
# Other record-per-line JSON types: x-ldjson, json-seq (RFC 7464: RS, JSON, LF), +json-seq.
_LINES = re.compile(r"ndjson|jsonl|ldjson|json-seq")


@functools.lru_cache(maxsize=256)  # read on every response; few distinct types
def json_lines(media_type: str) -> bool:
    """Whether ``media_type`` is JSON records one per line (NDJSON, JSON text sequences)."""
    return media_type in NDJSON_TYPES or _LINES.search(media_type.partition("/")[2]) is not None


@functools.lru_cache(maxsize=256)
def json_document(media_type: str) -> bool:
    """Whether ``media_type`` is one JSON document: ``application/json``, ``+json`` and
    the other JSON flavours (``application/x-json``, ``text/json``, ``x-amz-json-1.1``)."""
    return names_json(media_type) and not json_lines(media_type)


class JSONStream:
    """One streamed JSON document: held whole (up to ``limit``), then redacted as JSON."""

    __slots__ = ("_fallback", "_held", "_limit", "_redactor", "findings")

    def __init__(self, redactor: SecretRedactor, limit: int) -> None:
        self._redactor = redactor
        self._limit = limit
        self._held = Held()
        self._fallback: TextStream | None = None
        self.findings: list[Finding] = []

    @property
    def held(self) -> int:
        """How many characters are held back right now."""
        return self._fallback.held if self._fallback is not None else self._held.size

    def feed(self, chunk: str) -> str:
        """Hold ``chunk``; past the limit, switch to plain-text redaction."""
        if self._fallback is not None:
            return self._fallback.feed(chunk)
        self._held.add(chunk)
        if self._held.size <= self._limit:
            return ""
        self._fallback = TextStream(self._redactor)
        self.findings = self._fallback.findings
        return self._fallback.feed(self._held.take())

    def flush(self) -> str:
        """End of body: the whole document redacted as JSON (or the fallback's rest)."""
        if self._fallback is not None:
            return self._fallback.flush()
        from secmw.redact.json_mode import redact_json  # noqa: PLC0415 - cycle

        out, findings = redact_json(self._redactor, self._held.take())
        self.findings.extend(findings)
        return out


class NDJSONStream:
    """Newline-delimited JSON: each complete line redacted as a JSON document."""

    __slots__ = ("_base", "_fallback", "_limit", "_pending", "_redactor", "findings")

    def __init__(self, redactor: SecretRedactor, limit: int) -> None:
        self._redactor = redactor
        self._limit = limit
        self._pending = Held()  # the unfinished line
        self._base = 0
        self._fallback: TextStream | None = None
        self.findings: list[Finding] = []

    def feed(self, chunk: str) -> str:
        """Send every line completed by ``chunk``; hold the unfinished one."""
        if self._fallback is not None:
            return self._fallback.feed(chunk)
        cut = chunk.rfind("\n") + 1
        out = ""
        if cut:
            text = self._pending.take() + chunk[:cut]
            out = redact_lines(self._redactor, text, self.findings, self._base)
            self._base += len(text)
            chunk = chunk[cut:]
        self._pending.add(chunk)
        if self._pending.size > self._limit:
            self._fallback = TextStream(self._redactor)
            self._fallback.findings = self.findings
            out += self._fallback.feed(self._pending.take())
        return out

    def flush(self) -> str:
        """End of body: the last line (without a newline) redacted."""
        if self._fallback is not None:
            return self._fallback.flush()
        text = self._pending.take()
        return redact_lines(self._redactor, text, self.findings, self._base) if text else ""


def redact_lines(
    redactor: SecretRedactor, text: str, findings: list[Finding], offset: int = 0
) -> str:
    """Redact every line of ``text`` as a JSON document; findings shifted to body offsets."""
    from secmw.redact.json_mode import redact_json  # noqa: PLC0415 - cycle

    out: list[str] = []
    start, size = 0, len(text)
    while start < size:
        # Only "\n" ends a record: a JSON string may hold U+2028 or a lone "\r".
        end = text.find("\n", start) + 1 or size
        line = text[start:end]
        body = line.removesuffix("\n").removesuffix("\r")
        redacted, found = redact_json(redactor, body, offset + start)
        findings.extend(found)
        out.append(redacted + line[len(body) :])
        start = end
    return "".join(out)


__all__ = [
    "NDJSON_TYPES",
    "JSONStream",
    "NDJSONStream",
    "json_document",
    "json_lines",
    "redact_lines",
]
