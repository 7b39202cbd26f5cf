"""JSON-aware redaction: secrets are replaced inside string values, the JSON stays valid.

The body is tokenised into its string literals (valid JSON has no quote outside
them), each literal is decoded, redacted, and encoded again in place, so the
rest of the document keeps its bytes and layout. A string that itself holds
JSON (MCP ``content[].text``, tool-call ``arguments``, a JSON-encoded string) is
redacted the same way, recursively. With ``json_keys`` configured, the whole string value of a field
whose name ends with one of them (``password``, ``client_secret``,
``accessToken``) is replaced regardless of its shape.

Finding offsets are those of the decoded string value shifted to the position of
its literal, so they are exact unless the literal holds escapes before the secret.
"""

from __future__ import annotations

import bisect
import dataclasses
import json
import re
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from secmw._jsonrpc import JSON_STRING
from secmw.context import Finding
from secmw.redact._encode import json_text
from secmw.redact.engine import Candidate

if TYPE_CHECKING:
    from secmw.redact.redactor import SecretRedactor

_COLON = re.compile(r"\s*:")
_NUMBER = re.compile(r"[0-9]+")
# The rest of a JSON number token around a run of digits: sign, fraction, exponent.
_NUMBER_BEFORE = re.compile(r"-?(?:[0-9]+\.)?\Z")
_NUMBER_AFTER = re.compile(r"(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_MAX_DEPTH = 8
SENSITIVE_FIELD = "sensitive_field"


class _NotJson(ValueError):
    """The unparsed text turned out not to be JSON where it mattered."""


def redact_json(
    redactor: SecretRedactor, text: str, offset: int = 0
) -> tuple[str, Sequence[Finding]]:
    """Redact a JSON document; text that is not JSON is redacted as plain text.

    Finding offsets are shifted by ``offset`` (the document's place in a body).
    """
    findings: list[Finding] = []
    keys = _keys_may_occur(redactor, text)
    if not keys and "\\" not in text:
        # Without escapes and key names only quote parity matters, and it is checked
        # as the literals are found: the text is not parsed first. Anything that
        # does not fit JSON (a secret outside every literal that is not a number, an
        # unclosed literal) sends the whole text to plain-text redaction instead.
        candidates = redactor.scanner.scan(text)[0]
        if not candidates:
            return text, findings
        try:
            return _document(redactor, text, findings, offset, 0, plain=candidates), findings
        except ValueError:
            findings.clear()
            return redactor.redact_text(text, findings, offset), findings
    try:
        json.loads(text)
    except (ValueError, RecursionError):
        # Too deep for the parser here is still JSON to a client: decode every literal.
        return _lenient(redactor, text, findings, offset), findings
    return _document(redactor, text, findings, offset, 0, keys=keys), findings


# A string literal, or the unterminated one a cut-off document ends with.
_OPEN_OR_CLOSED = re.compile(r'"(?:[^"\\]|\\.)*(?:(")|\\?\Z)', re.DOTALL)
# One escape: a valid one, or anything else a backslash starts (kept as written).
_ESCAPE_TOKEN = re.compile(
    r'\\(u[0-9a-fA-F]{4}|["\\/bfnrt])|(\\u[0-9a-fA-F]{0,3}\Z)|\\(.?)', re.DOTALL
)
_SIMPLE_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r"}
_SIMPLE_ESCAPES["t"] = "\t"


def _loose(body: str) -> str:
    """A literal's body decoded as far as it goes: bad or cut-off escapes kept as written."""

    def one(match: re.Match[str]) -> str:
        token = match.group(1)
        if token is None:
            # A \u escape cut off by the end of the text stands for nothing yet;
            # any other bad escape stays as written.
            return "" if match.group(2) is not None else "\\" + match.group(3)
        return chr(int(token[1:], 16)) if token[0] == "u" else _SIMPLE_ESCAPES[token]

    return _ESCAPE_TOKEN.sub(one, body)


def _lenient(
    redactor: SecretRedactor, text: str, findings: list[Finding], offset: int, depth: int = 0
) -> str:
    """JSON-ish text that does not parse (cut off, a trailing comma), escapes still decoded.

    Plain-text redaction alone would let escapes hide a secret (``\\nAKIA…``, a
    ``\\u005f`` inside a key, ``PASSWORD=\\"…\\"``). So every string literal,
    the unterminated last one too, is decoded (loosely: raw control characters,
    bad or cut-off escapes kept) and redacted as a value, with its key when it
    has one; the result is then redacted as plain text too (context outside the
    literals still counts), its offsets mapped back. Offsets inside literals with
    escapes are approximate.
    """
    edits: list[tuple[int, int, str]] = []
    previous = (0, 0)
    for match in _OPEN_OR_CLOSED.finditer(text):
        raw = match.group()
        closed = match.group(1) is not None
        body = raw[1:-1] if closed else raw[1:]
        try:
            value = json.loads(raw if closed else raw + '"', strict=False)
        except (ValueError, RecursionError):
            value = _loose(body)
        if not isinstance(value, str):
            value = _loose(body)
        key = _key_before(text, previous, match.start())
        previous = match.span()
        if key is not None and redactor.json_keys and _sensitive(redactor, key):
            # A json_keys field: its whole value, as in JSON that parses.
            fingerprint = redactor.styler.fingerprint(value)
            span = (offset + match.start(), offset + match.end())
            findings.append(Finding("redact", SENSITIVE_FIELD, 1.0, *span, fingerprint))
            new = redactor.styler.replace(SENSITIVE_FIELD, value)
        else:
            new = _value(redactor, value, findings, offset + match.start() + 1, depth + 1, key=key)
        if new is value:
            continue
        encoded = json_text(new)
        edits.append((match.start(), match.end(), encoded if closed else encoded[:-1]))
    if edits:
        parts: list[str] = []
        # (position in the edited text, position in ``text``, length kept as is)
        pieces: list[tuple[int, int, int]] = []
        position = written = 0
        for start, end, replacement in edits:
            pieces.append((written, position, start - position))
            parts.append(text[position:start])
            written += start - position
            pieces.append((written, start, 0))
            parts.append(replacement)
            written += len(replacement)
            position = end
        pieces.append((written, position, len(text) - position))
        parts.append(text[position:])
        edited = "".join(parts)
    else:
        edited, pieces = text, [(0, 0, len(text))]
    # Then the whole edited text as plain text: context outside the literals
    # (DB_PASSWORD="...") still counts. Its offsets are mapped back to ``text``.
    found: list[Finding] = []
    out = redactor.redact_text(edited, found, 0)
    starts = [piece[0] for piece in pieces]
    findings.extend(
        dataclasses.replace(
            finding,
            start=offset + _original(finding.start, pieces, starts),
            end=offset + _original(finding.end, pieces, starts),
        )
        for finding in found
    )
    return out


def _original(position: int | None, pieces: list[tuple[int, int, int]], starts: list[int]) -> int:
    """A position in the edited text as a position in the original one."""
    position = position or 0
    new, old, kept = pieces[max(0, bisect.bisect_right(starts, position) - 1)]
    return old + min(position - new, kept)


def _keys_may_occur(redactor: SecretRedactor, text: str) -> bool:
    """Whether a ``json_keys`` name may be in ``text``: spelled plainly, or with escapes."""
    probe = redactor.key_probe
    return probe is not None and ("\\u" in text or probe.search(text) is not None)


def _sensitive(redactor: SecretRedactor, key: str) -> bool:
    name = key.lower().replace("-", "").replace("_", "")
    return any(name.endswith(suffix.replace("_", "")) for suffix in redactor.json_keys)


def _document(
    redactor: SecretRedactor,
    text: str,
    findings: list[Finding],
    offset: int,
    depth: int,
    *,
    plain: list[Candidate] | None = None,
    keys: bool | None = None,
) -> str:
    """Redact the string literals of one JSON text; the rest keeps its bytes.

    The raw text is scanned once: a literal without escapes holds its value
    verbatim, so the secrets found inside it are replaced in place. Only
    literals with escapes (including every nested JSON document) are decoded
    and scanned on their own, and key names are looked at only when one of
    ``json_keys`` occurs in the text at all. When neither escapes nor key names
    matter, only the literals a candidate starts in are visited (``_holding``).

    ``plain`` holds the candidates of a text already known to have neither, and
    not parsed: what cannot be JSON raises :class:`_NotJson` (a ``ValueError``).
    ``keys`` is whether a ``json_keys`` name occurs, when the caller looked already.
    """
    strict = plain is not None
    if plain is not None:
        candidates, keys = plain, False
    else:
        candidates = redactor.scanner.scan(text)[0]
        if keys is None:
            keys = _keys_may_occur(redactor, text)
        if not keys and "\\" not in text and not candidates:
            return text
    plain_text = not keys and "\\" not in text
    # Without escapes and key names only the literals holding a candidate can change.
    spans = (
        _holding(text, candidates) if plain_text else (m.span() for m in JSON_STRING.finditer(text))
    )
    parts: list[str] = []
    position = 0
    sensitive = False
    value_from = -1
    index, count = 0, len(candidates)
    verdicts: dict[str, bool] = {}
    previous = (0, 0)  # the literal before this one: the key, when this one is a value
    for start, end in spans:
        while index < count and candidates[index].start < start:
            position = _number(
                redactor,
                text,
                candidates[index],
                position=position,
                parts=parts,
                findings=findings,
                offset=offset,
                strict=strict,
            )
            index += 1
        inside = index < count and candidates[index].start < end
        escaped = text.find("\\", start, end) != -1
        is_key = keys and _COLON.match(text, end) is not None
        verdict = False
        new: str | None = None
        if is_key:
            raw = text[start:end]
            known = verdicts.get(raw)
            if known is None:
                known = verdicts[raw] = _sensitive(redactor, json.loads(raw))
            verdict = known
            value_from = text.index(":", end) + 1
        elif sensitive and end - start > 2 and not text[value_from:start].strip():
            raw = text[start:end]
            new = _sensitive_value(redactor, raw, findings, offset + start, offset + end)
        if new is None and (inside or escaped):
            new = _literal(
                redactor,
                text[start:end],
                following=candidates[index:],
                start=start,
                findings=findings,
                offset=offset,
                depth=depth,
                key=_key_before(text, previous, start) if escaped else None,
            )
        sensitive = is_key and verdict
        previous = (start, end)
        if new is not None:
            parts.append(text[position:start])
            parts.append(new)
            position = end
    for candidate in candidates[index:]:
        position = _number(
            redactor,
            text,
            candidate,
            position=position,
            parts=parts,
            findings=findings,
            offset=offset,
            strict=strict,
        )
    if not parts:
        return text
    parts.append(text[position:])
    return "".join(parts)


def _holding(text: str, candidates: Sequence[Candidate]) -> Iterator[tuple[int, int]]:
    """The spans of the string literals a candidate starts in, in order, each once.

    Only for a valid JSON text without backslashes: there every quote opens or
    closes a literal, so a position is inside one when an odd number of quotes
    precede it (or when it is an opening quote itself). Quotes are counted
    incrementally, so the whole text is read once.
    """
    quotes, counted, last_end = 0, 0, -1
    for candidate in candidates:
        position = candidate.start
        if position < last_end:
            continue
        quotes += text.count('"', counted, position)
        counted = position
        if quotes % 2:
            start = text.rfind('"', 0, position)
        elif text.startswith('"', position):
            start = position
        else:
            continue
        last_end = text.index('"', start + 1) + 1
        yield start, last_end


def _number(
    redactor: SecretRedactor,
    text: str,
    candidate: Candidate,
    *,
    position: int,
    parts: list[str],
    findings: list[Finding],
    offset: int,
    strict: bool = False,
) -> int:
    """A secret outside every string literal: a JSON number (a card number).

    The whole number token (sign, fraction and exponent too) becomes a string
    holding the placeholder, so the document stays valid JSON; the value's type
    changes, its digits are gone. Returns the new position.
    In an unparsed text (``strict``) anything else there means it is not JSON.
    """
    start, end = candidate.start, candidate.end
    if start < position:
        return position
    if not _NUMBER.fullmatch(text, start, end):
        if strict:
            raise _NotJson("a secret outside the string literals")
        return position
    head = _NUMBER_BEFORE.search(text, max(position, start - 24), start)
    token_start = head.start() if head is not None else start
    tail = _NUMBER_AFTER.match(text, end)  # always matches (everything in it is optional)
    token_end = tail.end() if tail is not None else end
    parts.append(text[position:token_start])
    replaced = redactor.apply(
        text, [candidate], start, end, findings=findings, offset=offset + start
    )
    parts.append(json_text(replaced))
    return token_end


def _sensitive_value(
    redactor: SecretRedactor, raw: str, findings: list[Finding], start: int, end: int
) -> str:
    value = json.loads(raw)
    fingerprint = redactor.styler.fingerprint(value)
    findings.append(Finding("redact", SENSITIVE_FIELD, 1.0, start, end, fingerprint))
    return json_text(redactor.styler.replace(SENSITIVE_FIELD, value))


def _literal(
    redactor: SecretRedactor,
    raw: str,
    *,
    following: Sequence[Candidate],
    start: int,
    findings: list[Finding],
    offset: int,
    depth: int,
    key: str | None = None,
) -> str | None:
    """One string literal, redacted; ``None`` when nothing changed.

    ``following`` are the document's candidates from the first one at or after
    the literal's start; ``key`` is the decoded name when the literal is a value.
    """
    end = start + len(raw)
    inside = []
    for candidate in following:
        if candidate.start >= end:
            break
        inside.append(
            Candidate(
                candidate.start - start, candidate.end - start, candidate.rule, candidate.origin
            )
        )
    if "\\" not in raw and all(c.end < len(raw) for c in inside):
        if not inside:
            return None
        body = redactor.apply(
            raw, inside, 1, len(raw) - 1, findings=findings, offset=offset + start + 1
        )
        return '"' + body + '"'
    value: str = json.loads(raw)
    new = _value(redactor, value, findings, offset + start + 1, depth, key=key)
    return None if new is value else json_text(new)


def _key_before(text: str, previous: tuple[int, int], start: int) -> str | None:
    """The decoded key when the literal at ``start`` is the value of ``previous``."""
    key_start, key_end = previous
    if key_end == 0 or text[key_end:start].strip() != ":":
        return None
    try:
        key = json.loads(text[key_start:key_end])
    except ValueError:
        return None
    return key if isinstance(key, str) else None


def _value(
    redactor: SecretRedactor,
    value: str,
    findings: list[Finding],
    offset: int,
    depth: int,
    *,
    key: str | None = None,
) -> str:
    """The redacted string, or ``value`` itself (the same object) when nothing changed.

    With ``key``, the value is scanned after ``"key": "`` (as it appears in the
    document), so contextual types (``"password": "..."``) still see their name
    when the literal had to be decoded.
    """
    stripped = value.lstrip()[:1]
    if depth < _MAX_DEPTH and stripped in ("{", "[", '"'):
        try:
            json.loads(value)
        except (ValueError, RecursionError):
            if stripped != '"':
                # JSON text cut off or broken inside a string (tool arguments of a
                # reply stopped by max_tokens): its escapes still hide nothing.
                before = len(findings)
                out = _lenient(redactor, value, findings, offset, depth + 1)
                return value if len(findings) == before else out
        else:
            nested = _document(redactor, value, findings, offset, depth + 1)
            return value if nested == value else nested
    if key is not None:
        context = '"' + key + '": "'
        text = context + value
        found = [c for c in redactor.scanner.scan(text)[0] if c.start >= len(context)]
        if not found:
            return value
        lo = len(context)
        return redactor.apply(text, found, lo, len(text), findings=findings, offset=offset)
    before = len(findings)
    out = redactor.redact_text(value, findings, offset)
    return value if len(findings) == before else out


__all__ = ["SENSITIVE_FIELD", "redact_json"]
