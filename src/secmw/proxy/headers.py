"""Which request and response headers cross the proxy.

Credentials never travel upstream: the client's ``Authorization``, cookies,
API-key headers and any configured header are dropped (the MCP authorization
spec forbids token passthrough; RFC 8707 audiences make a client token wrong for
the upstream anyway). The upstream gets its own credentials from configuration.
Hop-by-hop fields are dropped in both directions (RFC 9110 section 7.6.1): the
fixed list plus every field named in ``Connection``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

Header = tuple[bytes, bytes]

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
CREDENTIAL_HEADERS = frozenset(
    {
        b"authorization",
        b"proxy-authorization",
        b"cookie",
        b"x-api-key",
        b"api-key",
        b"x-auth-token",
        b"x-access-token",
        b"x-amz-security-token",
        b"x-goog-api-key",
        b"ocp-apim-subscription-key",
    }
)
# Set by the proxy itself, or forwarding claims a client could forge: never copied.
_REPLACED = frozenset(
    {
        b"host",
        b"content-length",
        b"forwarded",
        b"x-forwarded-for",
        b"x-forwarded-host",
        b"x-forwarded-proto",
        b"x-forwarded-port",
        b"x-real-ip",
        # Another method or path than the policy judged, for upstreams (and their
        # frameworks) that honour these: method-override middleware, IIS, Symfony.
        b"x-http-method-override",
        b"x-http-method",
        b"x-method-override",
        b"x-original-url",
        b"x-rewrite-url",
        b"x-original-uri",
        b"x-forwarded-prefix",
        b"x-forwarded-path",
    }
)


def _connection_tokens(headers: Iterable[Header]) -> set[bytes]:
    tokens: set[bytes] = set()
    for name, value in headers:
        if name.lower() == b"connection":
            parts = (part.strip().lower() for part in value.split(b","))
            tokens.update(part.replace(b"_", b"-") for part in parts if part)
    return tokens


_UPSTREAM_ONLY = frozenset({b"date", b"server"})


class HeaderFilter:
    """Builds the upstream request headers and the client response headers.

    ``strip`` adds header names to the credential list; ``strip_response``
    removes upstream response headers (e.g. ``set-cookie``) before they reach the
    client. The upstream's own credentials are passed per request as ``inject``
    (see :func:`encode_headers`); they replace any client header of that name.
    """

    __slots__ = ("_drop", "_drop_response")

    def __init__(self, *, strip: Iterable[str] = (), strip_response: Iterable[str] = ()) -> None:
        extra = {name.lower().replace("_", "-").encode("latin-1") for name in strip}
        self._drop = HOP_BY_HOP | CREDENTIAL_HEADERS | _REPLACED | extra
        # The gateway's own server writes Date; the upstream's Server would only
        # advertise its software. Both would otherwise reach the client twice.
        self._drop_response = (
            HOP_BY_HOP
            | _UPSTREAM_ONLY
            | {name.lower().encode("latin-1") for name in strip_response}
        )

    def request(
        self,
        headers: Sequence[Header],
        *,
        client: str | None = None,
        content_length: bytes | None = None,
        inject: Sequence[Header] = (),
    ) -> list[Header]:
        """The headers to send upstream (``Host`` is set by the HTTP client)."""
        drop = self._drop
        named = _connection_tokens(headers)
        if inject:
            named.update(name.replace(b"_", b"-") for name, _ in inject)
        # "_" counts as "-": WSGI/CGI servers read X_Api_Key and X-Api-Key (and
        # X_Forwarded_For and X-Forwarded-For) as one variable, HTTP_X_API_KEY.
        out = [
            (name, value)
            for name, value in headers
            if (lowered := name.lower().replace(b"_", b"-")) not in drop and lowered not in named
        ]
        if content_length is not None:
            out.append((b"content-length", content_length))
        if client is not None:
            out.append((b"x-forwarded-for", client.encode("latin-1")))
        out.extend(inject)
        return out

    def response(self, headers: Iterable[tuple[bytes, bytes]]) -> list[Header]:
        """The upstream's response headers the client may see."""
        listed = list(headers)
        drop = self._drop_response | _connection_tokens(listed)
        if any(name.lower() == b"transfer-encoding" for name, _ in listed):
            # Transfer-Encoding overrides Content-Length (RFC 9112 section 6.3): the
            # de-chunked body has its own length, so the declared one is dropped.
            drop = drop | {b"content-length"}
        out = [(name, value) for name, value in listed if name.lower() not in drop]
        lengths = [value for name, value in out if name.lower() == b"content-length"]
        if len(lengths) == 1 and lengths[0].isdigit():
            return out
        if not lengths:
            return out
        # "5, 5" or two equal lines are valid (RFC 9110 section 8.6) but servers
        # refuse to send them: one canonical value, or none when they disagree.
        values = {part.strip() for value in lengths for part in value.split(b",")}
        out = [(name, value) for name, value in out if name.lower() != b"content-length"]
        (only,) = values if len(values) == 1 else (b"",)
        if only.isdigit():
            out.append((b"content-length", only))
        return out


def encode_headers(headers: Mapping[str, str]) -> tuple[Header, ...]:
    """Headers from configuration as lower-cased ASGI byte pairs."""
    return tuple(
        (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()
    )


__all__ = ["CREDENTIAL_HEADERS", "HOP_BY_HOP", "HeaderFilter", "encode_headers"]
