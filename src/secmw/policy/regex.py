"""Regular expressions in rules: compiled once, refused when they can backtrack badly.

Python's ``re`` backtracks, so a pattern like ``(a+)+$`` takes exponential time on
a crafted input, and the input here is attacker-controlled (paths, headers,
claims, tool arguments). A rule's regex is refused at load time when its parse
tree shows the shapes that cause it:

* an unbounded repeat whose body contains another unbounded repeat
  (``(a+)+``, ``(\\w*\\s?)*``, ``(.*)*``);
* an unbounded repeat over an alternation whose branches can start with the
  same character, also behind a prefix the parser factors out (``(a|ab)*``,
  ``(xa|x.)*``). Single characters collapse into a class (``(\\d|1)+`` is
  ``[\\d1]+``), which cannot backtrack badly and is accepted.

This is a conservative syntactic check, not a proof: it refuses some harmless
patterns and is backed by a second guard, a cap on the length of the text any
rule regex is applied to (``MAX_SUBJECT``).
"""

from __future__ import annotations

import re
from re import _parser as sre_parse  # type: ignore[attr-defined]  # no public API exposes the tree
from typing import Any

MAX_PATTERN = 512
MAX_SUBJECT = 4096

_REPEATS = {sre_parse.MAX_REPEAT, sre_parse.MIN_REPEAT}
_UNBOUNDED = sre_parse.MAXREPEAT


class UnsafeRegexError(ValueError):
    """A pattern that is invalid, too long, or at risk of catastrophic backtracking."""


def compile_rule_regex(pattern: str) -> re.Pattern[str]:
    """Compile a rule regex after checking it; raises :class:`UnsafeRegexError`."""
    if len(pattern) > MAX_PATTERN:
        raise UnsafeRegexError(f"longer than {MAX_PATTERN} characters")
    try:
        tree = sre_parse.parse(pattern)
        compiled = re.compile(pattern)
    except re.error as exc:
        raise UnsafeRegexError(f"not a valid regular expression: {exc}") from None
    _check(list(tree), inside_unbounded=False)
    return compiled


def _check(items: list[tuple[Any, Any]], *, inside_unbounded: bool) -> None:
    for op, arg in items:
        if op in _REPEATS:
            _low, high, body = arg
            unbounded = high == _UNBOUNDED or high > 64
            if unbounded and inside_unbounded:
                raise UnsafeRegexError("nested unbounded repetition can backtrack catastrophically")
            if unbounded and _ambiguous_alternation(list(body)):
                raise UnsafeRegexError(
                    "repeated alternation with overlapping branches can backtrack catastrophically"
                )
            _check(list(body), inside_unbounded=inside_unbounded or unbounded)
        elif op is sre_parse.SUBPATTERN:
            _check(list(arg[-1]), inside_unbounded=inside_unbounded)
        elif op is sre_parse.BRANCH:
            for branch in arg[1]:
                _check(list(branch), inside_unbounded=inside_unbounded)
        elif op in (sre_parse.ASSERT, sre_parse.ASSERT_NOT):
            _check(list(arg[1]), inside_unbounded=inside_unbounded)


def _ambiguous_alternation(items: list[tuple[Any, Any]]) -> bool:
    """True when an alternation anywhere in ``items`` has two branches that may start alike.

    Anywhere, not only first: the parser factors a shared prefix out of the
    branches (``xa|x.`` becomes ``x(?:a|.)``), which moves the ambiguity behind it.
    """
    for op, arg in items:
        if op is sre_parse.SUBPATTERN:
            if _ambiguous_alternation(list(arg[-1])):
                return True
        elif op is sre_parse.BRANCH:
            starts = [_first_chars(list(branch)) for branch in arg[1]]
            for index, first in enumerate(starts):
                for other in starts[index + 1 :]:
                    if first is None or other is None or first & other:
                        return True
            if any(_ambiguous_alternation(list(branch)) for branch in arg[1]):
                return True
    return False


def _first_chars(items: list[tuple[Any, Any]]) -> set[int] | None:
    """The characters a sequence can start with; ``None`` means "could be many"."""
    if not items:
        return None
    op, arg = items[0]
    if op is sre_parse.LITERAL:
        return {arg}
    if op is sre_parse.SUBPATTERN:
        return _first_chars(list(arg[-1]))
    if op is sre_parse.IN:
        chars: set[int] = set()
        for kind, value in arg:
            if kind is sre_parse.LITERAL:
                chars.add(value)
            elif kind is sre_parse.RANGE and value[1] - value[0] < 256:
                chars.update(range(value[0], value[1] + 1))
            else:
                return None
        return chars
    return None
