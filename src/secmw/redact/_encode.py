"""JSON text for values the redactor rewrote, valid whatever strings they hold."""

from __future__ import annotations

import json
import re
from typing import Any

# A lone surrogate: decoded from a ``\uXXXX`` escape, or a byte that is not UTF-8
# (the body is decoded with surrogateescape). Written raw, the first kind cannot be
# encoded at all and the second comes back as that byte: JSON that is not UTF-8.
_SURROGATE = re.compile("[\ud800-\udfff]")


def json_text(value: Any, *, compact: bool = False) -> str:
    """``json.dumps`` without ASCII escaping, except for lone surrogates (as ``\\uXXXX``)."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":") if compact else None)
    return _SURROGATE.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


__all__ = ["json_text"]
