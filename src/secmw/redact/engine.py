"""The scanner: literal prefilter, bounded confirmation, leftmost selection.

Clean text costs two C-level regex passes (one over the text, one over its ASCII
lower-case copy for keyword anchors). Each alternative of those passes starts
with the rarest character of an anchor, so the regex engine skips from one
occurrence of a rare character to the next and Python code runs only at real
anchor hits. A hit opens a window ``[anchor - back, anchor + max_len + 2)`` for
its types; their regexes and validators run inside the windows only.

Overlapping candidates are resolved left to right: the leftmost secret wins,
then the higher priority, then the longer match. Streams use the same scan and
hold back only from the earliest window that is not complete yet.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from secmw.redact.catalogue import SecretType, Validator

# Window margin past ``max_len``: the character after a match decides its boundary.
LOOKAHEAD = 2
# Rough share (percent) of each character in mixed prose, logs, JSON and code. A
# prefilter pass costs about as much as scanning for one rare character (1.0 here)
# plus the share of its pivot character, so pivots are chosen to keep the sum small.
_SHARE = {
    **dict.fromkeys("etaoinsr", 6.0),
    **dict.fromkeys("hldcu", 3.0),
    **dict.fromkeys("mfpgwyb", 1.8),
    **dict.fromkeys("vk", 0.7),
    **dict.fromkeys("xjqz", 0.15),
    **dict.fromkeys("TSAEIRNOC", 0.3),
    **dict.fromkeys("QJXZ", 0.02),
    **dict.fromkeys("0123456789", 0.6),
    " ": 15.0,
    ".": 1.5,
    ",": 1.0,
    '"': 1.0,
    "_": 0.5,
    "-": 0.7,
    ":": 0.6,
    "/": 0.5,
    "=": 0.3,
    "~": 0.01,
    "@": 0.02,
}
_ASCII_LOWER = {code: code + 32 for code in range(65, 91)}
_TOKEN_RUN = re.compile(r"[A-Za-z0-9_.+~-]*\Z")


class Candidate(NamedTuple):
    """A confirmed secret: its span, its type's index, and where its whole match starts."""

    start: int
    end: int
    rule: int
    origin: int


class _Rule:
    __slots__ = (
        "back",
        "chain",
        "extent",
        "group",
        "max_len",
        "more",
        "name",
        "priority",
        "regex",
        "validate",
    )

    def __init__(self, secret: SecretType) -> None:
        self.name = secret.name
        self.regex = re.compile(secret.pattern, re.ASCII)
        self.group = "s" if "s" in self.regex.groupindex else None
        self.validate: Validator | None = secret.validate
        self.back = secret.back
        self.max_len = secret.max_len
        self.priority = secret.priority
        self.extent = re.compile(secret.extent, re.ASCII) if secret.extent else None
        self.more = re.compile(secret.more, re.ASCII) if secret.more else None
        self.chain = re.compile(secret.chain, re.ASCII) if secret.chain else None


def _cost(char: str) -> float:
    return 1.0 + _SHARE.get(char, 0.2)


def _pivots(anchors: Sequence[str]) -> dict[str, int]:
    """Each anchor's pivot index: a greedy weighted set cover over their characters."""
    chosen: set[str] = set()
    left = set(anchors)
    while left:
        best = min(
            {char for anchor in left for char in anchor},
            key=lambda char: (_cost(char) / sum(char in anchor for anchor in left), char),
        )
        chosen.add(best)
        left = {anchor for anchor in left if best not in anchor}
    pivots = {}
    for anchor in anchors:
        candidates = [i for i, char in enumerate(anchor) if char in chosen]
        pivots[anchor] = min(candidates, key=lambda i: (_cost(anchor[i]), -i))
    return pivots


class _Pass:
    """Prefilter passes over one spelling of the text: one regex per pivot character.

    A regex that starts with one literal character lets the engine jump from one
    occurrence of it to the next at memory-search speed; the literal text around
    the pivot is then checked by fixed-width look-behind and look-ahead.
    """

    __slots__ = ("by_char", "chars", "free", "regexes")

    def __init__(self, entries: Sequence[tuple[str, int, str | None, str | None]]) -> None:
        rules_of: dict[str, list[int]] = defaultdict(list)
        checks_of: dict[str, set[str]] = defaultdict(set)
        befores_of: dict[str, set[str]] = defaultdict(set)
        for anchor, rule, check, before in entries:
            rules_of[anchor].append(rule)
            checks_of[anchor].add((before or "") + (check or ""))
            befores_of[anchor].add(before or "")
        pivots = _pivots(list(rules_of))
        slots: dict[str, dict[tuple[int, int], dict[str, tuple[int, ...]]]] = defaultdict(dict)
        checked: dict[str, list[tuple[str, str]]] = defaultdict(list)
        bare: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for anchor, rules in sorted(rules_of.items()):
            i = pivots[anchor]
            group = slots[anchor[i]].setdefault((i, len(anchor)), {})
            group[anchor] = tuple(sorted(set(rules)))
            before, rest = anchor[: i + 1], anchor[i + 1 :]
            checks = sorted(checks_of[anchor])
            after = re.escape(rest) + ("(?:" + "|".join(checks) + ")" if any(checks) else "")
            checked[anchor[i]].append((before, after))
            befores = sorted(befores_of[anchor])
            behind = "(?:" + "|".join(befores) + ")" if any(befores) else ""
            bare[anchor[i]].append((before, re.escape(rest) + behind))
        # Per pivot character: (offset of the pivot, anchor length, anchor -> types),
        # so a hit is identified with one slice and one dict lookup per shape.
        self.by_char = {
            char: [(i, length, table) for (i, length), table in sorted(groups.items())]
            for char, groups in slots.items()
        }
        self.chars = sorted(checked)
        self.regexes = [_compile(char, checked[char]) for char in self.chars]
        self.free = [_compile(char, bare[char]) for char in self.chars]


def _compile(char: str, parts: list[tuple[str, str]]) -> re.Pattern[str]:
    """``char`` then, for each anchor, look-behind for what precedes and look-ahead for the rest."""
    bare: set[str] = set()
    firsts: set[str] = set()
    behind: set[str] = set()
    previous: set[str] = set()
    for before, after in parts:
        ahead = f"(?={after})" if after else ""
        if len(before) > 1:
            behind.add(f"(?<={re.escape(before)})" + ahead)
            previous.add(re.escape(before[-2]))
        else:
            bare.add(ahead)
            firsts.add(re.escape(after[0]) if after and after[0] not in "\\([" else "")
    # A one-character look-ahead or look-behind guard rejects most occurrences of
    # the pivot before any anchor's own look-arounds are tried.
    alternatives = []
    if bare:
        first = "" if "" in firsts else f"(?=[{''.join(sorted(firsts))}])"
        alternatives.append(first + "(?:" + "|".join(sorted(bare)) + ")")
    if behind:
        guard = f"(?<=[{''.join(sorted(previous))}]{re.escape(char)})"
        alternatives.append(guard + "(?:" + "|".join(sorted(behind)) + ")")
    body = "|".join(alternatives)
    return re.compile(re.escape(char) + (f"(?:{body})" if body else ""), re.ASCII)


class Scanner:
    """Finds secrets of the given types in text; built once, used concurrently."""

    __slots__ = (
        "_allow",
        "_allow_patterns",
        "_cased",
        "_folded",
        "_max_anchor",
        "_max_back",
        "_partials",
        "_reach",
        "_tail",
        "max_window",
        "rules",
    )

    def __init__(
        self,
        types: Iterable[SecretType],
        *,
        allow: Iterable[str] = (),
        allow_patterns: Iterable[str] = (),
    ) -> None:
        types = list(types)
        self.rules = [_Rule(secret) for secret in types]
        cased: list[tuple[str, int, str | None, str | None]] = []
        folded: list[tuple[str, int, str | None, str | None]] = []
        partials: dict[tuple[bool, str], int] = {}
        reach = [0] * len(types)
        tail = 0
        for index, secret in enumerate(types):
            for anchor in secret.anchors:
                key = anchor.lower() if secret.ignore_case else anchor
                entry = (key, index, secret.check, secret.before)
                (folded if secret.ignore_case else cased).append(entry)
                for k in range(1, len(key)):
                    part = (secret.ignore_case, key[:k])
                    partials[part] = max(partials.get(part, 0), secret.back)
                reach[index] = max(reach[index], len(key) + _check_span(secret.check))
                tail = max(tail, reach[index])
        self._cased = _Pass(cased)
        self._folded = _Pass(folded) if folded else None
        self._partials = partials
        self._reach = reach
        self._max_anchor = max(
            (entry[0] for entry in cased + folded), key=len, default=""
        ).__len__()
        self._tail = tail
        self._max_back = max((secret.back for secret in types), default=0)
        self.max_window = max(
            (secret.back + secret.max_len + LOOKAHEAD for secret in types), default=0
        )
        self._allow = frozenset(allow)
        self._allow_patterns = tuple(re.compile(pattern) for pattern in allow_patterns)

    def name(self, rule: int) -> str:
        """The type name of a candidate's rule."""
        return self.rules[rule].name

    # -- scanning ------------------------------------------------------------

    def _anchors(
        self, text: str, lo: int, folded_text: str | None, free: bool
    ) -> list[tuple[int, int]]:
        """(anchor position, rule) for every anchor hit at or after ``lo``."""
        hits: list[tuple[int, int]] = []
        passes = [(self._cased, text)]
        if self._folded is not None and folded_text is not None:
            passes.append((self._folded, folded_text))
        for table, hay in passes:
            by_char = table.by_char
            for char, regex in zip(table.chars, table.free if free else table.regexes, strict=True):
                # ``in`` is a vectorised memory search, the regex engine's own skip
                # loop is not: a pivot absent from the text costs almost nothing.
                if char not in hay:
                    continue
                for match in regex.finditer(hay, lo):
                    pos = match.start()
                    for offset, length, shapes in by_char[hay[pos]]:
                        q = pos - offset
                        rules = shapes.get(hay[q : q + length]) if q >= 0 else None
                        if rules is not None:
                            hits.extend((q, rule) for rule in rules)
        return hits

    def scan(self, text: str, lo: int = 0) -> tuple[list[Candidate], list[tuple[int, int]]]:
        """Selected candidates starting at or after ``lo``, and the anchor hits."""
        found, hits = self.confirmed(text, lo)
        return self.select(found), hits

    def confirmed(self, text: str, lo: int = 0) -> tuple[list[Candidate], list[tuple[int, int]]]:
        """Every confirmed candidate (overlaps not resolved yet), and the anchor hits."""
        folded = _fold(text) if self._folded is not None else None
        hits = self._anchors(text, lo, folded, free=False)
        if not hits:
            return [], hits
        return self._confirm(text, hits, lo), hits

    def _confirm(self, text: str, hits: list[tuple[int, int]], lo: int) -> list[Candidate]:
        """Run each hit's type regex at its anchor (``match``) or just before it (``search``).

        Every match contains an anchor no more than ``back`` characters after its
        start, so trying each anchor finds every match; no window is scanned.
        Hits are tried by descending priority: a match that starts where a
        confirmed one of higher priority (or equal priority, not shorter) starts
        would lose in :meth:`select` anyway, so its validator is not run.
        """
        n = len(text)
        seen: set[tuple[int, int, int]] = set()
        found: list[Candidate] = []
        allow, allow_patterns = self._allow, self._allow_patterns
        rules = self.rules
        if len(hits) > 1:
            hits = sorted(hits, key=lambda hit: -rules[hit[1]].priority)
        winners: dict[int, tuple[int, int]] = {}  # start -> (priority, end) confirmed there
        chains: dict[int, dict[int, tuple[list[int], int]]] = {}  # per rule
        for q, index in hits:
            rule = rules[index]
            stop = min(n, q + rule.max_len + LOOKAHEAD)
            if rule.back:
                match = rule.regex.search(text, max(0, q - rule.back), stop)
            else:
                match = rule.regex.match(text, q, stop)
            if match is None:
                continue
            spans = [match.span(rule.group) if rule.group else match.span()]
            if rule.more is not None:
                start, end = spans[0][1], match.end()
                if rule.chain is not None:
                    start, end = _follow(rule, text, spans[0], stop, chains.setdefault(index, {}))
                spans += [
                    more.span(rule.group) if rule.group else more.span()
                    for more in rule.more.finditer(text, start, end)
                ]
            for s, e in spans:
                if s < lo or s == e or (s, e, index) in seen:
                    continue
                seen.add((s, e, index))
                winner = winners.get(s)
                if winner is not None and (
                    winner[0] > rule.priority or (winner[0] == rule.priority and winner[1] >= e)
                ):
                    continue
                value = text[s:e]
                if rule.validate is not None and not rule.validate(value):
                    continue
                if (allow and value in allow) or (
                    allow_patterns and any(p.fullmatch(value) for p in allow_patterns)
                ):
                    continue
                found.append(Candidate(s, e, index, match.start()))
                if winner is None or winner[0] < rule.priority or winner[1] < e:
                    winners[s] = (rule.priority, e)
        return found

    def select(self, found: list[Candidate]) -> list[Candidate]:
        """Leftmost first, then higher priority, then longer; no overlaps."""
        if len(found) < 2:
            return found
        found = list(set(found))
        rules = self.rules
        found.sort(key=lambda c: (c.start, -rules[c.rule].priority, c.start - c.end))
        chosen: list[Candidate] = []
        last = -1
        for candidate in found:
            if candidate.start >= last:
                chosen.append(candidate)
                last = candidate.end
        return chosen

    # -- streaming -----------------------------------------------------------

    def hold_from(self, text: str, hits: list[tuple[int, int]], lo: int) -> int:
        """The earliest position a match still in progress at the end of ``text`` may start.

        A window is in progress while it reaches past the end of the text; an
        anchor whose check could not read all it needs yet counts too; a partial
        anchor at the very end, and a trailing run of token characters for types
        whose match starts before their anchor, hold back as well.
        """
        end = len(text)
        hold = end
        rules = self.rules
        base = max(0, lo - self._max_anchor, end - self._tail)
        tail = text[base:]
        folded = _fold(tail) if self._folded is not None else None
        tail_hits = [(q + base, rule) for q, rule in self._anchors(tail, 0, folded, free=True)]
        for q, rule_index in hits:
            rule = rules[rule_index]
            if q + rule.max_len + LOOKAHEAD > end and not _closed(rule, text, q, end):
                hold = min(hold, q - rule.back)
        reach = self._reach
        for q, rule_index in tail_hits:
            # The anchor's check may have failed only for want of text.
            if q + reach[rule_index] > end and not _closed(rules[rule_index], text, q, end):
                hold = min(hold, q - rules[rule_index].back)
        partials = self._partials
        for k in range(1, min(self._max_anchor, end - lo) + 1):
            back = partials.get((False, tail[-k:]))
            if back is None and folded is not None:
                back = partials.get((True, folded[-k:]))
            if back is not None:
                hold = min(hold, end - k - back)
        if self._max_back:
            run = _TOKEN_RUN.search(text, max(lo, end - self._max_back))
            if run is not None:
                hold = min(hold, run.start())
        return max(hold, 0)


# How many further items ``more`` may add after a match (each within ``max_len``).
MORE_ITEMS = 31


def _follow(
    rule: _Rule,
    text: str,
    first: tuple[int, int],
    stop: int,
    chains: dict[int, tuple[list[int], int]],
) -> tuple[int, int]:
    """The stretch of text ``rule.chain`` newly covers after ``first``: where to look for more.

    Each keyword of a list ("card ... card ...") would walk the same items again:
    the walk is shared (``chains`` maps the start of an item to its chain, a list of
    item ends, and its place in it), so every item is walked and searched once and
    a later keyword only continues the chain past its end, within its own
    ``MORE_ITEMS`` and window.
    """
    assert rule.chain is not None
    known = chains.get(first[0])
    if known is None:
        ends = [first[1]]
        chains[first[0]] = (ends, 0)
        budget = MORE_ITEMS
    else:
        ends, place = known
        budget = MORE_ITEMS - (len(ends) - 1 - place)
    start = position = ends[-1]
    while budget > 0:
        step = rule.chain.match(text, position, stop)
        if step is None:
            break
        chains[step.start("item")] = (ends, len(ends))
        ends.append(step.end())
        position = step.end()
        budget -= 1
    return start, position


def _closed(rule: _Rule, text: str, q: int, end: int) -> bool:
    """True when the type's extent at ``q`` already ends before the end of ``text``."""
    if rule.extent is None:
        return False
    match = rule.extent.match(text, q, min(end, q + rule.max_len))
    return match is not None and match.end() + LOOKAHEAD <= end


def _fold(text: str) -> str:
    """ASCII lower case with unchanged length (``str.lower`` may change it)."""
    return text.lower() if text.isascii() else text.translate(_ASCII_LOWER)


def _check_span(check: str | None) -> int:
    """An upper bound of the length a check lookahead reads."""
    if not check:
        return 0
    total = 0
    for piece in re.finditer(r"\{(\d+)(?:,(\d+))?\}|\\.|\[[^\]]*\]|.", check):
        if piece.group(1):
            total += int(piece.group(2) or piece.group(1)) - 1
        else:
            total += 1
    return total + 4


__all__ = ["LOOKAHEAD", "Candidate", "Scanner"]
