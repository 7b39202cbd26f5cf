"""Validators that turn a regex candidate into a confirmed secret.

Each takes the candidate secret and returns True when it has the structure the
issuer gives it (a checksum, a decodable header) or, for context-only types, when
it looks random enough and is not a placeholder.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import zlib
from collections import Counter

_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_BECH32_GEN = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)

# Documentation values and template syntax that look like secrets but are not.
_PLACEHOLDER_WORDS = (
    "xxxx",
    "****",
    "....",
    "example",
    "sample",
    "dummy",
    "placeholder",
    "redacted",
    "changeme",
    "your_",
    "your-",
    "insert_",
    "insert-",
    "replace",
    "${",
    "$(",
    "{{",
    "%(",
    "00000000",
    "abcdef",
    "123456",
    "fake",
    "test_key",
    "test_token",
    "test_secret",
)
_PLACEHOLDER_LOWER = re.compile("|".join(re.escape(word) for word in _PLACEHOLDER_WORDS))
_PLACEHOLDER = re.compile(r"<[^>]*>|\$[A-Z_]{3,}")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_HEX = re.compile(r"[0-9a-fA-F]+")
_IDENTIFIER = re.compile(r"[a-z]+(?:[_.-][a-z]+)*|[A-Z]+(?:[_.-][A-Z]+)*|[a-z]+(?:[A-Z][a-z]+)+")


def base62_crc32(data: str) -> str:
    """The 6-character base62 CRC32 tail of GitHub and npm tokens."""
    value = zlib.crc32(data.encode("ascii"))
    digits = []
    while value:
        value, rest = divmod(value, 62)
        digits.append(_BASE62[rest])
    return "".join(reversed(digits)).rjust(6, "0")


def crc32_tail(token: str) -> bool:
    """GitHub classic and npm tokens: the last 6 characters checksum the 30 before them."""
    body = token[-36:]
    return base62_crc32(body[:30]) == body[30:]


def luhn(digits: str) -> bool:
    """The Luhn check (ISO/IEC 7812-1) over the digits of a card number."""
    numbers = [ord(char) - 48 for char in digits if "0" <= char <= "9"]
    total = 0
    for index, digit in enumerate(reversed(numbers)):
        doubled = digit * 2 if index % 2 else digit
        total += doubled - 9 if doubled > 9 else doubled
    return total % 10 == 0 and len(set(numbers)) > 1


def _b64url_json(part: str) -> bool:
    try:
        decoded = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
        return isinstance(json.loads(decoded), dict)
    except (ValueError, binascii.Error):
        return False


def jwt_parts(token: str) -> bool:
    """A JWT (RFC 7519): header and payload must be base64url JSON objects."""
    parts = token.split(".")
    return len(parts) == 3 and _b64url_json(parts[0]) and _b64url_json(parts[1])


def bech32(token: str) -> bool:
    """An age secret key: a valid upper-case Bech32 string (BIP 173 checksum)."""
    lowered = token.lower()
    hrp, _, data = lowered.rpartition("1")
    if not hrp or len(data) < 6 or any(char not in _BECH32 for char in data):
        return False
    values = [ord(char) >> 5 for char in hrp] + [0] + [ord(char) & 31 for char in hrp]
    values += [_BECH32.index(char) for char in data]
    checksum = 1
    for value in values:
        top = checksum >> 25
        checksum = (checksum & 0x1FFFFFF) << 5 ^ value
        for bit, generator in enumerate(_BECH32_GEN):
            if top >> bit & 1:
                checksum ^= generator
    return checksum == 1


def bedrock(token: str) -> bool:
    """An AWS Bedrock API key: ``ABSK`` + base64 of ``BedrockAPIKey-...``."""
    body = token[4:]
    try:
        decoded = base64.b64decode(body[:20] + "=" * (-len(body[:20]) % 4))
    except (ValueError, binascii.Error):
        return False
    return decoded.startswith(b"BedrockAPIKey-")


def entropy(value: str) -> float:
    """Shannon entropy in bits per character."""
    length = len(value)
    if not length:
        return 0.0
    # H = log2(L) - sum(n log2 n) / L: one logarithm per distinct character, no division.
    log2 = math.log2
    weighted = 0.0
    for count in Counter(value).values():
        weighted += count * log2(count)
    return log2(length) - weighted / length


def placeholder(value: str) -> bool:
    """True for documentation values and templates (``xxxx``, ``EXAMPLE``, ``${VAR}``)."""
    if _PLACEHOLDER_LOWER.search(value.lower()) is not None:
        return True
    return ("<" in value or "$" in value) and _PLACEHOLDER.search(value) is not None


# Placeholder words short enough to turn up by chance in a long random key (``xxxx``
# case-insensitively: about once in 10,000 keys of 100 characters): in such a key,
# only a longer run of them, or a repeat, is taken as a sign of a placeholder.
_CHANCE_WORDS = frozenset({"xxxx", "****", "....", "00000000", "abcdef", "123456", "fake"})
_STRONG_LOWER = re.compile(
    "|".join(re.escape(word) for word in _PLACEHOLDER_WORDS if word not in _CHANCE_WORDS)
    + r"|x{8}|\*{8}|\.{8}|0{12}|abcdefgh|12345678|fake.*fake"
)
# Up to this length a key is short enough for the chance words to count as they are.
_SHORT_KEY = 32


def not_placeholder(value: str) -> bool:
    """Structural types without a checksum: refuse documentation values only."""
    if len(set(value)) <= 4:
        return False
    if not placeholder(value):
        return True
    if len(value) <= _SHORT_KEY:
        return False
    return _STRONG_LOWER.search(value.lower()) is None and not (
        ("<" in value or "$" in value) and _PLACEHOLDER.search(value) is not None
    )


def random_looking(value: str, threshold: float = 3.0) -> bool:
    """A context-only value (``password=...``): high entropy, not a known harmless shape.

    UUIDs, git SHAs and other pure hex ids, dotted/underscored words, placeholders
    and template references are refused; so is anything under ``threshold`` bits
    per character.
    """
    if placeholder(value) or _UUID.fullmatch(value) or _IDENTIFIER.fullmatch(value):
        return False
    if _HEX.fullmatch(value) and len(value) in (7, 8, 12, 32, 40, 64):
        return False
    return entropy(value) >= threshold


def aws_secret(value: str) -> bool:
    """A 40-character AWS secret key near AWS context: random, not a SHA or placeholder."""
    return random_looking(value, 4.0) and not _HEX.fullmatch(value)


def azure_account_key(value: str) -> bool:
    """An Azure storage key: 88 base64 characters that decode to 64 bytes."""
    try:
        return len(base64.b64decode(value, validate=True)) == 64
    except (ValueError, binascii.Error):
        return False


def basic_credentials(value: str) -> bool:
    """HTTP Basic (RFC 7617): base64 of printable ``user:password``."""
    try:
        decoded = base64.b64decode(value + "=" * (-len(value) % 4), validate=True).decode("utf-8")
    except (ValueError, binascii.Error):
        return False
    _, sep, password = decoded.partition(":")
    return bool(sep and password) and decoded.isprintable() and not placeholder(decoded)


_CARD_PREFIXES = re.compile(r"4|5[1-5]|2(?:22[1-9]|2[3-9]|[3-6]|7[01]|720)|3[47]|6(?:011|5)")


def card_number(value: str) -> bool:
    """A payment card number: a known issuer prefix, 13-19 digits, and the Luhn check."""
    digits = "".join(char for char in value if char.isdigit())
    if not 13 <= len(digits) <= 19 or not _CARD_PREFIXES.match(digits):
        return False
    return luhn(digits)
