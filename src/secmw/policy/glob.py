"""Glob patterns for paths, hosts and names, compiled once to regular expressions.

Path globs are segment-aware:

* ``*`` matches within one segment and never crosses ``/``;
* ``**`` (a whole segment) matches any number of segments, none included, so
  ``/admin/**`` matches ``/admin`` and everything below it but never ``/administrator``;
* ``{name}`` matches one non-empty segment and captures it as a path parameter.

Name globs (tool names, JSON-RPC methods, hosts) use ``*`` for any run of
characters and ``?`` for one; character classes are refused, so that a pattern
means the same to every reader.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


class GlobError(ValueError):
    """A glob that cannot be compiled; the message says why."""


@dataclass(frozen=True, slots=True)
class PathGlob:
    """A compiled path glob with its literal first segment (for indexing)."""

    pattern: str
    regex: re.Pattern[str]
    first_segment: str | None
    params: tuple[str, ...]

    def match(self, path: str) -> dict[str, str] | None:
        """The captured parameters when ``path`` matches, else ``None``."""
        found = self.regex.fullmatch("" if path == "/" else path)
        return found.groupdict() if found is not None else None

    def matches(self, path: str) -> bool:
        """True when the canonical ``path`` matches."""
        return self.regex.fullmatch("" if path == "/" else path) is not None


def compile_path_glob(pattern: str) -> PathGlob:
    """Compile a segment-aware path glob; raises :class:`GlobError`."""
    if not pattern.startswith("/"):
        raise GlobError("a path pattern must start with '/'")
    if pattern != "/" and pattern.endswith("/"):
        raise GlobError("a path pattern must not end with '/' (paths are canonical)")
    segments = pattern.split("/")[1:]
    if pattern == "/":
        segments = []
    parts: list[str] = []
    params: list[str] = []
    for segment in segments:
        if segment in ("", ".", ".."):
            raise GlobError("empty, '.' and '..' segments never occur in canonical paths")
        if segment == "**":
            parts.append("(?:/[^/]+)*")
            continue
        if "**" in segment:
            raise GlobError("'**' must be a whole segment")
        parts.append("/(?=[^/])" + _segment(segment, params))  # segments are never empty
    if len(set(params)) != len(params):
        raise GlobError("a path parameter name is used twice")
    body = "".join(parts)  # the root "/" is matched as the empty string (no segments)
    first = segments[0] if segments and _is_literal(segments[0]) else None
    return PathGlob(pattern, re.compile(body), first, tuple(params))


def _is_literal(segment: str) -> bool:
    return "*" not in segment and "{" not in segment and "?" not in segment


def _segment(segment: str, params: list[str]) -> str:
    out: list[str] = []
    position = 0
    for found in _PARAM.finditer(segment):
        out.append(_literal_or_star(segment[position : found.start()]))
        params.append(found.group(1))
        out.append(f"(?P<{found.group(1)}>[^/]+)")
        position = found.end()
    out.append(_literal_or_star(segment[position:]))
    return "".join(out)


def _literal_or_star(text: str) -> str:
    if "{" in text or "}" in text:
        raise GlobError("braces must enclose a parameter name such as {tenant}")
    if "?" in text or "[" in text:
        raise GlobError("'?' and character classes are not supported in path patterns")
    return "[^/]*".join(re.escape(piece) for piece in text.split("*"))


def compile_name_glob(pattern: str, *, case_insensitive: bool = False) -> re.Pattern[str]:
    """Compile a name glob (``*`` any run, ``?`` one character); raises :class:`GlobError`."""
    if not pattern:
        raise GlobError("an empty pattern matches nothing")
    if "[" in pattern or "]" in pattern:
        raise GlobError("character classes are not supported")
    body = "".join(
        ".*" if char == "*" else "." if char == "?" else re.escape(char) for char in pattern
    )
    return re.compile(body, re.IGNORECASE | re.DOTALL if case_insensitive else re.DOTALL)


def is_literal_name(pattern: str) -> bool:
    """True when a name glob has no wildcard (it can be looked up exactly)."""
    return "*" not in pattern and "?" not in pattern
