"""Turning the ``auth`` section into components: authenticators, scope filters, endpoints.

Errors are :class:`~secmw.errors.ConfigError` issues keyed relative to ``auth``
(``jwt.keys[0]``, ``api_key.file``), which ``secmw.config`` prefixes.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Mapping, MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from secmw._config_base import read_regular_file
from secmw.auth.base import Authenticator
from secmw.auth.bearer import DEFAULT_SETTINGS, CredentialSettings, strip_subprotocol
from secmw.auth.config import (
    APIKeyConfig,
    AuthConfig,
    IntrospectionConfig,
    JWTConfig,
    ProtectedResourceConfig,
)
from secmw.auth.keys import (
    SUPPORTED_ALGORITHMS,
    VerificationKey,
    is_signature_jwk,
    key_from_jwk,
    key_from_pem,
)
from secmw.context import RequestContext
from secmw.errors import ConfigError, ConfigIssue

if TYPE_CHECKING:
    from secmw.auth.jwt import JWTAuthenticator

Scope = MutableMapping[str, Any]
ScopeFilter = Callable[[Scope], None]
Endpoint = Callable[[RequestContext], tuple[int, list[tuple[bytes, bytes]], bytes]]
WELL_KNOWN = "/.well-known/oauth-protected-resource"


def credential_settings(config: AuthConfig) -> CredentialSettings:
    """Where bearer tokens may be read, from ``auth.websocket``."""
    return CredentialSettings(
        ws_subprotocol_prefix=config.websocket.subprotocol_prefix or None,
        ws_query_token=config.websocket.query_token,
    )


def _report(message: str) -> None:
    print(f"secmw: {message}", file=sys.stderr)


def build_jwt(
    config: JWTConfig,
    *,
    credentials: CredentialSettings | None = None,
    jws_only: bool = False,
    **options: Any,
) -> JWTAuthenticator:
    """A :class:`~secmw.auth.jwt.JWTAuthenticator` from ``auth.jwt``.

    ``auth.jwt`` does not hold ``auth.websocket``: in code, pass
    ``credentials=credential_settings(config.auth)`` (see :func:`check_credentials`).
    """
    from secmw.auth.jwt import JWTAuthenticator  # noqa: PLC0415 - jwt imports this lazily

    keys: list[VerificationKey] = []
    issues: list[ConfigIssue] = []
    for index, entry in enumerate(config.keys):
        try:
            if entry.jwk is not None:
                keys.append(key_from_jwk(entry.jwk, kid=entry.kid, alg=entry.alg))
            else:
                pem = entry.pem if entry.pem is not None else _read(entry.pem_file)
                keys.append(key_from_pem(pem, kid=entry.kid, alg=entry.alg))
        except (ValueError, OSError) as exc:
            issues.append(ConfigIssue(f"keys[{index}]", str(exc)))
    if config.jwks_file is not None:
        try:
            document = json.loads(_read(config.jwks_file))
            entries = document["keys"]
            if not isinstance(entries, list):
                raise TypeError("'keys' is not a list")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            issues.append(ConfigIssue("jwks_file", f"not a JWKS document: {exc}"))
        else:
            for index, jwk in enumerate(entries):
                if isinstance(jwk, Mapping) and not is_signature_jwk(jwk):
                    continue  # as from jwks_url: a copy of a published set holds these
                try:
                    keys.append(key_from_jwk(jwk))
                except ValueError as exc:
                    issues.append(ConfigIssue(f"jwks_file.keys[{index}]", str(exc)))
    if config.jwks_min_ttl > config.jwks_max_ttl:
        issues.append(ConfigIssue("jwks_min_ttl", "must not exceed jwks_max_ttl"))
    if issues:
        raise ConfigError(issues)
    allowed = frozenset(config.algorithms) if config.algorithms else SUPPORTED_ALGORITHMS
    jwks = None
    if config.jwks_url is not None:
        from secmw.auth.jwks import JWKSClient  # noqa: PLC0415 - only with a URL

        jwks = JWKSClient(
            config.jwks_url,
            allowed=allowed,
            static=tuple(keys),
            fetcher=options.pop("fetcher", None),
            timeout=config.jwks_timeout,
            default_ttl=config.jwks_default_ttl,
            min_ttl=config.jwks_min_ttl,
            max_ttl=config.jwks_max_ttl,
            cooldown=config.jwks_cooldown,
            on_error=_report,
        )
    return JWTAuthenticator(
        keys,
        issuer=config.issuer,
        audience=config.audience,
        algorithms=config.algorithms,
        leeway=config.leeway,
        max_token_bytes=config.max_token_bytes,
        required_claims=config.required_claims,
        typ=config.typ,
        claims=config.claims,
        jwks=jwks,
        cache_size=config.cache_size,
        credentials=credentials or DEFAULT_SETTINGS,
        jws_only=jws_only,
        **options,
    )


def build_api_key(config: APIKeyConfig) -> Any:
    """An :class:`~secmw.auth.apikey.APIKeyAuthenticator` over the key file."""
    from secmw.auth.apikey import APIKeyAuthenticator  # noqa: PLC0415
    from secmw.auth.apikey_store import FileAPIKeyStore  # noqa: PLC0415
    from secmw.errors import ComponentError  # noqa: PLC0415

    try:
        store = FileAPIKeyStore(config.file, reload_interval=config.reload_interval)
    except ComponentError as exc:
        raise ConfigError([ConfigIssue("file", str(exc))]) from None
    return APIKeyAuthenticator(
        store, header=config.header, authorization_scheme=config.authorization_scheme
    )


def build_introspection(
    config: IntrospectionConfig, credentials: CredentialSettings, resource: str | None = None
) -> Any:
    """An :class:`~secmw.auth.introspection.IntrospectionAuthenticator`.

    Without an ``audience``, tokens must name ``resource`` (the RFC 9728 resource
    identifier) unless ``verify_audience`` is off.
    """
    from secmw.auth.introspection import IntrospectionAuthenticator  # noqa: PLC0415

    secret = config.client_secret
    if config.client_secret_env is not None:
        secret = os.environ.get(config.client_secret_env)
        if not secret:
            raise ConfigError(
                [ConfigIssue("client_secret_env", f"${config.client_secret_env} is not set")]
            )
    assert secret is not None
    return IntrospectionAuthenticator(
        config.endpoint,
        client_id=config.client_id,
        client_secret=secret,
        audience=config.audience
        if config.audience is not None or not config.verify_audience
        else resource,
        verify_audience=config.verify_audience,
        issuer=config.issuer,
        timeout=config.timeout,
        cache_size=config.cache_size,
        cache_ttl=config.cache_ttl,
        negative_cache_ttl=config.negative_cache_ttl,
        max_token_bytes=config.max_token_bytes,
        max_concurrent=config.max_concurrent,
        claims=config.claims,
        credentials=credentials,
    )


def build_authenticator(config: AuthConfig) -> Authenticator | None:
    """The configured authenticators, composed in the order jwt, introspection, api_key.

    With both ``jwt`` and ``introspection``, the JWT authenticator takes tokens
    shaped like a compact JWS and introspection takes the others.
    """
    from secmw.auth.composite import CompositeAuthenticator  # noqa: PLC0415

    credentials = credential_settings(config)
    members: list[Authenticator] = []
    issues: list[ConfigIssue] = []
    builders: list[tuple[str, Callable[[], Any]]] = []
    if config.jwt is not None:
        jwt_config = config.jwt
        jws_only = config.introspection is not None
        builders.append(
            ("jwt", lambda: build_jwt(jwt_config, credentials=credentials, jws_only=jws_only))
        )
    if config.introspection is not None:
        introspection = config.introspection
        resource = config.protected_resource.resource if config.protected_resource else None
        builders.append(
            ("introspection", lambda: build_introspection(introspection, credentials, resource))
        )
    if config.api_key is not None:
        api_key = config.api_key
        builders.append(("api_key", lambda: build_api_key(api_key)))
    for name, build in builders:
        try:
            members.append(build())
        except ConfigError as exc:
            issues.extend(
                ConfigIssue(f"{name}.{issue.key}".rstrip("."), issue.message)
                for issue in exc.issues
            )
    if issues:
        raise ConfigError(issues)
    if not members:
        return None
    return members[0] if len(members) == 1 else CompositeAuthenticator(members)


def check_credentials(config: AuthConfig, authenticator: object) -> None:
    """Refuse an authenticator that reads bearer tokens elsewhere than ``auth.websocket`` says.

    The scope filters follow ``auth.websocket``: an authenticator given in code
    that reads another subprotocol prefix would leave its token in the app's
    scope, and clients following the configuration would be refused. Members of
    a composite are checked; authenticators without ``credential_settings`` are
    not. Issues are keyed relative to ``auth``.
    """
    expected = credential_settings(config)
    issues: dict[str, ConfigIssue] = {}
    for found in _credential_settings_of(authenticator):
        if (found.ws_subprotocol_prefix or None) != expected.ws_subprotocol_prefix:
            issues["websocket.subprotocol_prefix"] = ConfigIssue(
                "websocket.subprotocol_prefix",
                f"is {expected.ws_subprotocol_prefix or ''!r}, but the authenticator given "
                f"in code reads {found.ws_subprotocol_prefix or ''!r}; build it with "
                "credentials=credential_settings(config.auth)",
            )
        if found.ws_query_token != expected.ws_query_token:
            issues["websocket.query_token"] = ConfigIssue(
                "websocket.query_token",
                f"is {str(expected.ws_query_token).lower()}, but the authenticator given in "
                f"code has {str(found.ws_query_token).lower()}; build it with "
                "credentials=credential_settings(config.auth)",
            )
    if issues:
        raise ConfigError(list(issues.values()))


def _credential_settings_of(authenticator: object) -> list[CredentialSettings]:
    """The credential settings of ``authenticator`` and of its members, if it composes."""
    found: list[CredentialSettings] = []
    pending = [authenticator]
    while pending:
        current = pending.pop()
        settings = getattr(current, "credential_settings", None)
        if isinstance(settings, CredentialSettings):
            found.append(settings)
        members = getattr(current, "authenticators", ())
        if isinstance(members, tuple):  # a CompositeAuthenticator's
            pending.extend(members)
    return found


# -- what the adapter applies to the app's scope -------------------------------


def scope_filters(config: AuthConfig) -> tuple[ScopeFilter, ...]:
    """Scope rewrites that keep client credentials away from the app or upstream.

    Always on websockets: the bearer subprotocol entry is removed (so the app can
    only echo a real subprotocol) and, when query tokens are enabled, the
    ``access_token`` parameter. With ``strip_credentials``: the ``Authorization``
    and API-key headers too.
    """
    filters: list[ScopeFilter] = []
    prefix = config.websocket.subprotocol_prefix
    if prefix:
        filters.append(WebSocketFilter(lambda scope: strip_subprotocol(scope, prefix)))
    if config.websocket.query_token:
        filters.append(WebSocketFilter(_strip_query_token))
    if config.strip_credentials:
        names = {b"authorization"}
        if config.api_key is not None:
            names.add(config.api_key.header.encode("latin-1").replace(b"_", b"-"))
        filters.append(lambda scope: _strip_headers(scope, frozenset(names)))
    return tuple(filters)


def _strip_headers(scope: Scope, names: frozenset[bytes]) -> None:
    # Every spelling with "_" for "-" goes: WSGI bridges and Django read X_API_Key
    # as X-API-Key (``names`` are lower-case, dashed).
    headers = scope.get("headers")
    if headers:
        scope["headers"] = [
            (name, value)
            for name, value in headers
            if name.lower().replace(b"_", b"-") not in names
        ]


class WebSocketFilter:
    """A scope filter for websocket scopes only (the adapter skips it for http)."""

    __slots__ = ("_rewrite",)

    websocket_only = True

    def __init__(self, rewrite: ScopeFilter) -> None:
        self._rewrite = rewrite

    def __call__(self, scope: Scope) -> None:
        if scope.get("type") == "websocket":
            self._rewrite(scope)


def _strip_query_token(scope: Scope) -> None:
    query: bytes = scope.get("query_string") or b""
    if b"access_token" not in query and b"%" not in query:
        return
    pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
    kept = [(name, value) for name, value in pairs if name != "access_token"]
    if len(kept) != len(pairs):  # otherwise the app keeps the query exactly as sent
        scope["query_string"] = urlencode(kept).encode("latin-1")


# -- RFC 9728 protected-resource metadata ---------------------------------------


def metadata_path(config: ProtectedResourceConfig) -> str:
    """Where the document is served: RFC 9728 section 3.1 inserts the well-known
    segment between the host and the resource's path."""
    if config.path is not None:
        return config.path
    path = urlsplit(config.resource).path.rstrip("/")
    return WELL_KNOWN + path


def resource_metadata_url(config: AuthConfig) -> str | None:
    """The ``resource_metadata`` URL for challenges: configured, or derived."""
    if config.resource_metadata is not None or config.protected_resource is None:
        return config.resource_metadata
    parts = urlsplit(config.protected_resource.resource)
    # RFC 9728 section 3.1: the well-known path goes between the host and the
    # path, and a query of the resource identifier stays a query.
    query = f"?{parts.query}" if parts.query else ""
    return f"{parts.scheme}://{parts.netloc}{metadata_path(config.protected_resource)}{query}"


def endpoints(config: AuthConfig) -> dict[str, Endpoint]:
    """The responses secmw itself serves: the metadata document when configured."""
    resource = config.protected_resource
    if resource is None:
        return {}
    document: dict[str, Any] = {
        "resource": resource.resource,
        "authorization_servers": resource.authorization_servers,
        "bearer_methods_supported": resource.bearer_methods_supported,
    }
    if resource.scopes_supported:
        document["scopes_supported"] = resource.scopes_supported
    if resource.resource_name is not None:
        document["resource_name"] = resource.resource_name
    if resource.resource_documentation is not None:
        document["resource_documentation"] = resource.resource_documentation
    body = json.dumps(document, separators=(",", ":")).encode()
    ok = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"public, max-age=3600"),
    ]

    def serve(ctx: RequestContext) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        if ctx.method in ("GET", "HEAD"):
            return 200, list(ok), b"" if ctx.method == "HEAD" else body
        return 405, [(b"allow", b"GET, HEAD"), (b"content-length", b"0")], b""

    return {metadata_path(resource): serve}


def _read(path: Path | None) -> str:
    if path is None:
        raise ValueError("no file given")
    return read_regular_file(path).decode("utf-8")


__all__ = [
    "build_api_key",
    "build_authenticator",
    "build_introspection",
    "build_jwt",
    "check_credentials",
    "credential_settings",
    "endpoints",
    "metadata_path",
    "resource_metadata_url",
    "scope_filters",
]
