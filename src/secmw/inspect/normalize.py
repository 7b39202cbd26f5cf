"""Text views the prompt-injection rules match on, built once per scanned string.

Attackers dodge phrase lists with look-alike spellings, so every string is first
turned into two views of the same length (offsets in one are offsets in the other):

* ``base``: the text after NFKC (fullwidth and mathematical letters become ASCII),
  with invisible characters removed, case-folded and stripped of combining marks
  (``précédentes`` becomes ``precedentes``, Zalgo text loses its marks);
* ``words``: ``base`` with punctuation turned into spaces, leet digits folded to
  letters (``1gn0r3`` reads ``ignore``; ``l``, ``1`` and ``|`` all read ``i``),
  and Cyrillic, Greek and Armenian look-alikes folded to Latin inside words that
  mix scripts.

Text in other scripts also keeps ``native`` (``base`` itself, punctuation kept,
no look-alike folding) for the rules written in those scripts.

Cost follows the text: ASCII (the common case) is a case fold and one table
translation, both C loops; Latin-1 adds NFKC and accent stripping; only other
text pays for the invisible-character, tag and look-alike passes.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

# Punctuation to spaces, leet digits to letters, and ``l`` to ``i`` (``1``, ``l``
# and ``|`` are interchangeable in leet, so they are folded to one letter; the
# rule patterns go through the same fold when compiled).
_PUNCTUATION = "!\"#%&'()*+,-./:;<=>?[\\]^_`{|}~\t\n\r\x0b\x0c"
_LEET = {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s", "l": "i"}
WORD_TABLE: dict[int, str] = {ord(c): " " for c in _PUNCTUATION} | {
    ord(k): v for k, v in _LEET.items()
}
WORD_TABLE[ord("|")] = "i"
# Every other ASCII control character becomes a space too (they never belong to a word).
for _code in range(32):
    WORD_TABLE.setdefault(_code, " ")
WORD_TABLE[127] = " "

# Cyrillic, Greek and Armenian letters that render like Latin ones (after case folding),
# written as escapes so the table itself cannot be misread.
_CONFUSABLES = {
    "\u0430": "a", "\u0432": "b", "\u0435": "e", "\u0451": "e", "\u0437": "3", "\u0438": "u",
    "\u043a": "k", "\u043c": "m", "\u043d": "h", "\u043e": "o", "\u043f": "n", "\u0440": "p",
    "\u0441": "c", "\u0442": "t", "\u0443": "y", "\u0445": "x", "\u044c": "b", "\u0455": "s",
    "\u0456": "i", "\u0457": "i", "\u0458": "j", "\u0501": "d", "\u051b": "q", "\u051d": "w",
    "\u0475": "v", "\u04cf": "i", "\u04bb": "h", "\u0261": "g", "\u0251": "a", "\u0131": "i",
    "\u0237": "j", "\u03b1": "a", "\u03b2": "b", "\u03b3": "y", "\u03b5": "e", "\u03b7": "n",
    "\u03b9": "i", "\u03ba": "k", "\u03bd": "v", "\u03bf": "o", "\u03c1": "p", "\u03c4": "t",
    "\u03c5": "u", "\u03c7": "x", "\u03c9": "w", "\u03f2": "c", "\u03f3": "j", "\u0585": "o",
    "\u0578": "n", "\u057d": "u", "\u0570": "h", "\u0581": "g", "\u0584": "p",
}  # fmt: skip
CONFUSABLE_TABLE: dict[int, str] = {
    ord(k): WORD_TABLE.get(ord(v), v) for k, v in _CONFUSABLES.items()
}

# Characters that render as nothing: format controls, bidi controls, joiners,
# variation selectors, Hangul fillers, tag characters.
INVISIBLE = re.compile(
    "[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e"
    "\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\U0001d173-\U0001d17a\U000e0000-\U000e0fff]"
)
# The same, minus what emoji legitimately use (ZWJ sequences, VS15/VS16).
_SUSPICIOUS_INVISIBLE = re.compile(
    "[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b\u200c\u200e\u200f"
    "\u2060-\u2064\u206a-\u206f\u3164\ufe00-\ufe0d\uffa0\U0001d173-\U0001d17a"
    "\U000e0100-\U000e0fff]|(?<=\\w)[\u200d\ufeff](?=\\w)"
)
_BIDI = re.compile("[\u202a-\u202e\u2066-\u2069]")
# A subdivision flag (England, Scotland, Wales) is the one legitimate use of tags:
# a region code (two letters) and a subdivision (one to three letters or digits).
_TAG_FLAG = re.compile(
    "\U0001f3f4[\U000e0061-\U000e007a]{2}[\U000e0030-\U000e0039\U000e0061-\U000e007a]{1,3}"
    "\U000e007f"
)
_TAG_RUN = re.compile("[\U000e0000-\U000e007f]+")
# Variation selectors used as a byte alphabet ("emoji smuggling").
_VS_RUN = re.compile("[\ufe00-\ufe0f\U000e0100-\U000e01ef]{4,}")
_MARKS = re.compile("[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]")
# Punctuation and whitespace other than the plain space (one for one, so offsets hold).
_NON_WORD = re.compile(r"[^\w ]")
_TYPOGRAPHIC = (
    ("\u2019", "'"), ("\u2018", "'"), ("\u201c", '"'), ("\u201d", '"'),
    ("\u2013", "-"), ("\u2014", "-"), ("\u2026", "."), ("\u00a0", " "),
)  # fmt: skip
_LATIN_LETTER = re.compile("[a-z]")
# Latin letters next to Greek, Cyrillic or Armenian ones, or next to the Latin
# look-alikes of the table (dotless i, script g, Latin alpha, dotless j).
_MIXED_SCRIPT = re.compile(
    "[a-z][\u0370-\u03ff\u0400-\u04ff\u0530-\u058f\u0131\u0237\u0251\u0261]"
    "|[\u0370-\u03ff\u0400-\u04ff\u0530-\u058f\u0131\u0237\u0251\u0261][a-z]"
)
# Capital look-alikes, folded before case folding: Greek capital Nu (U+039D) reads N,
# while its lower case (U+03BD) reads v.
_CAPITAL_CONFUSABLES = str.maketrans(
    "\u0391\u0392\u0395\u0396\u0397\u0399\u039a\u039c\u039d\u039f\u03a1\u03a4\u03a5\u03a7"
    "\u0410\u0412\u0415\u041a\u041c\u041d\u041e\u0420\u0421\u0422\u0425\u0423\u0405\u0406\u0408",
    "ABEZHIKMNOPTYXABEKMHOPCTXYSIJ",
)
_CONFUSABLE_RUN = re.compile("[" + "".join(_CONFUSABLES) + "]+")
# Anything the slow path handles: invisible characters, tags, selectors, styled letters.
_SPECIAL = re.compile(
    "[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e"
    "\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\uff21-\uff3a\uff41-\uff5a"
    "\U0001d173-\U0001d17a\U0001d400-\U0001d7ff\U000e0000-\U000e0fff]"
)
_MATH_ALNUM = re.compile("[\U0001d400-\U0001d7ff\uff21-\uff3a\uff41-\uff5a]")


@dataclass(slots=True)
class Views:
    """The normalised views of one string and what normalisation noticed."""

    base: str
    words: str
    native: str | None = None
    hidden: str = ""
    invisible: int = 0
    bidi: int = 0
    tags: int = 0
    mixed_script: int = 0
    styled: int = 0


def _decode_tags(text: str) -> tuple[str, int, str]:
    """Drop tag characters; return the text, how many there were, and what they spell."""
    cleaned = _TAG_FLAG.sub("\U0001f3f4", text)
    runs = _TAG_RUN.findall(cleaned)
    if not runs:
        return text, 0, ""
    count = sum(len(run) for run in runs)
    hidden = " ".join("".join(chr(ord(ch) - 0xE0000) for ch in run) for run in runs)
    return _TAG_RUN.sub("", cleaned), count, hidden


def _decode_selectors(text: str) -> str:
    """Text smuggled as a run of variation selectors (one byte each), if it is UTF-8."""
    out = []
    for run in _VS_RUN.findall(text):
        raw = bytes(ord(ch) - 0xFE00 if ord(ch) < 0x10000 else ord(ch) - 0xE0100 + 16 for ch in run)
        try:
            out.append(raw.decode("utf-8"))
        except UnicodeDecodeError:
            continue
    return " ".join(out)


def views(text: str) -> Views:
    """Build the views of ``text`` (see the module docstring)."""
    if not text.isascii():
        # Typographic quotes and dashes are what usually keeps English text off the
        # fast path; they are punctuation either way.
        for fancy, plain in _TYPOGRAPHIC:
            if fancy in text:
                text = text.replace(fancy, plain)
    if text.isascii():
        base = text.lower()
        return Views(base, base.translate(WORD_TABLE))
    if _latin1(text):
        # Latin-1 (most Western European text): nothing invisible but the soft
        # hyphen and no look-alike letters, so the expensive passes are skipped.
        invisible = text.count("\u00ad")
        base = _strip_marks(unicodedata.normalize("NFKC", text.replace("\u00ad", "")).casefold())
        return Views(base, _words(base), None, "", invisible)
    hidden = ""
    tags = invisible = bidi = styled = 0
    if _SPECIAL.search(text) is not None:
        styled = len(_MATH_ALNUM.findall(text))
        text, tags, hidden = _decode_tags(text)
        smuggled = _decode_selectors(text)
        if smuggled:
            hidden = f"{hidden} {smuggled}" if hidden else smuggled
        text = unicodedata.normalize("NFKC", text)
        invisible = len(_SUSPICIOUS_INVISIBLE.findall(text))
        bidi = len(_BIDI.findall(text))
        text = INVISIBLE.sub("", text)
    else:
        text = unicodedata.normalize("NFKC", text)
    base = _strip_marks(text.casefold())
    if base.isascii():
        return Views(
            base, base.translate(WORD_TABLE), None, hidden, invisible, bidi, tags, 0, styled
        )
    if _LATIN_LETTER.search(base) is None:
        # No Latin letter: no Latin rule can match and no word mixes scripts, so
        # the words view is not worth building. Native rules read ``base``.
        return Views(base, base, base, hidden, invisible, bidi, tags, 0, styled)
    words = _words(base)
    # Look-alikes are folded only when a word mixes scripts: folding them in plain
    # Russian or Greek text would garble it for the native rules.
    mixed = len(_MIXED_SCRIPT.findall(words))
    if mixed:
        # Capitals first (one character for one, so offsets hold), then the rest.
        capitals = _strip_marks(text.translate(_CAPITAL_CONFUSABLES).casefold())
        latin = _fold_confusables(_words(capitals) if len(capitals) == len(base) else words)
    else:
        latin = words
    return Views(base, latin, base, hidden, invisible, bidi, tags, mixed, styled)


def _words(base: str) -> str:
    """The ``words`` view of ``base``, one character for one."""
    if base.isascii():
        return base.translate(WORD_TABLE)
    # str.translate is slow on non-ASCII strings: punctuation goes by regex and
    # the leet characters by replace, both C loops.
    words = _NON_WORD.sub(" ", base).replace("_", " ")
    for leet, letter in _LEET.items():
        if leet in words:
            words = words.replace(leet, letter)
    return words


def _latin1(text: str) -> bool:
    """True when every character is below U+0100 (a C-speed check)."""
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True


def _fold_confusables(text: str) -> str:
    return _CONFUSABLE_RUN.sub(lambda m: m.group().translate(CONFUSABLE_TABLE), text)


def _strip_marks(text: str) -> str:
    """Remove combining accents (``é`` → ``e``), keeping other scripts composed."""
    if text.isascii():
        return text
    return unicodedata.normalize("NFC", _MARKS.sub("", unicodedata.normalize("NFD", text)))


def fold_pattern(pattern: str) -> str:
    """Apply the letter folds of the ``words`` view to a rule pattern written in plain text."""
    return _strip_marks(pattern).replace("l", "i")


__all__ = ["CONFUSABLE_TABLE", "WORD_TABLE", "Views", "fold_pattern", "views"]
