"""JSON-aware redaction: secrets are replaced inside string values, the JSON stays valid.

The body is tokenised into its string literals (valid JSON has no quote outside
them), each literal is decoded, redacted, and encoded again in place, so the
rest of the document keeps its bytes and layout. A string that itself holds
JSON (MCP ``content[].text``, tool-call ``arguments``) is redacted the same way,
recursively. With ``json_keys`` configured, the whole string value of a field
whose name ends with one of them (``password``, ``client_secret``,
``accessToken``) is replaced regardless of its shape.

Finding offsets are those of the decoded string value shifted to the position of
its literal, so they are exact unless the literal holds escapes before the secret.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from secmw.context import Finding

if TYPE_CHECKING:
    from secmw.redact.redactor import SecretRedactor

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_COLON = re.compile(r"\s*:")
_MAX_DEPTH = 4
SENSITIVE_FIELD = "sensitive_field"


def redact_json(redactor: SecretRedactor, text: str) -> tuple[str, Sequence[Finding]]:
    """Redact a JSON document; text that is not JSON is redacted as plain text."""
    findings: list[Finding] = []
    try:
        json.loads(text)
    except ValueError:
        return redactor.redact_text(text, findings), findings
    return _document(redactor, text, findings, 0, 0), findings


def _sensitive(redactor: SecretRedactor, key: str) -> bool:
    name = key.lower().replace("-", "_")
    return any(name.endswith(suffix) for suffix in redactor.json_keys)


def _document(
    redactor: SecretRedactor, text: str, findings: list[Finding], offset: int, depth: int
) -> str:
    if not redactor.json_keys and "\\" not in text and not redactor.scanner.scan(text)[0]:
        return text
    parts: list[str] = []
    position = 0
    sensitive = False
    value_from = -1
    for match in _STRING.finditer(text):
        start, end = match.span()
        raw = match.group()
        value: str = json.loads(raw)
        if _COLON.match(text, end):
            sensitive = bool(redactor.json_keys) and _sensitive(redactor, value)
            value_from = text.index(":", end) + 1
            new = _value(redactor, value, findings, offset + start + 1, depth)
        elif sensitive and not text[value_from:start].strip() and value:
            kind = SENSITIVE_FIELD
            findings.append(
                Finding(
                    "redact",
                    kind,
                    1.0,
                    offset + start,
                    offset + end,
                    redactor.styler.fingerprint(value),
                )
            )
            new = redactor.styler.replace(kind, value)
            sensitive = False
        else:
            sensitive = False
            new = _value(redactor, value, findings, offset + start + 1, depth)
        if new is not value:
            parts.append(text[position:start])
            parts.append(json.dumps(new, ensure_ascii=False))
            position = end
    if not parts:
        return text
    parts.append(text[position:])
    return "".join(parts)


def _value(
    redactor: SecretRedactor, value: str, findings: list[Finding], offset: int, depth: int
) -> str:
    """The redacted string, or ``value`` itself (the same object) when nothing changed."""
    stripped = value.lstrip()[:1]
    if depth < _MAX_DEPTH and stripped in ("{", "["):
        try:
            json.loads(value)
        except ValueError:
            pass
        else:
            nested = _document(redactor, value, findings, offset, depth + 1)
            return value if nested == value else nested
    before = len(findings)
    out = redactor.redact_text(value, findings, offset)
    return value if len(findings) == before else out


__all__ = ["SENSITIVE_FIELD", "redact_json"]
