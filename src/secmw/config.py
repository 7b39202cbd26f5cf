"""Configuration: pydantic models, the TOML/JSON/dict loader and the pipeline builder.

Every model forbids unknown keys, so a typo is an error that names the key rather
than a setting silently ignored. :func:`load_config` never returns a half-valid
configuration and :func:`build_pipeline` never builds a half-protected pipeline:
both raise :class:`~secmw.errors.ConfigError` listing every offending key.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from secmw._responses import ChallengeSettings
from secmw.audit.base import AuditSink, MemoryAuditSink, StreamAuditSink
from secmw.context import ContextSettings
from secmw.errors import ConfigError, ConfigIssue
from secmw.pipeline import DEFAULT_MAX_BODY_BYTES, Pipeline
from secmw.policy.base import AuthenticatedPolicy

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 field-name


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)


def _header_name(value: str) -> str:
    if not _TOKEN.fullmatch(value):
        raise ValueError(f"{value!r} is not a valid header name")
    return value.lower()


class RequestIdConfig(_Model):
    """Where the request id comes from and whether it is echoed back."""

    header: str = "x-request-id"
    trust_incoming: bool = True
    echo: bool = True

    @field_validator("header")
    @classmethod
    def _check_header(cls, value: str) -> str:
        return _header_name(value)


class ProxyConfig(_Model):
    """Trusted reverse proxies in front of the app (client address resolution)."""

    trusted_hops: int = Field(0, ge=0, le=32)
    trusted_proxies: list[str] = Field(default_factory=list)
    forwarded_header: str = "x-forwarded-for"

    @field_validator("forwarded_header")
    @classmethod
    def _check_header(cls, value: str) -> str:
        return _header_name(value)

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=True)
            except ValueError as exc:
                raise ValueError(f"{entry!r} is not a CIDR network: {exc}") from None
        return value


class PathsConfig(_Model):
    """Relaxations of the path canonicalisation rules (both off by default)."""

    allow_encoded_slash: bool = False
    allow_double_encoding: bool = False


class JWTKeyConfig(_Model):
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


class ClaimNames(_Model):
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


class JWTConfig(_Model):
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


class AuthConfig(_Model):
    """Authentication settings and anonymous access."""

    allow_anonymous: bool = False
    public_paths: list[str] = Field(default_factory=list)
    realm: str = "secmw"
    resource_metadata: str | None = None
    jwt: JWTConfig | None = None


class AuditConfig(_Model):
    """Where audit events go."""

    sink: Literal["stdout", "stderr", "memory", "none"] = "stdout"


class Config(_Model):
    """The whole secmw configuration; every section is optional."""

    max_body_bytes: int | None = Field(DEFAULT_MAX_BODY_BYTES, ge=0)
    request_id: RequestIdConfig = Field(default_factory=RequestIdConfig)
    proxy: ProxyConfig = Field(default_factory=ProxyConfig)
    paths: PathsConfig = Field(default_factory=PathsConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    audit: AuditConfig = Field(default_factory=AuditConfig)


def _key_of(loc: tuple[int | str, ...]) -> str:
    key = ""
    for part in loc:
        if isinstance(part, int):
            key += f"[{part}]"
        elif part.startswith(("function-after", "function-before", "union_tag")):
            continue
        else:
            key += f".{part}" if key else part
    return key


def _issues(error: ValidationError) -> list[ConfigIssue]:
    issues = []
    for item in error.errors(include_url=False, include_input=False):
        loc = tuple(part for part in item["loc"] if part not in ("str", "list[str]"))
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        message = message.removeprefix("Value error, ")
        issues.append(ConfigIssue(_key_of(loc), message))
    return issues


def parse_config(data: Mapping[str, Any], *, source: str | None = None) -> Config:
    """Validate a mapping into a :class:`Config`; raises :class:`ConfigError`."""
    if not isinstance(data, Mapping):
        raise ConfigError("the configuration must be a table/object", source=source)
    try:
        return Config.model_validate(dict(data))
    except ValidationError as exc:
        raise ConfigError(_issues(exc), source=source) from None


def load_config(source: Config | Mapping[str, Any] | str | os.PathLike[str] | None) -> Config:
    """Load a configuration from a :class:`Config`, a dict, or a ``.toml``/``.json`` file.

    ``None`` gives the defaults: no authenticator, so every non-public request is
    refused with 401 until one is configured.
    """
    if source is None:
        return Config()
    if isinstance(source, Config):
        return source
    if isinstance(source, Mapping):
        return parse_config(source)
    if not isinstance(source, (str, os.PathLike)):
        raise ConfigError(f"cannot load a configuration from {type(source).__name__}")
    path = Path(source)
    name = str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the file: {exc.strerror or exc}", source=name) from None
    suffix = path.suffix.lower()
    try:
        if suffix == ".json":
            data = json.loads(raw)
        elif suffix == ".toml":
            data = tomllib.loads(raw.decode("utf-8"))
        else:
            raise ConfigError("the file name must end in .toml or .json", source=name)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot parse the file: {exc}", source=name) from None
    return parse_config(data, source=name)


def _audit_sink(config: AuditConfig) -> AuditSink | None:
    import sys  # noqa: PLC0415 - only needed here

    if config.sink == "stdout":
        return StreamAuditSink()
    if config.sink == "stderr":
        return StreamAuditSink(sys.stderr)
    if config.sink == "memory":
        return MemoryAuditSink()
    return None


def build_pipeline(config: Config, **components: Any) -> Pipeline:
    """Build the :class:`Pipeline` a configuration describes.

    Keyword ``components`` (``authenticator``, ``inspector``, ``policy``,
    ``rate_limiter``, ``redactor``, ``audit``) replace the configured ones.
    """
    known = {"authenticator", "inspector", "policy", "rate_limiter", "redactor", "audit"}
    unknown = set(components) - known
    if unknown:
        raise TypeError(f"unknown component(s): {', '.join(sorted(unknown))}")
    issues: list[ConfigIssue] = []
    authenticator = components.get("authenticator")
    if authenticator is None and config.auth.jwt is not None:
        from secmw.auth.jwt import JWTAuthenticator  # noqa: PLC0415 - optional stage

        try:
            authenticator = JWTAuthenticator.from_config(config.auth.jwt)
        except ConfigError as exc:
            issues.extend(
                ConfigIssue(f"auth.jwt.{i.key}".rstrip("."), i.message) for i in exc.issues
            )
    policy = components.get("policy")
    if policy is None:
        try:
            policy = AuthenticatedPolicy(
                config.auth.public_paths, allow_anonymous=config.auth.allow_anonymous
            )
        except ConfigError as exc:
            issues.extend(ConfigIssue(f"auth.{i.key}", i.message) for i in exc.issues)
    if issues:
        raise ConfigError(issues)
    fail_open = (
        ("auth.allow_anonymous",)
        if config.auth.allow_anonymous and "policy" not in components
        else ()
    )
    audit = components["audit"] if "audit" in components else _audit_sink(config.audit)
    return Pipeline(
        authenticator=authenticator,
        inspector=components.get("inspector"),
        policy=policy,
        rate_limiter=components.get("rate_limiter"),
        redactor=components.get("redactor"),
        audit=audit,
        context=ContextSettings(
            request_id_header=config.request_id.header,
            trust_request_id=config.request_id.trust_incoming,
            trusted_hops=config.proxy.trusted_hops,
            trusted_proxies=tuple(ipaddress.ip_network(n) for n in config.proxy.trusted_proxies),
            forwarded_header=config.proxy.forwarded_header,
            allow_encoded_slash=config.paths.allow_encoded_slash,
            allow_double_encoding=config.paths.allow_double_encoding,
        ),
        challenge=ChallengeSettings(
            realm=config.auth.realm, resource_metadata=config.auth.resource_metadata
        ),
        max_body_bytes=config.max_body_bytes,
        echo_request_id=config.request_id.echo,
        fail_open=fail_open,
    )


__all__ = [
    "AuditConfig",
    "AuthConfig",
    "ClaimNames",
    "Config",
    "JWTConfig",
    "JWTKeyConfig",
    "PathsConfig",
    "ProxyConfig",
    "RequestIdConfig",
    "build_pipeline",
    "load_config",
    "parse_config",
]
