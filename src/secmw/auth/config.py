"""Configuration models of the authentication stage (the ``auth`` section)."""

from __future__ import annotations

import re
import string
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from secmw._config_base import FIELD_MARK, ConfigModel, header_name, https_url


class JWTKeyConfig(ConfigModel):
    """One verification key: an inline JWK, inline PEM or a PEM file."""

    kid: str | None = None
    alg: str | None = None
    jwk: dict[str, Any] | None = None
    pem: str | None = None
    pem_file: Path | None = None

    @model_validator(mode="after")
    def _one_source(self) -> JWTKeyConfig:
        sources = [name for name in ("jwk", "pem", "pem_file") if getattr(self, name) is not None]
        if len(sources) != 1:
            raise ValueError("give exactly one of jwk, pem or pem_file")
        return self


class ClaimNames(ConfigModel):
    """Which token claims feed which :class:`~secmw.context.Principal` fields."""

    subject: str = "sub"
    tenant: str = "tenant"
    roles: str = "roles"
    scope: str = "scope"
    scp: str = "scp"
    tier: str = "tier"
    acr: str = "acr"
    amr: str = "amr"
    auth_time: str = "auth_time"


class JWTConfig(ConfigModel):
    """JWT bearer-token verification (RFC 7519, RFC 8725 practices)."""

    issuer: str = Field(min_length=1)
    audience: str | list[str]
    keys: list[JWTKeyConfig] = Field(default_factory=list)
    jwks_file: Path | None = None
    jwks_url: str | None = None
    jwks_timeout: float = Field(default=5.0, gt=0, le=60)
    jwks_cooldown: float = Field(default=30.0, gt=0, le=3600)
    jwks_min_ttl: float = Field(default=30.0, ge=0, le=86400)
    jwks_max_ttl: float = Field(default=86400.0, ge=1, le=7 * 86400)
    jwks_default_ttl: float = Field(default=300.0, ge=0, le=86400)
    cache_size: int = Field(default=10_000, ge=0, le=10_000_000)
    algorithms: list[str] | None = Field(default=None, min_length=1)
    leeway: float = Field(default=30.0, ge=0, le=600)
    max_token_bytes: int = Field(default=8192, ge=256, le=65536)
    required_claims: list[str] = Field(default_factory=lambda: ["exp", "sub"])
    typ: str | None = None
    claims: ClaimNames = Field(default_factory=ClaimNames)

    @field_validator("audience")
    @classmethod
    def _audience(cls, value: str | list[str]) -> str | list[str]:
        if not value or (isinstance(value, list) and not all(value)):
            raise ValueError("audience must be a non-empty string or list of strings")
        return value

    @field_validator("jwks_url")
    @classmethod
    def _jwks_url(cls, value: str | None) -> str | None:
        return https_url(value, "jwks_url")

    @model_validator(mode="after")
    def _some_key(self) -> JWTConfig:
        if not self.keys and self.jwks_file is None and self.jwks_url is None:
            raise ValueError("give keys, jwks_file or jwks_url")
        return self


_SCHEME = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+")


class APIKeyConfig(ConfigModel):
    """API keys kept as SHA-256 hashes in a JSON file (see ``secmw apikey``)."""

    file: Path
    header: str = "x-api-key"
    authorization_scheme: str | None = "ApiKey"
    reload_interval: float = Field(default=2.0, ge=0, le=3600)

    @field_validator("header")
    @classmethod
    def _header(cls, value: str) -> str:
        return header_name(value)

    @field_validator("authorization_scheme")
    @classmethod
    def _scheme(cls, value: str | None) -> str | None:
        # An auth-scheme is a token (RFC 9110 section 11.1), compared without case;
        # one the bearer parser takes as a badly written "Bearer" would never match.
        if value is None or value == "":
            return value
        if not _SCHEME.fullmatch(value):
            raise ValueError("must be an HTTP auth-scheme (letters, digits, !#$%&'*+.^_`|~-)")
        if len(value) > 6 and value[:6].lower() == "bearer" and not value[6].isalnum():
            raise ValueError("must not read as Bearer (Bearer-…, Bearer_…)")
        return value


class IntrospectionConfig(ConfigModel):
    """OAuth 2.0 token introspection (RFC 7662) for opaque tokens; needs httpx."""

    endpoint: str
    client_id: str = Field(min_length=1)
    client_secret: str | None = Field(default=None, repr=False)
    client_secret_env: str | None = None
    audience: str | list[str] | None = None
    verify_audience: bool = True
    issuer: str | None = None
    timeout: float = Field(default=5.0, gt=0, le=60)
    cache_size: int = Field(default=10_000, ge=0, le=10_000_000)
    cache_ttl: float = Field(default=300.0, ge=0, le=86400)
    negative_cache_ttl: float = Field(default=30.0, ge=0, le=3600)
    max_token_bytes: int = Field(default=8192, ge=16, le=65536)
    max_concurrent: int = Field(default=50, ge=1, le=10_000)
    claims: ClaimNames = Field(default_factory=ClaimNames)

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        checked = https_url(value, "endpoint")
        assert checked is not None
        return checked

    @model_validator(mode="after")
    def _secret(self) -> IntrospectionConfig:
        if (self.client_secret is None) == (self.client_secret_env is None):
            raise ValueError("give exactly one of client_secret or client_secret_env")
        if not self.verify_audience and self.audience is not None:
            raise ValueError(f"{FIELD_MARK}verify_audience: is false while audience is set")
        return self


class ProtectedResourceConfig(ConfigModel):
    """The RFC 9728 protected-resource metadata document secmw serves."""

    resource: str
    authorization_servers: list[str] = Field(min_length=1)
    scopes_supported: list[str] = Field(default_factory=list)
    bearer_methods_supported: list[str] = Field(default_factory=lambda: ["header"])
    resource_name: str | None = None
    resource_documentation: str | None = None
    path: str | None = None

    @field_validator("resource")
    @classmethod
    def _resource(cls, value: str) -> str:
        checked = https_url(value, "resource")
        assert checked is not None
        if "#" in checked:
            raise ValueError("resource must not have a fragment (RFC 9728 section 1.2)")
        return checked

    @field_validator("authorization_servers")
    @classmethod
    def _issuers(cls, value: list[str]) -> list[str]:
        # Clients fetch each one's metadata and send users there to log in: an issuer
        # identifier is an https URL without query or fragment (RFC 8414 section 2).
        for index, issuer in enumerate(value):
            https_url(issuer, f"authorization_servers[{index}]")
            parts = urlsplit(issuer)
            if parts.query or parts.fragment or "?" in issuer or "#" in issuer:
                raise ValueError(
                    f"authorization_servers[{index}] must be an issuer: no query or fragment"
                )
        return value

    @field_validator("bearer_methods_supported")
    @classmethod
    def _bearer_methods(cls, value: list[str]) -> list[str]:
        # Clients follow the document: one told "query" puts its token in URLs
        # (logged everywhere) and gets 400; "body" tokens are never read.
        if any(method != "header" for method in value):
            raise ValueError(
                'only "header" can be listed: secmw never reads a bearer token from '
                "an HTTP query or body"
            )
        return value

    @field_validator("path")
    @classmethod
    def _path(cls, value: str | None) -> str | None:
        if value is not None and (not value.startswith("/") or "?" in value):
            raise ValueError("path must be an absolute path without a query")
        if value is not None and not _plain_path(value):
            raise ValueError(
                "path must be a plain path (no percent escapes, ';', '.' or '..' segments, "
                "spaces, quotes or non-ASCII): it is matched canonical and advertised as written"
            )
        if value is not None and value != "/" and (value.endswith("/") or "//" in value):
            # Requests are matched on canonical paths, which never end with "/":
            # such a document would never be served while 401s advertise it.
            raise ValueError("path must be canonical (no trailing or repeated slash)")
        return value

    @model_validator(mode="after")
    def _derived_path(self) -> ProtectedResourceConfig:
        # Without ``path`` the document is served at the well-known prefix plus the
        # resource's path, matched on the canonical (decoded) path and advertised
        # in challenges as written: both must be the same plain path.
        if self.path is None:
            derived = urlsplit(self.resource).path.rstrip("/")
            if not _plain_path(derived or "/"):
                raise ValueError(
                    f"{FIELD_MARK}path: required: the resource's path {derived!r} cannot be "
                    "served as written (set path to where the document is served)"
                )
        return self


# RFC 3986 pchar without "%" (escapes) and ";" (cut as a parameter when matched).
_PCHAR = frozenset(string.ascii_letters + string.digits + "-._~!$&'()*+,=:@/")


def _plain_path(path: str) -> bool:
    """A path served and advertised as written: canonical, and nothing to escape."""
    return (
        all(char in _PCHAR for char in path)
        and "//" not in path
        and "/./" not in path + "/"
        and "/../" not in path + "/"
    )


class WebSocketAuthConfig(ConfigModel):
    """Where websocket handshakes may carry a bearer token besides the header."""

    subprotocol_prefix: str | None = "base64url.bearer.authorization.k8s.io."
    query_token: bool = False


class AuthConfig(ConfigModel):
    """Authentication settings and anonymous access."""

    allow_anonymous: bool = False
    public_paths: list[str] = Field(default_factory=list)
    realm: str = "secmw"
    resource_metadata: str | None = None
    strip_credentials: bool = False
    jwt: JWTConfig | None = None
    introspection: IntrospectionConfig | None = None
    api_key: APIKeyConfig | None = None
    protected_resource: ProtectedResourceConfig | None = None
    websocket: WebSocketAuthConfig = Field(default_factory=WebSocketAuthConfig)

    @field_validator("realm")
    @classmethod
    def _realm(cls, value: str) -> str:
        # Sent as a quoted-string in WWW-Authenticate: printable ASCII, no quote or backslash.
        if not value or not all(" " <= char <= "~" and char not in '"\\' for char in value):
            raise ValueError("must be printable ASCII without quotes or backslashes")
        return value

    @field_validator("resource_metadata")
    @classmethod
    def _metadata_url(cls, value: str | None) -> str | None:
        if value is None:
            return value
        parts = urlsplit(value)
        if parts.scheme not in ("https", "http") or not parts.netloc or parts.fragment:
            raise ValueError("must be an absolute http(s) URL without a fragment")
        if any(char in value for char in '" \\'):
            raise ValueError("must not hold quotes, spaces or backslashes")
        return value

    @model_validator(mode="after")
    def _introspection_audience(self) -> AuthConfig:
        # A token the authorization server issued for another resource is active
        # there too: without an audience check it would be accepted here (RFC 8707).
        introspection = self.introspection
        if (
            introspection is not None
            and introspection.verify_audience
            and introspection.audience is None
            and self.protected_resource is None
        ):
            raise ValueError(
                f"{FIELD_MARK}introspection.audience: required (the tokens' aud must name this "
                "resource), unless protected_resource.resource is set; "
                "verify_audience = false skips the check (a fail-open)"
            )
        return self

    @model_validator(mode="after")
    def _api_key_apart_from_bearer(self) -> AuthConfig:
        # An API key read from "Authorization: Bearer" would make every bearer
        # token look like two credentials (400): refuse the combination up front.
        key = self.api_key
        if key is not None and (self.jwt is not None or self.introspection is not None):
            if key.header == "authorization":
                raise ValueError("api_key.header cannot be authorization next to bearer tokens")
            if (key.authorization_scheme or "").lower() == "bearer":
                raise ValueError(
                    "api_key.authorization_scheme cannot be Bearer next to bearer tokens"
                )
        return self
