"""Per-request state: :class:`RequestContext`, :class:`Principal` (headers: `secmw._headers`).

A :class:`RequestContext` is built once per request from the ASGI scope and handed
to every stage. Everything a policy may match on is normalised here, once, so no
two stages can read the same request differently.
"""

from __future__ import annotations

import ipaddress
import itertools
import os
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from secmw._forwarded import forwarded_client, unmapped
from secmw._headers import Headers, RawHeaders
from secmw._jsonrpc import RpcCall, mcp_header_value, parse_json_body, rpc_calls
from secmw._paths import canonical_path
from secmw.errors import BadRequest

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the outcome of authentication, never the credential itself.

    It also quacks like Starlette's ``BaseUser`` (``is_authenticated``,
    ``display_name``, ``identity``), so ``request.user`` works unchanged.
    ``credential_id`` identifies the credential for audit and anomaly detection
    (a key id, a ``jti`` or a token digest) and must never be the secret.
    """

    subject: str
    tenant: str | None = None
    roles: frozenset[str] = frozenset()
    scopes: frozenset[str] = frozenset()
    claims: Mapping[str, Any] = field(default_factory=lambda: _EMPTY, repr=False)
    tier: str | None = None
    auth_method: str = "anonymous"
    acr: str | None = None
    amr: tuple[str, ...] = ()
    auth_time: float | None = None
    expires_at: float | None = None
    credential_id: str | None = None
    is_authenticated: bool = True

    @property
    def display_name(self) -> str:
        """The subject, for Starlette's ``BaseUser`` interface."""
        return self.subject

    @property
    def identity(self) -> str:
        """The subject, for Starlette's ``BaseUser`` interface."""
        return self.subject


ANONYMOUS = Principal(subject="", auth_method="anonymous", is_authenticated=False)


@dataclass(frozen=True, slots=True)
class AuthCredentials:
    """Starlette-compatible ``scope["auth"]``: ``request.auth.scopes``."""

    scopes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Finding:
    """Something a stage noticed: a secret, an injection signal, an anomaly.

    ``kind`` names the detector (``github_token``, ``override_phrase``); ``score``
    is its weight (0..1); ``fingerprint`` identifies a value without revealing it.
    """

    source: str
    kind: str
    score: float = 1.0
    start: int | None = None
    end: int | None = None
    fingerprint: str | None = None
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class ContextSettings:
    """How a scope becomes a context; built once from the configuration."""

    request_id_header: str = "x-request-id"
    trust_request_id: bool = True
    trusted_hops: int = 0
    trusted_proxies: tuple[IPNetwork, ...] = ()
    forwarded_header: str = "x-forwarded-for"
    trust_unix_socket: bool = False
    allow_encoded_slash: bool = False
    allow_double_encoding: bool = False


# ``ctx.state`` keys: the request-id header a middleware echoes, and, in the
# context of one nested in another, the header the outer one echoes.
ECHOES = "secmw.echoes"
NESTED = "secmw.nested"

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
_id_prefix = secrets.token_hex(6)
_id_counter = itertools.count(1)


def _reseed_ids() -> None:
    global _id_prefix, _id_counter  # noqa: PLW0603 - ids must differ between forked workers
    _id_prefix = secrets.token_hex(6)
    _id_counter = itertools.count(1)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reseed_ids)


def new_request_id() -> str:
    """A process-unique request id: a random per-process prefix and a counter."""
    return f"{_id_prefix}-{next(_id_counter):x}"


class RequestContext:
    """Everything the stages know about one request, normalised once.

    ``path`` is the canonical path (see :func:`secmw._paths.canonical_path`);
    ``client`` is the client address after the trusted-proxy rule; ``rpc`` holds
    the JSON-RPC calls when the body was read and is JSON-RPC.
    """

    __slots__ = (
        "body",
        "client",
        "client_port",
        "content_lengths",
        "decision",
        "findings",
        "headers",
        "json",
        "mcp_sessions",
        "method",
        "path",
        "peer",
        "principal",
        "raw_path",
        "request_id",
        "root_path",
        "rpc",
        "rpc_batch",
        "scheme",
        "scope",
        "started",
        "state",
        "status",
        "transport",
    )

    def __init__(
        self,
        *,
        scope: Mapping[str, Any],
        transport: str,
        method: str,
        path: str,
        raw_path: bytes,
        root_path: str,
        scheme: str,
        headers: Headers,
        client: str | None,
        client_port: int | None,
        peer: str | None,
        request_id: str,
    ) -> None:
        self.scope = scope
        self.transport = transport
        self.method = method
        self.path = path
        self.raw_path = raw_path
        self.root_path = root_path
        self.scheme = scheme
        self.headers = headers
        self.client = client
        self.client_port = client_port
        self.peer = peer
        self.request_id = request_id
        self._begin()

    def _begin(self) -> None:
        """Set what every context starts with (the state the stages fill in)."""
        self.started = time.perf_counter()
        self.principal: Principal = ANONYMOUS
        self.findings: list[Finding] = []
        self.decision: Any = None
        self.body: bytes | None = None
        self.json: Any = None
        self.rpc: tuple[RpcCall, ...] = ()
        self.rpc_batch = False
        self.status: int | None = None
        self.state: dict[str, Any] = {}
        self.content_lengths: tuple[str, ...] = ()
        # Every Mcp-Session-Id value (read in the same pass as Content-Length).
        self.mcp_sessions: tuple[str, ...] = ()

    @classmethod
    def from_scope(
        cls,
        scope: Mapping[str, Any],
        settings: ContextSettings | None = None,
        *,
        path: str | None = None,
    ) -> RequestContext:
        """Build the context of an ``http`` or ``websocket`` scope.

        Raises :class:`BadRequest` for a path that cannot be canonicalised safely.
        ``path`` skips canonicalisation; it is for describing a refused request.
        """
        settings = settings or _DEFAULT_SETTINGS
        transport = scope["type"]
        raw_headers: RawHeaders = scope.get("headers") or ()
        headers = Headers(raw_headers)
        raw_path = scope.get("raw_path")
        path_given = path
        if path is None:
            path = canonical_path(
                scope.get("path") or "/",
                raw_path,
                scope.get("root_path") or "",
                allow_encoded_slash=settings.allow_encoded_slash,
                allow_double_encoding=settings.allow_double_encoding,
            )
        peer_info = scope.get("client")
        peer = peer_info[0] if peer_info else None
        client, client_port = peer, peer_info[1] if peer_info else None
        if settings.trusted_hops:
            forwarded = forwarded_client(headers, peer, settings)
            if forwarded is not None:
                client, client_port = forwarded or None, None
        if client is not None and client[:7].lower() == "::ffff:":
            client = unmapped(client)
        request_id = None
        # Strict unless describing a refused request (``path`` given).
        incoming, lengths, sessions = _scan(
            raw_headers, settings.request_id_header.encode("latin-1"), strict=path_given is None
        )
        if settings.trust_request_id and incoming is not None and _REQUEST_ID.fullmatch(incoming):
            request_id = incoming
        # Built field by field rather than through __init__'s keywords: this runs
        # once per request, and a twelve-keyword call costs as much as the rest.
        ctx = cls.__new__(cls)
        ctx.scope = scope
        ctx.transport = transport
        # Upper-cased as rules are: servers pass "delete" through, and frameworks
        # that upper-case it (Django, werkzeug) would run DELETE for it.
        ctx.method = str(scope.get("method", "GET")).upper() if transport == "http" else "GET"
        ctx.path = path
        ctx.raw_path = (
            raw_path
            if raw_path is not None
            else str(scope.get("path", "/")).encode("utf-8", "backslashreplace")
        )
        ctx.root_path = scope.get("root_path") or ""
        ctx.scheme = scope.get("scheme") or ("ws" if transport == "websocket" else "http")
        ctx.headers = headers
        ctx.client = client
        ctx.client_port = client_port
        ctx.peer = peer
        # An outer SecurityMiddleware already named this request: one id, so its
        # audit lines and ours (and the echoed header) can be correlated.
        outer = (scope.get("state") or {}).get("secmw")
        if isinstance(outer, RequestContext):
            request_id = outer.request_id
        ctx.request_id = request_id or new_request_id()
        ctx._begin()
        if isinstance(outer, RequestContext):
            # The header the outer one echoes (None: none): ours would repeat it.
            ctx.state[NESTED] = outer.state.get(ECHOES)
        ctx.content_lengths = lengths
        ctx.mcp_sessions = sessions
        return ctx

    @property
    def query_string(self) -> bytes:
        """The raw query string, as the server passed it."""
        value: bytes = self.scope.get("query_string", b"")
        return value

    @property
    def host(self) -> str | None:
        """The ``Host`` header, lower-cased, or ``None``."""
        value = self.headers.get("host")
        return value.lower() if value is not None else None

    @property
    def tools(self) -> tuple[str, ...]:
        """The tool names of every ``tools/call`` in the body."""
        return tuple(call.target for call in self.rpc if call.tool is not None)  # type: ignore[misc]

    def load_body(self, body: bytes) -> None:
        """Attach the buffered body and parse it as strict JSON / JSON-RPC when it is."""
        self.body = body
        is_json, value = parse_json_body(body, self.headers.get("content-type"))
        if not is_json:
            return
        self.json = value
        found = rpc_calls(value)
        if found is not None:
            self.rpc, self.rpc_batch = found
        self._check_mcp_headers()

    def _check_mcp_headers(self) -> None:
        """The stateless MCP transport repeats the method and name in headers; they must agree.

        A server may route on ``Mcp-Method``/``Mcp-Name`` while the policy reads the
        body, so any disagreement is refused rather than decided on one of them.
        """
        # Spelt with "_" too: WSGI/CGI-style servers merge the two spellings.
        method = self.headers.get_single("mcp-method", "mcp_method")
        name = self.headers.get_single("mcp-name", "mcp_name")
        if method is None and name is None:
            return
        calls = [call for call in self.rpc if call.method is not None]
        if self.rpc_batch or len(calls) != 1:
            raise BadRequest(
                "The Mcp-Method header needs a body with exactly one JSON-RPC request.",
                reason="MCP headers without a single JSON-RPC request",
            )
        call = calls[0]
        for header, value, wanted in (
            ("Mcp-Method", method, call.method),
            ("Mcp-Name", name, call.target),
        ):
            # A malformed base64 form reads as None: it never matches, even a call
            # without a name.
            read = None if value is None else mcp_header_value(value)
            if value is not None and (read is None or read != wanted):
                raise BadRequest(
                    f"The {header} header does not match the body.", reason=f"{header} mismatch"
                )

    def elapsed_ms(self) -> float:
        """Milliseconds since the context was built."""
        return (time.perf_counter() - self.started) * 1000.0

    def __repr__(self) -> str:
        return (
            f"RequestContext({self.transport} {self.method} {self.path!r} "
            f"id={self.request_id} client={self.client})"
        )


_DEFAULT_SETTINGS = ContextSettings()


# uri-host [":" port]: a bracketed IPv6 literal (a zone id as "%25eth0", RFC 6874,
# as httpx sends it), or a name without ":", "/", "@", spaces.
_HOST = re.compile(
    # No DNS name holds , ; = or quotes: refused, they would end or open an element
    # or parameter of a Forwarded header a proxy writes the Host into unquoted.
    rb"(?:\[[0-9A-Fa-f:.]+(?:%25[A-Za-z0-9._~-]+)?\]"
    rb"|[^\x00-\x20:/?#\[\]@\\\x7f-\xff,;=\"'<>()]*)(?::[0-9]*)?"
)


def _scan(
    raw: RawHeaders, request_id_name: bytes, *, strict: bool = True
) -> tuple[str | None, tuple[str, ...], tuple[str, ...]]:
    """One pass over the raw headers for what every request needs: the request id
    and the Content-Length and Mcp-Session-Id values (all of them: duplicates must
    be seen).

    A second ``Host`` line, or one that is no host[:port], is a 400 (RFC 9112
    section 3.2): the policy's ``hosts`` and an app reading the last line or
    splitting at a colon would read different hosts.
    """
    request_id: str | None = None
    lengths: tuple[str, ...] = ()
    sessions: tuple[str, ...] = ()
    host: bytes | None = None
    for key, value in raw:
        name = key if key.islower() else key.lower()
        if name == b"content-length":
            lengths = (*lengths, value.decode("latin-1"))
        elif name.startswith(b"mcp") and name.replace(b"_", b"-") == b"mcp-session-id":
            # WSGI/CGI-style servers read "_" as "-": Mcp_Session_Id is the same header.
            sessions = (*sessions, value.decode("latin-1"))
        elif name == b"host" and strict:
            if host is not None:
                raise BadRequest("The Host header is sent more than once.", reason="duplicate Host")
            host = value
        elif name == request_id_name and request_id is None:
            request_id = value.decode("latin-1")
    if host is not None and not _HOST.fullmatch(host):
        raise BadRequest("The Host header is not valid.", reason="malformed Host")
    return request_id, lengths, sessions


__all__ = [
    "ANONYMOUS",
    "AuthCredentials",
    "ContextSettings",
    "Finding",
    "Headers",
    "Principal",
    "RequestContext",
    "RpcCall",
    "new_request_id",
]
