"""Configuration models of the authentication stage (the ``auth`` section)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator

from secmw._config_base import ConfigModel


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
    algorithms: list[str] | None = None
    leeway: float = Field(30.0, ge=0, le=600)
    max_token_bytes: int = Field(8192, ge=256, le=65536)
    required_claims: list[str] = Field(default_factory=lambda: ["exp", "sub"])
    typ: str | None = None
    claims: ClaimNames = Field(default_factory=ClaimNames)

    @field_validator("audience")
    @classmethod
    def _audience(cls, value: str | list[str]) -> str | list[str]:
        if not value or (isinstance(value, list) and not all(value)):
            raise ValueError("audience must be a non-empty string or list of strings")
        return value

    @model_validator(mode="after")
    def _some_key(self) -> JWTConfig:
        if not self.keys and self.jwks_file is None:
            raise ValueError("give keys or jwks_file")
        return self


class AuthConfig(ConfigModel):
    """Authentication settings and anonymous access."""

    allow_anonymous: bool = False
    public_paths: list[str] = Field(default_factory=list)
    realm: str = "secmw"
    resource_metadata: str | None = None
    jwt: JWTConfig | None = None
