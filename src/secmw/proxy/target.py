"""The request target an upstream gets, and redirects turned back into gateway paths."""

from __future__ import annotations

import re
from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote_to_bytes

import httpx

from secmw._paths import canonical_path, route_path

if TYPE_CHECKING:
    from secmw.proxy.app import Route
    from secmw.proxy.pool import Target

Scope = MutableMapping[str, Any]


def judged_path(scope: Scope) -> str:
    """The path the pipeline judged; without a pipeline, the canonical form of the scope's.

    Raises :class:`~secmw.errors.BadRequest` for a path with no canonical form (dot
    segments above the root, a backslash, ...): the proxy refuses it with 400
    rather than forward a spelling an upstream may resolve outside the route.
    """
    ctx = (scope.get("state") or {}).get("secmw")
    if ctx is not None:
        return str(ctx.path)
    return canonical_path(str(scope["path"]), root_path=str(scope.get("root_path") or ""))


def _judged_path(scope: Scope) -> bytes:
    """The path the pipeline judged (canonical), percent-encoded for the wire."""
    return quote(judged_path(scope), safe="/:@!$&'()*+,;=-._~").encode("ascii")


def forwarded_path(scope: Scope) -> bytes:
    """The path sent upstream: the raw path when it means the judged one, else the judged one.

    The policy decided on the canonical path. An upstream that resolves dot
    segments, ``;params`` or repeated slashes differently (``/admin/..;/public``,
    ``/admin/%2e%2e/public``) must not be handed a spelling that routes elsewhere,
    so the raw path is kept only when its decoded form is already the judged path
    (a trailing slash aside, which the canonical form drops).
    """
    raw: bytes = scope.get("raw_path") or str(scope["path"]).encode("utf-8")
    path = raw.split(b"?", 1)[0]
    decoded = unquote_to_bytes(path).decode("utf-8", "surrogateescape")
    routed = route_path(decoded, str(scope.get("root_path") or ""))
    if (routed.rstrip("/") or "/") != judged_path(scope):
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

    Otherwise a client following it would bypass the proxy and its checks. The
    origin is compared as a URL (scheme and host in any case, a default port
    written or not); a path under the target's base path loses it and gains the
    route's stripped prefix: the inverse of :func:`upstream_target`.
    """
    prefix = route.prefix.rstrip("/").encode("latin-1") if route.strip_prefix else b""
    return [
        (
            name,
            _gateway_location(value, target.url, prefix) if name.lower() == b"location" else value,
        )
        for name, value in headers
    ]


def _gateway_location(value: bytes, base: httpx.URL, prefix: bytes) -> bytes:
    """``value`` as a path on the gateway when it points under ``base``; else unchanged."""
    # Browsers drop TAB, CR and LF anywhere in a URL (WHATWG): "/\t/evil" is "//evil".
    cleaned, hash_, fragment = value.translate(None, b"\t\r\n").partition(b"#")
    try:
        url = httpx.URL(cleaned.decode("latin-1"))
    except (httpx.InvalidURL, UnicodeDecodeError):
        return value
    if not url.scheme or (url.scheme, url.host, url.port) != (base.scheme, base.host, base.port):
        return value
    path, question, query = url.raw_path.partition(b"?")
    base_path = base.raw_path.split(b"?", 1)[0].rstrip(b"/")
    if base_path and not (path == base_path or path.startswith(base_path + b"/")):
        return value  # nothing the gateway forwards there
    rest = path[len(base_path) :]
    # ``//host/x`` (or ``/\host``) would be protocol-relative: another site.
    # Repeated slashes are one on the gateway anyway (path canonicalisation).
    return prefix + b"/" + rest.lstrip(b"/\\") + question + query + hash_ + fragment


__all__ = ["forwarded_path", "judged_path", "rewrite_location", "upstream_target", "upstream_url"]
