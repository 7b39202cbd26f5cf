"""Find encoded payloads (base64, hex, escapes, HTML character references) and decode them.

Only a decoding that yields readable text is returned: images, keys, hashes and
other binary blobs decode to bytes that are not UTF-8 text, and are dropped
without further work. The caller rescans what is returned, with a depth limit.
"""

from __future__ import annotations

import base64
import binascii
import html
import re
from urllib.parse import unquote

MIN_RUN = 24
# The longest run of each encoding decoded (the rest of a longer run is not):
# percent-decoding is pure Python, the others are C.
_MAX_RUN = {
    "base64": 65536,
    "hex": 65536,
    "hex_escape": 16384,
    "percent": 8192,
    "html_entity": 8192,
    "unicode_escape": 8192,
}
# One class for both alphabets: with two alternatives, a URL-safe run was cut at its
# first "-" or "_" by the standard one and decoded out of step.
_BASE64 = re.compile(r"[A-Za-z0-9+/_\-]{24,}={0,2}")
_SPACE = re.compile(r"\s")
_HEX = re.compile(r"(?:[0-9a-fA-F]{2}){12,}")
_HEX_ESCAPES = re.compile(r"(?:\\x[0-9a-fA-F]{2}){8,}")
# Text-level escapes may sit anywhere (one letter per word, words between them,
# "&nbsp;" as the space): a text with three of one kind is decoded whole.
_TEXT_ESCAPES = {
    "percent": re.compile(r"%[0-9a-fA-F]{2}"),
    # With or without ";", any number of leading zeros, as HTML parsers read them.
    "html_entity": re.compile(r"&#(?:[0-9]+|[xX][0-9a-fA-F]+);?|&[A-Za-z]{2,8};"),
    "unicode_escape": re.compile(r"\\u[0-9a-fA-F]{4}"),
}
_TEXT_MARKERS = {"percent": "%", "html_entity": "&", "unicode_escape": "\\u"}
_OVERLAP = 512
_ONE_UNICODE_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})")


def _readable(raw: bytes) -> str | None:
    """``raw`` as text when it is UTF-8 made mostly of letters, digits, spaces and punctuation."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if not text:
        return None
    if _SPACE.search(text) is None and _BASE64.fullmatch(text) is None:
        # One word of text is nothing to rescan, unless it is itself encoded (words
        # apart by tabs or line breaks are text too).
        return None
    printable = sum(1 for ch in text if ch.isprintable() or ch in "\n\r\t")
    return text if printable >= 0.95 * len(text) else None


def _b64(run: str) -> bytes | None:
    body = run.rstrip("=")
    body += "=" * (-len(body) % 4)
    try:
        if "-" in body or "_" in body:
            if "+" in body or "/" in body:
                return None  # two alphabets mixed: not base64
            return base64.urlsafe_b64decode(body)
        return base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        return None


def decode_payloads(text: str, budget: int, max_items: int = 16) -> list[tuple[str, str]]:
    """Up to ``max_items`` ``(encoding, decoded text)`` pairs found in ``text``.

    ``budget`` caps the characters of encoded input examined, so a text made of
    one huge base64 run costs at most ``budget`` characters of decoding.
    """
    found: list[tuple[str, str]] = []
    candidates: list[tuple[str, str]] = []
    if "\\x" in text:
        candidates.extend(("hex_escape", m.group()) for m in _HEX_ESCAPES.finditer(text))
    for match in _BASE64.finditer(text):
        run = match.group()
        if _HEX.fullmatch(run):
            candidates.append(("hex", run))
        elif not run.isalpha() and not run.isdigit():
            # A run of letters only is a long word or identifier, not base64 worth decoding.
            candidates.append(("base64", run))
    windows: list[tuple[str, str]] = []
    for encoding, marker in _TEXT_MARKERS.items():
        if marker not in text:
            continue
        # Decoded whole, in windows of the decode cap (overlapping, so a phrase
        # across a window edge is read whole in one of them).
        size = _MAX_RUN[encoding]
        for start in range(0, len(text), size - _OVERLAP):
            window = text[start : start + size]
            if _three(_TEXT_ESCAPES[encoding], window):
                windows.append((encoding, window))
            if start + size >= len(text):
                break
    # Runs and windows have a budget and an item cap each: an HTML page's "&amp;"s
    # must not use up what a base64 payload in it needs, nor the other way round.
    spent = 0
    for encoding, run in candidates:
        if len(found) >= max_items or spent >= budget:
            break
        chunk = run[: min(budget - spent, _MAX_RUN[encoding])]
        spent += len(chunk)
        raw: bytes | None
        if encoding == "base64":
            raw = _b64(chunk)
        elif encoding == "hex":
            raw = bytes.fromhex(chunk[: len(chunk) // 2 * 2])
        else:
            raw = bytes.fromhex(chunk[: len(chunk) // 4 * 4].replace("\\x", ""))
        text_out = _readable(raw) if raw else None
        if text_out is not None:
            found.append((encoding, text_out))
    spent, from_runs = 0, len(found)
    for encoding, window in windows:
        if len(found) - from_runs >= max_items or spent >= budget:
            break
        spent += min(len(window), _MAX_RUN[encoding] - _OVERLAP)  # overlaps are not charged twice
        decoded = _decode_text(encoding, window)
        if decoded is not None and decoded != window:
            found.append((encoding, decoded))
    return found


def _three(pattern: re.Pattern[str], text: str) -> bool:
    """True when ``pattern`` occurs at least three times (found lazily)."""
    matches = pattern.finditer(text)
    return sum(1 for _ in zip(range(3), matches, strict=False)) == 3


def _decode_text(encoding: str, run: str) -> str | None:
    """Percent escapes, HTML character references or ``\\uXXXX`` escapes decoded."""
    if encoding == "html_entity":
        return html.unescape(run)
    if encoding == "unicode_escape":
        decoded = _ONE_UNICODE_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), run)
        # A surrogate pair written as two escapes: joined; a lone one stays escaped.
        return decoded.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    # Malformed sequences are kept as U+FFFD: a stray byte must not hide the rest.
    return unquote(run, errors="replace")


__all__ = ["MIN_RUN", "decode_payloads"]
