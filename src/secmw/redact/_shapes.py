"""Shared pieces of the catalogue's patterns: boundaries, alphabets, the token helper."""

from __future__ import annotations

from secmw.redact import _checks as check
from secmw.redact.secret_type import SecretType, Validator

B = r"(?<![A-Za-z0-9_])"  # not glued to a longer word on the left
BD = r"(?<![A-Za-z0-9_-])"
E = r"(?![A-Za-z0-9_])"
ED = r"(?![A-Za-z0-9_-])"
AN = "A-Za-z0-9"
U = "A-Za-z0-9_-"


def simple(
    name: str,
    anchors: tuple[str, ...],
    body: str,
    max_len: int,
    *,
    dash: bool = False,
    validate: Validator | None = check.not_placeholder,
    source: str,
    validation: str = "shape; placeholders refused",
    priority: int = 60,
    check_after: str | None = None,
) -> SecretType:
    """A prefixed token: one of ``anchors`` then ``body``, bounded on both sides."""
    left, right = (BD, ED) if dash else (B, E)
    prefix = "(?:" + "|".join(escape(anchor) for anchor in anchors) + ")"
    return SecretType(
        name,
        anchors,
        left + prefix + body + right,
        max_len,
        check=check_after,
        validate=validate,
        priority=priority,
        source=source,
        validation=validation,
    )


def escape(literal: str) -> str:
    return "".join("\\" + char if not char.isalnum() and char != "_" else char for char in literal)


GENERIC_VALUE = r"""[^\s"'`,;<>{}()\[\]\\]"""
ASSIGN = r"""[A-Za-z0-9_.-]{0,24}?["']?\s{0,4}(?::=|=>|[:=])\s{0,4}["']?"""
