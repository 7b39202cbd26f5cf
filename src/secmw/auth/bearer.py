"""Reading a bearer token from a request (RFC 6750 section 2, and websocket handshakes).

Places a token may come from:

* the ``Authorization: Bearer`` header (always);
* on websocket handshakes only, a ``Sec-WebSocket-Protocol`` entry
  ``<prefix><base64url(token)>`` (the Kubernetes convention; the default prefix is
  ``base64url.bearer.authorization.k8s.io.``), because browsers cannot set
  headers on a websocket; the entry is removed from the scope the app sees, so it
  is never echoed back as the accepted subprotocol;
* on websocket handshakes only, and only when enabled, the ``access_token`` query
  parameter. Over HTTP a query token is always refused: URLs end up in logs, and
  the MCP authorization spec forbids it.

A token found in two places with different values is refused (400).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from secmw.context import RequestContext
from secmw.errors import AuthenticationError

_B64URL = re.compile(r"[A-Za-z0-9_-]+")
K8S_SUBPROTOCOL_PREFIX = "base64url.bearer.authorization.k8s.io."
# RFC 6750 section 2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
_B64TOKEN_BYTES = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/"


def is_b64token(value: str) -> bool:
    """True when ``value`` is an RFC 6750 b64token.

    Deleting every allowed byte with ``bytes.translate`` leaves nothing only when
    all characters are allowed; this runs in C and is faster than a regular
    expression on a long token.
    """
    body = value.rstrip("=")
    return (
        bool(body) and body.isascii() and not body.encode("ascii").translate(None, _B64TOKEN_BYTES)
    )


@dataclass(frozen=True, slots=True)
class CredentialSettings:
    """Where bearer tokens are read from besides the ``Authorization`` header."""

    ws_subprotocol_prefix: str | None = K8S_SUBPROTOCOL_PREFIX
    ws_query_token: bool = False


DEFAULT_SETTINGS = CredentialSettings()


def _bad(detail: str, reason: str) -> AuthenticationError:
    return AuthenticationError(detail, error="invalid_request", reason=reason)


def _query_token(ctx: RequestContext, settings: CredentialSettings) -> str | None:
    query = ctx.query_string
    # A percent-encoded name (access%5Ftoken) decodes to the same parameter.
    if not query or (b"access_token" not in query and b"%" not in query):
        return None
    values = [
        value
        for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True)
        if name == "access_token"
    ]
    if not values:
        return None
    if ctx.transport != "websocket" or not settings.ws_query_token:
        raise _bad(
            "Access tokens are not accepted in the query string.", "access_token in query string"
        )
    if len(values) > 1 or not is_b64token(values[0]):
        raise _bad("The access_token parameter is malformed.", "malformed query token")
    return values[0]


def _subprotocol_token(ctx: RequestContext, prefix: str) -> str | None:
    offered = ctx.scope.get("subprotocols") or ()
    found = [entry for entry in offered if isinstance(entry, str) and entry.startswith(prefix)]
    if not found:
        return None
    if len(found) > 1:
        raise _bad("More than one bearer subprotocol was offered.", "duplicate bearer subprotocol")
    encoded = found[0][len(prefix) :]
    if not _B64URL.fullmatch(encoded):
        raise _bad("The bearer subprotocol is malformed.", "malformed bearer subprotocol")
    try:
        token = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode("ascii")
    except (binascii.Error, ValueError):
        raise _bad("The bearer subprotocol is malformed.", "malformed bearer subprotocol") from None
    if not is_b64token(token):
        raise _bad("The bearer subprotocol is malformed.", "malformed bearer subprotocol")
    return token


def _header_token(ctx: RequestContext) -> str | None:
    values = ctx.headers.get_all("authorization")
    if not values:
        return None
    if len(values) > 1:
        raise _bad(
            "The request has more than one Authorization header.", "duplicate Authorization header"
        )
    scheme, _, credential = values[0].strip().partition(" ")
    if scheme.lower() != "bearer":
        if scheme[:6].lower() == "bearer" and not scheme[6:7].isalnum():
            # "Bearer<TAB>token" or "Bearer,token": a bearer credential, badly written.
            raise _bad("The Authorization header is malformed.", "malformed bearer credential")
        return None
    token = credential.strip(" ")
    if not is_b64token(token):
        raise _bad("The Authorization header is malformed.", "malformed bearer credential")
    return token


def bearer_token(
    ctx: RequestContext, settings: CredentialSettings = DEFAULT_SETTINGS
) -> str | None:
    """The request's bearer token, ``None`` when there is none.

    Refused with ``invalid_request`` (400): more than one ``Authorization``
    header, a Bearer credential that is not a single b64token, an
    ``access_token`` query parameter (except on websockets when enabled), and
    tokens in several places that disagree. A non-Bearer ``Authorization``
    scheme is not ours: ``None``.
    """
    token = _header_token(ctx)
    if ctx.transport == "websocket":
        others = [
            found
            for found in (
                _subprotocol_token(ctx, settings.ws_subprotocol_prefix)
                if settings.ws_subprotocol_prefix
                else None,
                _query_token(ctx, settings),
            )
            if found is not None
        ]
        for other in others:
            if token is not None and other != token:
                raise _bad(
                    "The request carries different credentials in several places.",
                    "conflicting bearer tokens",
                )
            token = other
        return token
    _query_token(ctx, settings)
    return token


def encode_subprotocol(token: str, prefix: str = K8S_SUBPROTOCOL_PREFIX) -> str:
    """The ``Sec-WebSocket-Protocol`` entry carrying ``token`` (for clients and tests)."""
    return prefix + base64.urlsafe_b64encode(token.encode("ascii")).rstrip(b"=").decode()


def strip_subprotocol(scope: MutableMapping[str, Any], prefix: str) -> None:
    """Remove the bearer entry from a websocket scope, so the app can never echo it.

    Both ``scope["subprotocols"]`` and the raw ``sec-websocket-protocol`` header
    are rewritten; the real subprotocols stay, in order.
    """
    offered = scope.get("subprotocols")
    if offered:
        scope["subprotocols"] = [entry for entry in offered if not entry.startswith(prefix)]
    headers = scope.get("headers")
    if not headers:
        return
    rewritten: list[tuple[bytes, bytes]] = []
    for name, value in headers:
        if name.lower() == b"sec-websocket-protocol":
            kept = [
                part.strip()
                for part in value.decode("latin-1").split(",")
                if part.strip() and not part.strip().startswith(prefix)
            ]
            if kept:
                rewritten.append((name, ", ".join(kept).encode("latin-1")))
            continue
        rewritten.append((name, value))
    scope["headers"] = rewritten


__all__ = [
    "DEFAULT_SETTINGS",
    "K8S_SUBPROTOCOL_PREFIX",
    "CredentialSettings",
    "bearer_token",
    "encode_subprotocol",
    "strip_subprotocol",
]
