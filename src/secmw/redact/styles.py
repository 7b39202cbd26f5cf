"""How a found secret is written back: the replacement styles and the fingerprint."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from typing import Literal

Style = Literal["placeholder", "mask", "partial", "hash"]
Replacer = Callable[[str, str], str]


class Styler:
    """Builds replacements and fingerprints; holds the salt, never a secret.

    The fingerprint is a keyed BLAKE2b (RFC 7693) of the value under the salt,
    16 hex digits: equal secrets get equal fingerprints (so an operator can
    correlate findings) while the value cannot be recovered or brute-forced
    without the salt. Without a configured salt a random one is drawn per process.
    """

    __slots__ = ("_key", "replace", "style")

    def __init__(self, style: Style = "placeholder", salt: bytes | None = None) -> None:
        self.style = style
        key = salt if salt is not None else secrets.token_bytes(32)
        # BLAKE2b takes keys up to 64 bytes; longer salts are hashed down first.
        self._key = key if len(key) <= 64 else hashlib.sha256(key).digest()
        self.replace: Replacer = {
            "placeholder": _placeholder,
            "mask": _mask,
            "partial": _partial,
            "hash": self._hashed,
        }[style]

    def fingerprint(self, value: str) -> str:
        """A keyed hash of ``value`` (16 hex digits); the value cannot be recovered."""
        try:
            data = value.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:  # a lone surrogate from a JSON escape ("\ud800")
            data = value.encode("utf-8", "surrogatepass")
        return hashlib.blake2b(data, key=self._key, digest_size=8).hexdigest()

    def _hashed(self, kind: str, value: str) -> str:
        return f"[REDACTED:{kind}:{self.fingerprint(value)[:12]}]"


def _placeholder(kind: str, value: str) -> str:
    return f"[REDACTED:{kind}]"


def _mask(kind: str, value: str) -> str:
    # Keeps the length so column layouts in logs survive; the length of most
    # token formats is public anyway.
    return "*" * len(value)


def _partial(kind: str, value: str) -> str:
    """Public prefix (up to the first separator, at most 7 characters) and last 4."""
    prefix = ""
    for index, char in enumerate(value[:8]):
        if char in "_-." and index:
            prefix = value[: index + 1]
            break
    tail = value[-4:] if len(value) >= 24 else ""
    return f"{prefix}\u2026{tail}"
