"""The secret catalogue: what each secret type looks like and how it is confirmed.

A :class:`SecretType` is data: literal ``anchors`` that every match contains
(found by the prefilter at memory-search speed), a bounded regex that confirms a
candidate, and an optional validator (checksum, decodable header, entropy).
``back`` bounds how far before its anchor a match may start and ``max_len`` how
long a match may be; together they bound the stream holdback. ``check`` is a
look-ahead (bounded) and ``before`` a look-behind, both tried right after the
anchor by the prefilter; they must hold for every match. ``before`` never needs
text that has not arrived, so streams use it to release anchors early.
``extent``, matched at the anchor, reaches at least as far as any match through
that anchor can: once its end is visible a stream stops waiting for
``max_len`` characters (long types such as JWTs and PEM blocks need it). Types whose
secret is one part of a longer match (``password=<secret>``) name that part
``s``; only it is replaced. ``chain`` (matched at the end of a match, then at the
end of its own last match, up to ``engine.MORE_ITEMS`` times; its group ``item``
is the list item) extends a match over a list, and ``more`` finds the further
secrets in that extension, each validated on its own (``max_len`` must cover
the whole list): the card numbers after one ``card`` keyword.
"""

from __future__ import annotations

from secmw.redact._contextual import CONTEXTUAL, LOOSE
from secmw.redact._tokens import TOKENS
from secmw.redact.secret_type import SecretType, Validator

BUILTIN: tuple[SecretType, ...] = TOKENS + CONTEXTUAL + LOOSE

__all__ = ["BUILTIN", "CONTEXTUAL", "LOOSE", "TOKENS", "SecretType", "Validator"]
