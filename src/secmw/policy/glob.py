"""Glob patterns for paths, hosts and names, compiled once to regular expressions.

Path globs are segment-aware:

* ``*`` matches within one segment and never crosses ``/``;
* ``**`` (a whole segment) matches any number of segments, none included, so
  ``/admin/**`` matches ``/admin`` and everything below it but never ``/administrator``;
* ``{name}`` matches one non-empty segment and captures it as a path parameter.

Name globs (tool names, JSON-RPC methods, hosts) use ``*`` for any run of
characters and ``?`` for one; character classes are refused, so that a pattern
means the same to every reader.

Matching never backtracks into a wildcard it has passed (see ``_segment``), so
it takes time linear in the path or name, whatever the pattern.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


class GlobError(ValueError):
    """A glob that cannot be compiled; the message says why."""


@dataclass(frozen=True, slots=True)
class PathGlob:
    """A compiled path glob with its literal first segment (for indexing).

    ``regex`` matches the path *reversed* (see :func:`reversed_path`): matching
    from the right with the shortest runs gives every wildcard, read left to
    right, the longest run that still lets the rest match, which is what routers
    (Starlette, Django, werkzeug) capture, and it never backtracks.
    """

    pattern: str
    regex: re.Pattern[str]
    first_segment: str | None
    params: tuple[str, ...]

    def match(self, path: str) -> dict[str, str] | None:
        """The captured parameters when ``path`` matches, else ``None``."""
        found = self.regex.fullmatch(reversed_path(path))
        if found is None:
            return None
        return {name: value[::-1] for name, value in found.groupdict().items()}

    def matches(self, path: str) -> bool:
        """True when the canonical ``path`` matches."""
        return self.regex.fullmatch(reversed_path(path)) is not None


def reversed_path(path: str) -> str:
    """``/a/bc`` as ``/cb/a``: segments in reverse order, each reversed; ``/`` as ``""``."""
    return "/" + path[:0:-1] if path != "/" else ""


# What a canonical path never holds: percent-escapes (it is decoded), backslashes
# and control characters (refused).
NEVER_CANONICAL = re.compile(r"%[0-9A-Fa-f]{2}|[\\\x00-\x1f\x7f-\x9f]")


def compile_path_glob(pattern: str) -> PathGlob:
    """Compile a segment-aware path glob; raises :class:`GlobError`."""
    if not pattern.startswith("/"):
        raise GlobError("a path pattern must start with '/'")
    if pattern != "/" and pattern.endswith("/"):
        raise GlobError("a path pattern must not end with '/' (paths are canonical)")
    segments = pattern.split("/")[1:]
    if pattern == "/":
        segments = []
    runs: list[list[str]] = [[]]  # the segments' regexes, last first, in runs between "**"
    params: list[str] = []
    for segment in segments:
        if segment in ("", ".", ".."):
            raise GlobError("empty, '.' and '..' segments never occur in canonical paths")
        if ";" in segment or NEVER_CANONICAL.search(segment) is not None:
            # Canonical paths are decoded, cut at ";" and free of backslashes and
            # control characters: such a pattern would silently never match.
            raise GlobError(
                "percent-escapes, ';', backslashes and control characters never occur"
                " in canonical paths (write the decoded path)"
            )
        if segment != "**" and "**" in segment:
            raise GlobError("'**' must be a whole segment")
    for segment in reversed(segments):
        if segment == "**":
            runs.append([])
            continue
        # Segments are never empty.
        runs[-1].append("/(?=[^/])" + _segment(segment, params, reverse=True))
    if len(set(params)) != len(params):
        raise GlobError("a path parameter name is used twice")
    # A "**" before an inner run skips the fewest segments that let the run match and
    # commits, like a "*" before a literal within a segment (linear, not polynomial,
    # in the number of segments); before the last run it skips as many as it must.
    body = "".join(runs[0])  # the root "/" is matched as the empty string (no segments)
    for number, run in enumerate(runs[1:], start=2):
        if number == len(runs):
            body += "(?:/[^/]+)*" + "".join(run)
        elif run:
            body += "(?>(?:/[^/]+)*?" + "".join(run) + ")"
    first = segments[0] if segments and _is_literal(segments[0]) else None
    return PathGlob(pattern, re.compile(body), first, tuple(params[::-1]))


def _is_literal(segment: str) -> bool:
    return "*" not in segment and "{" not in segment and "?" not in segment


def _segment(segment: str, params: list[str], *, reverse: bool = False) -> str:
    """One path segment's regex, matched left to right without nested backtracking.

    Wildcards (``*``: any run, ``{name}``: a non-empty run, captured) are separated
    by literals. A wildcard before an inner literal takes the shortest run up to
    that literal's first occurrence and commits to it (an atomic group): for globs
    made of such wildcards the first choice never loses a match, and a long segment
    stays linear where ``*-*-*.csv`` used to backtrack cubically. The last wildcard
    runs greedily to the literal that ends the segment, and the segment must end there.
    ``reverse`` builds the regex of the segment read backwards (for :class:`PathGlob`).
    """
    tokens: list[tuple[str, str]] = []  # ("lit", text), ("star", ""), ("param", name)
    position = 0
    for found in _PARAM.finditer(segment):
        tokens.extend(_star_tokens(segment[position : found.start()]))
        tokens.append(("param", found.group(1)))
        position = found.end()
    tokens.extend(_star_tokens(segment[position:]))
    for first, second in itertools.pairwise(tokens):
        if first[0] != "lit" and second[0] != "lit":
            raise GlobError(
                "a parameter next to '*' or to another parameter is ambiguous;"
                " put a literal between them"
            )
    if reverse:
        tokens = [(kind, value[::-1] if kind == "lit" else value) for kind, value in tokens[::-1]]
    params.extend(value for kind, value in tokens if kind == "param")
    last = max((i for i, (kind, _) in enumerate(tokens) if kind != "lit"), default=-1)
    out: list[str] = []
    index = 0
    while index < len(tokens):
        kind, value = tokens[index]
        if kind == "lit":
            out.append(re.escape(value))
            index += 1
            continue
        run = "[^/]*" if kind == "star" else "[^/]+"
        if index == last:
            out.append(f"(?P<{value}>{run})" if kind == "param" else run)
            index += 1
            continue
        lazy = f"(?P<{value}>{run}?)" if kind == "param" else f"{run}?"
        out.append(f"(?>{lazy}{re.escape(tokens[index + 1][1])})")
        index += 2
    return "".join(out) + "(?=/|\\Z)"


def _star_tokens(text: str) -> list[tuple[str, str]]:
    """Literals and ``*`` of the text between parameters (empty literals left out)."""
    if "{" in text or "}" in text:
        raise GlobError("braces must enclose a parameter name such as {tenant}")
    if "?" in text or "[" in text:
        raise GlobError("'?' and character classes are not supported in path patterns")
    tokens: list[tuple[str, str]] = []
    for number, piece in enumerate(text.split("*")):
        if number:
            tokens.append(("star", ""))
        if piece:
            tokens.append(("lit", piece))
    return tokens


def compile_name_glob(pattern: str, *, case_insensitive: bool = False) -> re.Pattern[str]:
    """Compile a name glob (``*`` any run, ``?`` one character); raises :class:`GlobError`."""
    if not pattern:
        raise GlobError("an empty pattern matches nothing")
    if "[" in pattern or "]" in pattern:
        raise GlobError("character classes are not supported")
    # Fixed-length pieces between stars; each star before an inner piece takes the
    # shortest run up to that piece and commits (as for path segments), so matching
    # stays linear in the name (``*_*_delete`` was quadratic).
    pieces = [
        "".join("." if char == "?" else re.escape(char) for char in piece)
        for piece in pattern.split("*")
    ]
    if len(pieces) == 1:
        body = pieces[0]
    else:
        inner = "".join(f"(?>.*?{piece})" for piece in pieces[1:-1] if piece)
        body = pieces[0] + inner + ".*" + pieces[-1]
    return re.compile(body, re.IGNORECASE | re.DOTALL if case_insensitive else re.DOTALL)


def is_literal_name(pattern: str) -> bool:
    """True when a name glob has no wildcard (it can be looked up exactly)."""
    return "*" not in pattern and "?" not in pattern
