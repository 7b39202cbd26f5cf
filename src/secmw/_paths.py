"""Request-path canonicalisation: one spelling per resource, or a 400.

Policies match on the canonical path, so every spelling a server, framework or
upstream might resolve to the same resource must canonicalise to the same string,
and spellings whose meaning differs between parsers must be refused. The rules:

* The path is the one the app routes on: ``scope["path"]`` (already percent-decoded
  by the server) with ``root_path`` removed exactly as Starlette's router does.
* Refused (400): encoded ``/``, ``\\`` or ``;`` in the raw path (``%2F``, ``%5C``, ``%3B``), a
  literal backslash, NUL and other control characters, invalid UTF-8, a path that
  still holds a percent-escape after decoding (double encoding such as ``%2561``),
  and ``..`` segments that climb above the root.
* Resolved: repeated slashes merge, ``.`` segments vanish, ``..`` removes the
  previous segment, ``;params`` are cut from each segment (servlet containers
  ignore them), and a trailing slash is dropped (``/`` stays ``/``).
"""

from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes

from secmw.errors import BadRequest

# A path made only of ordinary segments needs no work beyond a trailing-slash trim.
# ASCII only: anything else takes the slow path and its UTF-8 checks.
_PLAIN = re.compile(r"(?:/(?!\.\.?(?:/|$))[!-$&-.0-:<-\[\]-~]+)*/?")
_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")
# C0, DEL and C1 (U+0085 is a line break to str.splitlines), and the backslash.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\\]")
_ENCODED_SLASH = re.compile(rb"%(?:2[Ff]|5[Cc])")
_ENCODED_NUL = re.compile(rb"%00")
_ENCODED_SEMICOLON = re.compile(rb"%3[Bb]")


def route_path(path: str, root_path: str) -> str:
    """Return the path the app routes on, mirroring Starlette's ``get_route_path``."""
    if not root_path or not path.startswith(root_path):
        return path
    if path == root_path:
        return ""
    if path[len(root_path)] == "/":
        return path[len(root_path) :]
    return path


def canonical_path(
    path: str,
    raw_path: bytes | None = None,
    root_path: str = "",
    *,
    allow_encoded_slash: bool = False,
    allow_double_encoding: bool = False,
) -> str:
    """Return the canonical form of a request path, or raise :class:`BadRequest`.

    ``path`` and ``root_path`` are the ASGI scope's (decoded) values; ``raw_path``,
    when the server provides it, is checked for escapes that decoding hides.
    """
    if raw_path is not None and (b"%" in raw_path or b"\\" in raw_path):
        _check_raw(raw_path, allow_encoded_slash)
    # A trailing slash on the root is no part of the prefix (the adapter hands the
    # app ``prefix + path`` with ``root_path = prefix``, whatever the server sent);
    # a server that put the root in front as it is ("/api/" + "/x") is read first.
    prefix = root_path.rstrip("/")
    routed = route_path(path, root_path)
    if routed == path and prefix != root_path:
        routed = route_path(path, prefix)
    path = routed or "/"
    if _PLAIN.fullmatch(path):
        return path.rstrip("/") or "/"
    resolved = _resolve(path, allow_double_encoding)
    if prefix and _under(resolved, prefix) and not _under(path, prefix):
        # Servers that keep the mount prefix out of ``path`` (hypercorn, granian):
        # "//api/admin" under root "/api" resolves to "/api/admin", which the app
        # would strip to "/admin" after the policy judged "/api/admin".
        raise BadRequest(
            "The request path is not valid.", reason="path resolves into the mount prefix"
        )
    return resolved


def _under(path: str, root_path: str) -> bool:
    return path == root_path or path.startswith(root_path + "/")


def _check_raw(raw_path: bytes, allow_encoded_slash: bool) -> None:
    raw = raw_path.split(b"?", 1)[0]
    if b"\\" in raw:
        raise BadRequest("The request path is not valid.", reason="backslash in path")
    if not allow_encoded_slash and _ENCODED_SLASH.search(raw):
        raise BadRequest("The request path is not valid.", reason="encoded slash in path")
    if _ENCODED_NUL.search(raw):
        raise BadRequest("The request path is not valid.", reason="encoded NUL in path")
    if _ENCODED_SEMICOLON.search(raw):
        # Decoded, it would read as a ;param (cut here, data to the app): ambiguous.
        raise BadRequest("The request path is not valid.", reason="encoded semicolon in path")
    try:
        unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("The request path is not valid.", reason="path is not UTF-8") from None


def _resolve(path: str, allow_double_encoding: bool) -> str:
    if not path.startswith("/"):
        raise BadRequest("The request path is not valid.", reason="path is not absolute")
    if _CONTROL.search(path):
        raise BadRequest(
            "The request path is not valid.", reason="control character or backslash in path"
        )
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest("The request path is not valid.", reason="path is not UTF-8") from None
    if "\ufffd" in path:
        # Servers decode invalid UTF-8 to U+FFFD; two different raw paths would
        # then share one canonical form.
        raise BadRequest("The request path is not valid.", reason="path is not UTF-8")
    if not allow_double_encoding and _ESCAPE.search(path):
        raise BadRequest("The request path is not valid.", reason="double-encoded path")
    segments: list[str] = []
    for part in path.split("/"):
        segment = part.split(";", 1)[0]
        if segment in ("", "."):
            continue
        if segment == "..":
            if not segments:
                raise BadRequest(
                    "The request path is not valid.", reason="path climbs above the root"
                )
            segments.pop()
            continue
        segments.append(segment)
    return "/" + "/".join(segments)
