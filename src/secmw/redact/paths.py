"""Secrets in request paths, for audit lines: the catalogue's, and credentials by their place.

A path's secret may have no known format (a magic link, a reset token): then only
the segment before it tells. Strong words (``reset``, ``magic``, ``confirm``, …)
mark every later token-like segment; weaker ones (``share``, ``key``, ``hook``, …)
the next segment unless it reads as a file name or a slug of words.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

from secmw.redact.base import Redactor

# Words that, in a path segment, announce a credential in the segments after it
# (magic links, password resets, confirmations, invitations, unsubscribe links):
# any later segment that looks like a token goes. Stems that are no part of
# other words match anywhere in the segment ("passwordless", "reactivate",
# "email_confirmations"); short words only whole ("reset", not "preset").
_STRONG_STEMS = (
    "password", "verif", "confirm", "activat", "magic", "unsubscrib", "invit", "recover",
    "apikey", "accesstoken", "resetpassword", "passwordreset",
)  # fmt: skip
_STRONG_WORDS = frozenset({"reset", "token", "tokens", "otp", "secret", "secrets"})
# Segments after which the next one is a credential unless it reads as a name:
# a file name, or a slug of short words (these words also come before those).
_WEAK_SEGMENTS = frozenset(
    {
        "link", "links", "share", "shared", "download", "downloads", "key", "keys", "code",
        "codes", "session", "sessions", "auth", "callback", "hook", "hooks", "webhook",
        "webhooks", "bot", "login", "signin", "approve", "claim",
    }
)  # fmt: skip
_TOKEN_SEGMENT = re.compile(r"[A-Za-z0-9_+=.~-]{16,}")
_WORDS = re.compile(r"[A-Za-z][a-z]*|[0-9]+")
# Words of letters (or a number) joined by "-" or "_": a random value's chunks
# mix digits into letters, or cases.
_SLUG = re.compile(
    r"(?:[a-z]{1,12}|[A-Z]?[a-z]{1,11}|[0-9]{1,8})(?:[-_](?:[a-z]{1,12}|[A-Z]?[a-z]{1,11}|[0-9]{1,8}))+"
)


def _words(segment: str) -> set[str]:
    """The words of a segment, lower-cased, and the segment without separators."""
    found = {word.lower() for word in _WORDS.findall(segment)}
    found.add(segment.lower().replace("-", "").replace("_", ""))
    return found


def _token_like(segment: str) -> bool:
    """16+ token characters with a digit or both cases (not a slug of words)."""
    return bool(_TOKEN_SEGMENT.fullmatch(segment)) and (
        any(char.isdigit() for char in segment) or segment.lower() != segment != segment.upper()
    )


def _value_like(segment: str) -> bool:
    """A token-like segment that is not a file name or a slug of short words."""
    return _token_like(segment) and "." not in segment and not _SLUG.fullmatch(segment)


def path_for_audit(redactor: Redactor, path: str) -> str:
    """``path`` with the secrets in it redacted, for an audit line.

    A percent-encoded path (one secmw refused as ambiguous is logged raw) is read
    decoded: ``/bot123:A%41…`` hides a token from a scan of the raw text; when
    something is redacted the decoded form is what the line shows. Past the
    catalogue's formats, a token after a segment that names a credential is
    taken for one: any token-like segment after ``reset``, ``magic``, ``verify``,
    ``invite``, … (``/reset/<uid>/<token>``) and every segment after it, and one
    that is no file name or slug right after ``link``, ``share``, ``key``, ….
    """
    text = unquote(path, errors="replace") if "%" in path else path
    clean = redactor.redact(text)[0]
    segments = clean.split("/")
    strong = found = False
    for index in range(1, len(segments)):
        before = _words(segments[index - 1])
        joined = segments[index - 1].lower().replace("-", "").replace("_", "")
        strong = (
            strong
            or not before.isdisjoint(_STRONG_WORDS)
            or any(stem in joined for stem in _STRONG_STEMS)
        )
        segment = segments[index]
        if (
            (found and segment)  # the rest of a token that held a "/" (sent as %2F)
            or (strong and _token_like(segment))
            or (not before.isdisjoint(_WEAK_SEGMENTS) and _value_like(segment))
        ):
            segments[index] = "[REDACTED:path_token]"
            found = found or strong
    clean = "/".join(segments)
    return path if clean == text else clean


__all__ = ["path_for_audit"]
