"""The request target an upstream gets, and redirects turned back into gateway paths."""

from __future__ import annotations

import re
from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx

if TYPE_CHECKING:
    from secmw.proxy.app import Route
    from secmw.proxy.pool import Target

Scope = MutableMapping[str, Any]


def _judged_path(scope: Scope) -> bytes:
    """The path the pipeline judged (canonical), percent-encoded for the wire."""
    ctx = (scope.get("state") or {}).get("secmw")
    path = ctx.path if ctx is not None else str(scope["path"])
    return quote(path, safe="/:@!$&'()*+,;=-._~").encode("ascii")


def forwarded_path(scope: Scope) -> bytes:
    """The path sent upstream: the raw path, or the canonical one when they could differ.

    A raw path with dot segments or empty segments is what an upstream might
    resolve differently from the policy (``/public/../admin``): then the
    canonical path the pipeline judged is sent instead.
    """
    raw: bytes = scope.get("raw_path") or str(scope["path"]).encode("utf-8")
    path = raw.split(b"?", 1)[0]
    if b"//" in path or any(segment in (b".", b"..") for segment in path.split(b"/")):
        return _judged_path(scope)
    return path


# Bytes httpx refuses in a URL's path or query (controls, space, DEL, non-ASCII, and
# ``#``, which would start a fragment); a server may still hand them over in
# ``raw_path`` or ``query_string``.
_UNSAFE_URL_BYTE = re.compile(rb"[^\x21\x22\x24-\x7e]")


def _escape(raw: bytes) -> bytes:
    """Percent-encode the bytes httpx refuses; the upstream decodes them to the same bytes."""
    return _UNSAFE_URL_BYTE.sub(lambda match: b"%%%02X" % match[0][0], raw)


def upstream_target(base: httpx.URL, route: Route, scope: Scope) -> bytes:
    """The request target sent upstream: the target's path, the request's path, the query."""
    raw = forwarded_path(scope)
    prefix = route.prefix.rstrip("/").encode("latin-1")
    if route.strip_prefix and prefix:
        if not (raw == prefix or raw.startswith(prefix + b"/")):
            raw = _judged_path(scope)  # spelled differently (percent-encoded): use the judged one
        raw = raw[len(prefix) :] or b"/"
    path = base.raw_path.split(b"?", 1)[0].rstrip(b"/") + _escape(raw)
    query: bytes = _escape(scope.get("query_string") or b"")
    return path + b"?" + query if query else path


def upstream_url(base: httpx.URL, route: Route, scope: Scope) -> httpx.URL:
    """The target URL for the request (see :func:`upstream_target`)."""
    return base.copy_with(raw_path=upstream_target(base, route, scope))


def rewrite_location(
    headers: list[tuple[bytes, bytes]], target: Target, route: Route
) -> list[tuple[bytes, bytes]]:
    """Turn an absolute redirect to the target into a path on the proxy.

    Otherwise a client following it would bypass the proxy and its checks.
    """
    origin = target.label.encode("latin-1")
    prefix = route.prefix.rstrip("/").encode("latin-1") if route.strip_prefix else b""
    out = []
    for name, value in headers:
        rest = value[len(origin) :] or b"/"
        if name.lower() == b"location" and value.startswith(origin) and rest.startswith(b"/"):
            out.append((name, prefix + rest))
        else:
            out.append((name, value))
    return out


__all__ = ["forwarded_path", "rewrite_location", "upstream_target", "upstream_url"]
