"""Reading a bearer token from a request (RFC 6750 section 2)."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl

from secmw.context import RequestContext
from secmw.errors import AuthenticationError

# RFC 6750 section 2.1: b64token.
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


def bearer_token(ctx: RequestContext) -> str | None:
    """The request's bearer token, ``None`` when there is none.

    Refused with ``invalid_request`` (400): more than one ``Authorization``
    header, a Bearer credential that is not a single b64token, and any
    ``access_token`` in the query string (RFC 6750 section 2.3 is not supported;
    the MCP authorization spec forbids it). A non-Bearer ``Authorization``
    scheme is not ours: ``None``.
    """
    query = ctx.query_string
    if query and b"access_token" in query:
        names = {name for name, _ in parse_qsl(query.decode("latin-1"), keep_blank_values=True)}
        if "access_token" in names:
            raise AuthenticationError(
                "Access tokens are not accepted in the query string.",
                error="invalid_request",
                reason="access_token in query string",
            )
    values = ctx.headers.get_all("authorization")
    if not values:
        return None
    if len(values) > 1:
        raise AuthenticationError(
            "The request has more than one Authorization header.",
            error="invalid_request",
            reason="duplicate Authorization header",
        )
    scheme, _, credential = values[0].strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    token = credential.strip(" ")
    if not _B64TOKEN.fullmatch(token):
        raise AuthenticationError(
            "The Authorization header is malformed.",
            error="invalid_request",
            reason="malformed bearer credential",
        )
    return token
