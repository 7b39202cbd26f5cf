"""The prompt-injection scanner: scores any text, with no request around it.

:class:`PromptInjectionScanner` is built once (every regex compiled, every table
made) and then scores strings: tool-call arguments, prompts, LLM messages, or tool
*outputs* and fetched documents (indirect injection). It returns a score in 0..1
and the matched signals as :class:`~secmw.context.Finding` objects: a kind, a
weight, offsets into the normalised text and a fingerprint, never the payload.

Scores combine as described in :mod:`secmw.inspect.results`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from secmw.context import Finding
from secmw.inspect.encoded import decode_payloads
from secmw.inspect.normalize import INVISIBLE, Views, fold_pattern, views
from secmw.inspect.results import SIGNAL_KINDS, Budget, ScanResult, ScanState, combine
from secmw.inspect.rules import ENGLISH, META_WORDS, Rule
from secmw.inspect.rules_intl import LATIN_OTHER, NATIVE
from secmw.inspect.structure import DESTINATION, STRUCTURE_RULES, StructureRule
from secmw.inspect.walk import scan_tree

ALL_RULES: tuple[Rule, ...] = ENGLISH + LATIN_OTHER + NATIVE
# Meta words as the words view spells them ("example" reads "exampie").
_META = frozenset(fold_pattern(word) for word in META_WORDS)
_QUOTES = frozenset("\"'`\u201c\u201d\u2018\u2019\u00ab\u00bb\u201e\u2039\u203a")
_LOOKBEHIND = re.compile(r"\(\?<!?[^()]*\)")
_SPACED = re.compile(r"\b\w(?: +\w\b){5,}")
_PAIRED_QUOTES = ('"', "`", "\u201c", "\u201d", "\u00ab", "\u00bb", "\u201e")
_LETTERS = frozenset("abcdefghijkmnopqrstuvwxyz")


# "(?: \w+){0,N}?" (skip up to N words) once spaces are optional: "(?: *\w+)" can
# split a glued run of letters in exponentially many ways. Skipped as characters.
_WORD_SKIP = re.compile(r"\(\?: \*\\w\+\)\{0,(\d+)\}\??")


def _squashed(folded: str) -> str:
    """A rule's pattern for text whose letter-by-letter runs were joined up.

    Spaces become optional and word boundaries go (the run has none); a look-behind
    on the words before goes too (they are glued there). A run of skipped words
    becomes a bounded run of characters, which cannot backtrack exponentially.
    """
    pattern = _LOOKBEHIND.sub("", folded).replace(" ", " *").replace(r"\b", "")
    return _WORD_SKIP.sub(lambda skip: f"[\\w ]{{0,{16 * int(skip.group(1))}}}?", pattern)


@dataclass(frozen=True, slots=True)
class _Compiled:
    rule: Rule
    regex: re.Pattern[str]
    squashed: re.Pattern[str]


_NOT_A_PAYLOAD = frozenset({"scan_limit", "invisible_characters", "bidi_control", "homoglyph"})


def _fingerprint(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()


class PromptInjectionScanner:
    """Scores text for prompt injection; build once, call :meth:`scan` many times.

    ``weights`` scales a signal kind's score (``0`` switches it off);
    ``max_chars`` caps the characters scanned per call (decoded payloads
    included); ``quoted_discount`` multiplies the score of a phrase that is quoted
    in a text discussing attacks (documentation, tests, reviews) - ``1.0`` turns
    that leniency off. ``max_decode_depth`` bounds nested decoding (base64 inside
    base64, tag characters inside base64).
    """

    __slots__ = (
        "_any_rule",
        "_by_token",
        "_native",
        "_native_anchor",
        "_requires",
        "_rules",
        "_triggers",
        "_weights",
        "fail_closed",
        "max_chars",
        "max_decode_depth",
        "quoted_discount",
    )

    def __init__(
        self,
        *,
        weights: Mapping[str, float] | None = None,
        max_chars: int = 262_144,
        max_decode_depth: int = 2,
        quoted_discount: float = 0.5,
        fail_closed: bool = True,
    ) -> None:
        unknown = set(weights or ()) - set(SIGNAL_KINDS)
        if unknown:
            raise ValueError(f"unknown signal kind(s): {', '.join(sorted(unknown))}")
        self._weights = dict.fromkeys(SIGNAL_KINDS, 1.0) | dict(weights or {})
        self.max_chars = max_chars
        self.max_decode_depth = max_decode_depth
        self.quoted_discount = quoted_discount
        self.fail_closed = fail_closed
        rules: list[_Compiled] = []
        natives: list[tuple[_Compiled, tuple[str, ...]]] = []
        by_token: dict[str, list[int]] = {}
        for rule in ALL_RULES:
            if self._weights[rule.kind] <= 0.0:
                continue
            folded = fold_pattern(rule.pattern)
            # Native rules read the view with punctuation kept: any run of non-word
            # characters separates their words.
            gap = r"[\W_]+" if rule.native else " +"
            compiled = _Compiled(
                rule,
                re.compile(folded.replace(" ", gap)),
                # Joined runs have no word boundaries ("pleaseignoreall..."): none asked,
                # and no look-behind on the words before (they are glued there).
                re.compile(_squashed(folded)),
            )
            if rule.native:
                natives.append((compiled, tuple(fold_pattern(t) for t in rule.triggers)))
                continue
            for token in rule.triggers:
                by_token.setdefault(fold_pattern(token), []).append(len(rules))
            rules.append(compiled)
        self._rules = tuple(rules)
        self._native = tuple(natives)
        anchors = sorted({a for _, group in natives for a in group}, key=len, reverse=True)
        self._native_anchor = (
            re.compile("|".join(re.escape(a) for a in anchors)) if anchors else None
        )
        self._by_token = {token: tuple(indexes) for token, indexes in by_token.items()}
        self._requires = tuple(
            frozenset(fold_pattern(word) for word in c.rule.requires) for c in self._rules
        )
        # One alternation per lead word: a single C-level match per occurrence
        # tells whether any of its rules starts there.
        self._any_rule = {
            token: re.compile("|".join(f"(?:{self._rules[i].regex.pattern})" for i in indexes))
            for token, indexes in self._by_token.items()
        }
        self._triggers = frozenset(self._by_token)

    # -- public entry points ------------------------------------------------

    def scan(self, text: str, source: str = "text", *, path: str | None = None) -> ScanResult:
        """Score one string; ``source`` and ``path`` label the findings."""
        budget = Budget(self.max_chars)
        state = ScanState(source, budget)
        self.scan_into(state, text, path)
        return self._result(state)

    def scan_value(
        self, value: Any, source: str = "text", *, max_strings: int = 4096, max_depth: int = 32
    ) -> ScanResult:
        """Score every string inside a JSON-like value (dicts, lists, strings), bounded."""
        state = ScanState(source, Budget(self.max_chars))
        scan_tree(self, state, value, "", max_strings=max_strings, max_depth=max_depth)
        return self._result(state)

    # -- building blocks the inspector and the tree walk share --------------------

    def scan_into(self, state: ScanState, text: str, path: str | None, depth: int = 0) -> None:
        """Scan one string into ``state``, charging it to the shared budget."""
        budget = state.budget
        if budget.exhausted:
            return
        if len(text) > budget.chars:
            text = text[: budget.chars]
            budget.chars = 0
            self.limit(state, "scan budget exhausted")
        else:
            budget.chars -= len(text)
        if text:
            self._scan_text(state, text, path, depth)

    # -- the scan ---------------------------------------------------------------

    def _result(self, state: ScanState) -> ScanResult:
        findings = tuple(state.findings)
        return ScanResult(combine(findings), findings, state.budget.exhausted)

    def limit(self, state: ScanState, why: str) -> None:
        """Record that scanning stopped at a limit (a ``scan_limit`` finding)."""
        state.budget.exhausted = True
        score = 1.0 if self.fail_closed else 0.0
        state.findings.append(Finding(state.source, "scan_limit", score, detail=why))

    def _add(
        self,
        state: ScanState,
        kind: str,
        score: float,
        path: str | None,
        rule_id: str,
        *,
        span: tuple[int, int] | None = None,
        matched: str | None = None,
    ) -> None:
        weighted = round(min(1.0, score * self._weights[kind]), 4)
        if weighted <= 0.0:
            return
        detail = f"{rule_id} @ {path}" if path else rule_id
        start, end = span if span is not None else (None, None)
        fingerprint = _fingerprint(matched) if matched else None
        state.findings.append(
            Finding(state.source, kind, weighted, start, end, fingerprint, detail)
        )

    def _scan_text(self, state: ScanState, text: str, path: str | None, depth: int) -> None:
        view = views(text)
        words = view.words
        tokens = words.split()
        token_set = set(tokens)
        hits = token_set & self._triggers
        if hits:
            self._scan_phrases(state, view, token_set, hits, path)
        if view.native is not None:
            self._scan_native(state, view.native, path)
        self._scan_structure(state, view.base, token_set, path)
        if len(token_set & _LETTERS) >= 5:
            self._scan_spaced(state, words, path)
        if view.hidden or view.invisible or view.bidi or view.mixed_script or view.styled:
            self._scan_unicode(state, view, path, depth)
        if view.invisible:
            # Invisible characters may stand for spaces ("ignore<ZWSP>all<ZWSP>previous"):
            # removed, they glue the words together, so the phrases are read again
            # with them as spaces (a kind counts once, at its best score).
            spaced = views(INVISIBLE.sub(" ", text))
            spaced_set = set(spaced.words.split())
            spaced_hits = spaced_set & self._triggers
            if spaced_hits:
                self._scan_phrases(state, spaced, spaced_set, spaced_hits, path)
        if (
            depth < self.max_decode_depth
            and tokens
            and (
                max(map(len, tokens)) >= 16
                or "\\x" in text
                or "%" in text
                or "&#" in text
                or "\\u" in text
            )
        ):
            self._scan_encoded(state, text, path, depth)

    def _scan_phrases(
        self, state: ScanState, view: Views, token_set: set[str], hits: set[str], path: str | None
    ) -> None:
        """Try each triggered rule where its lead word occurs (anchored ``match``)."""
        words = view.words
        padded = f" {words} "
        done: set[int] = set()
        meta: bool | None = None
        destination: bool | None = None
        # Lead-word positions in text order, so findings come out in reading order.
        # Each try is an anchored match that fails within a few words, so the cost
        # is linear in the number of lead words, however often they repeat.
        starts: list[tuple[int, int]] = []
        for token in hits:
            needle = f" {token} "
            indexes = tuple(
                i
                for i in self._by_token[token]
                if not self._requires[i] or not self._requires[i].isdisjoint(token_set)
            )
            if not indexes:
                continue
            any_rule = self._any_rule[token]
            position = padded.find(needle)
            while position != -1:
                if any_rule.match(words, position) is not None:
                    starts.extend((position, index) for index in indexes)
                position = padded.find(needle, position + 1)
        starts.sort()
        for position, index in starts:
            if index in done:
                continue
            compiled = self._rules[index]
            match = compiled.regex.match(words, position)
            if match is not None:
                rule = compiled.rule
                if rule.kind == "exfiltration" and "\n" in view.base[match.start() : match.end()]:
                    # In prose a request to send secrets sits on one line; across
                    # lines it is usually code (imports, calls, variable names).
                    continue
                done.add(index)
                score = rule.score
                if rule.kind == "exfiltration":
                    if destination is None:
                        destination = DESTINATION.search(view.base) is not None
                    if destination:
                        score = max(score, 0.6)
                if self._quoted(view.base, match.start(), match.end()):
                    if meta is None:
                        meta = not _META.isdisjoint(token_set)
                    if meta:
                        score *= self.quoted_discount
                self._add(
                    state,
                    rule.kind,
                    score,
                    path,
                    rule.id,
                    span=match.span(),
                    matched=match.group(),
                )
        exfiltration = [i for i in done if self._rules[i].rule.kind == "exfiltration"]
        if len(exfiltration) >= 2 and destination:
            self._add(state, "exfiltration", 0.75, path, "exfiltration.combined")

    def _scan_native(self, state: ScanState, native: str, path: str | None) -> None:
        if self._native_anchor is None or self._native_anchor.search(native) is None:
            return
        for compiled, anchors in self._native:
            if not any(anchor in native for anchor in anchors):
                continue
            match = compiled.regex.search(native)
            if match is not None:
                rule = compiled.rule
                self._add(
                    state,
                    rule.kind,
                    rule.score,
                    path,
                    rule.id,
                    span=match.span(),
                    matched=match.group(),
                )

    @staticmethod
    def _gated(base: str, head: str, rule: StructureRule) -> bool:
        if rule.line_start:
            return any(gate in base or head.startswith(gate[1:]) for gate in rule.line_gates)
        return any(gate in base for gate in rule.gates)

    def _scan_structure(
        self, state: ScanState, base: str, token_set: set[str], path: str | None
    ) -> None:
        rule: StructureRule
        head = base[:64].lstrip()
        for rule in STRUCTURE_RULES:
            if rule.pre and rule.pre not in base:
                continue
            if rule.tokens and rule.tokens.isdisjoint(token_set):
                continue
            if rule.gates and not self._gated(base, head, rule):
                continue
            match = rule.regex.search(base)
            if match is None:
                continue
            score = rule.score
            start, end = match.span()
            if (
                rule.quotable
                and start > 0
                and end < len(base)
                and base[start - 1] in _QUOTES
                and base[end] in _QUOTES
            ):
                score *= self.quoted_discount
            self._add(
                state, rule.kind, score, path, rule.id, span=(start, end), matched=match.group()
            )

    def _scan_spaced(self, state: ScanState, words: str, path: str | None) -> None:
        """Rescan with letter-by-letter runs (``i g n o r e``, ``I.G.N.O.R.E``) joined up.

        A rule counts only when its match covers part of a joined run, so code and
        regexes full of one-letter tokens do not produce phrases out of nothing.
        """
        runs = list(_SPACED.finditer(words))
        if not runs:
            return
        parts: list[str] = []
        joined_runs: list[tuple[int, int]] = []
        last = length = 0
        for run in runs:
            before = words[last : run.start()]
            squashed = run.group().replace(" ", "")
            parts.extend((before, squashed))
            length += len(before)
            joined_runs.append((length, length + len(squashed)))
            length += len(squashed)
            last = run.end()
        parts.append(words[last:])
        joined = "".join(parts)
        found = False
        for compiled in self._rules:
            match = compiled.squashed.search(joined)
            if match is None or not any(
                start < match.end() and match.start() < end for start, end in joined_runs
            ):
                continue
            found = True
            rule = compiled.rule
            self._add(state, rule.kind, rule.score, path, rule.id, matched=match.group())
        if found:
            self._add(state, "spaced_letters", 0.3, path, "spaced_letters", span=runs[0].span())

    def _scan_unicode(self, state: ScanState, view: Views, path: str | None, depth: int) -> None:
        if view.invisible:
            score = 0.2 if view.invisible == 1 else 0.35 if view.invisible < 4 else 0.5
            self._add(state, "invisible_characters", score, path, f"invisible x{view.invisible}")
        if view.bidi:
            self._add(state, "bidi_control", 0.4, path, f"bidi x{view.bidi}")
        if view.mixed_script:
            self._add(state, "homoglyph", 0.5, path, f"mixed_script x{view.mixed_script}")
        elif view.styled >= 4:
            self._add(state, "homoglyph", 0.3, path, f"styled_letters x{view.styled}")
        if view.hidden:
            if view.tags >= 4:
                self._add(state, "unicode_tags", 0.9, path, f"unicode_tags x{view.tags}")
            else:
                self._add(state, "invisible_characters", 0.5, path, "variation_selector_payload")
            if depth < self.max_decode_depth:
                self.scan_into(state, view.hidden, f"{path or ''}/hidden", depth + 1)

    def _scan_encoded(self, state: ScanState, text: str, path: str | None, depth: int) -> None:
        budget = min(state.budget.chars + len(text), len(text))
        for encoding, decoded in decode_payloads(text, budget):
            before = len(state.findings)
            self.scan_into(state, decoded, f"{path or ''}/{encoding}", depth + 1)
            # Decoded invisible or look-alike characters count once, in the inner
            # scan; an escaped soft hyphen is no sign of a hidden payload.
            inner = [f for f in state.findings[before:] if f.kind not in _NOT_A_PAYLOAD]
            if inner:
                self._add(state, "encoded_payload", 0.3, path, encoding)

    @staticmethod
    def _quoted(base: str, start: int, end: int) -> bool:
        """True when the match sits inside a quotation on its line.

        Either an odd number of double quotes, backticks or guillemets precede it
        on the line, or a quote character sits just before it; and a quote closes
        after it on the same line.
        """
        line_start = base.rfind("\n", max(0, start - 400), start) + 1
        before = base[line_start:start]
        opened = sum(before.count(q) for q in _PAIRED_QUOTES) % 2 == 1 or any(
            ch in _QUOTES for ch in before[-3:]
        )
        if not opened:
            return False
        line_end = base.find("\n", end, end + 400)
        after = base[end : line_end if line_end != -1 else end + 400]
        return any(ch in _QUOTES for ch in after)


__all__ = ["ALL_RULES", "SIGNAL_KINDS", "Budget", "PromptInjectionScanner", "ScanResult", "combine"]
