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
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, Unpack

from pydantic import Field, ValidationError, field_validator, model_validator

from secmw._config_base import (
    FIELD_MARK,
    ConfigModel,
    cidr_list,
    header_name,
    read_regular_file,
)
from secmw._responses import ChallengeSettings
from secmw.anomaly.build import fail_open_settings as anomaly_fail_open
from secmw.anomaly.build import pipeline_hooks
from secmw.anomaly.config import AnomalyConfig
from secmw.audit.config import AuditConfig
from secmw.auth import build as auth_build
from secmw.auth.config import AuthConfig, ClaimNames, JWTConfig, JWTKeyConfig
from secmw.context import ContextSettings
from secmw.errors import ConfigError, ConfigIssue
from secmw.inspect.config import InspectConfig
from secmw.metrics.config import MetricsConfig
from secmw.pipeline import DEFAULT_MAX_BODY_BYTES, Components, Pipeline
from secmw.policy.config import PolicyConfig
from secmw.proxy.config import GatewayConfig
from secmw.proxy.headers import CREDENTIAL_HEADERS
from secmw.ratelimit.config import RateLimitConfig
from secmw.redact.config import RedactConfig


class RequestIdConfig(ConfigModel):
    """Where the request id comes from and whether it is echoed back."""

    header: str = "x-request-id"
    trust_incoming: bool = True
    echo: bool = True

    @field_validator("header")
    @classmethod
    def _check_header(cls, value: str) -> str:
        name = header_name(value)
        # X_API_Key is X-API-Key to Django and the WSGI bridges (and to the API-key check).
        if name.replace("_", "-").encode() in CREDENTIAL_HEADERS:
            # The id is echoed on every response and written to every audit event.
            raise ValueError(f"{name!r} carries credentials; it cannot hold the request id")
        return name


class ProxyConfig(ConfigModel):
    """Trusted reverse proxies in front of the app (client address resolution)."""

    trusted_hops: int = Field(default=0, ge=0, le=32)
    trusted_proxies: list[str] = Field(default_factory=list)
    forwarded_header: str = "x-forwarded-for"
    trust_unix_socket: bool = False

    @field_validator("forwarded_header")
    @classmethod
    def _check_header(cls, value: str) -> str:
        return header_name(value)

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        return cidr_list(value)

    @model_validator(mode="after")
    def _proxies_need_hops(self) -> ProxyConfig:
        # With no hops the forwarding header is never read: the list would do nothing,
        # and every client would be the proxy (one ``ip`` rate-limit bucket for all).
        if self.trusted_proxies and self.trusted_hops == 0:
            raise ValueError(
                f"{FIELD_MARK}trusted_proxies: needs proxy.trusted_hops (at least 1): "
                "with 0 the forwarding header is ignored"
            )
        return self


class PathsConfig(ConfigModel):
    """Relaxations of the path canonicalisation rules (both off by default)."""

    allow_encoded_slash: bool = False
    allow_double_encoding: bool = False


class WebSocketConfig(ConfigModel):
    """Limits on open websocket sessions."""

    max_message_bytes: int | None = Field(default=DEFAULT_MAX_BODY_BYTES, ge=1)


class McpConfig(ConfigModel):
    """MCP sessions (``Mcp-Session-Id``) bound to the principal that opened them."""

    session_binding: Literal["strict", "known", "off"] = "strict"
    max_sessions: int = Field(default=100_000, ge=1)
    max_sessions_per_principal: int = Field(default=100, ge=1)


class Config(ConfigModel):
    """The whole secmw configuration; every section is optional."""

    max_body_bytes: int | None = Field(default=DEFAULT_MAX_BODY_BYTES, ge=0)
    request_id: RequestIdConfig = Field(default_factory=RequestIdConfig)
    proxy: ProxyConfig = Field(default_factory=ProxyConfig)
    paths: PathsConfig = Field(default_factory=PathsConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    policy: PolicyConfig | None = None
    websocket: WebSocketConfig = Field(default_factory=WebSocketConfig)
    mcp: McpConfig = Field(default_factory=McpConfig)
    audit: AuditConfig = Field(default_factory=AuditConfig)
    ratelimit: RateLimitConfig = Field(default_factory=RateLimitConfig)
    redact: RedactConfig = Field(default_factory=RedactConfig)
    inspect: InspectConfig | None = None
    anomaly: AnomalyConfig = Field(default_factory=AnomalyConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    gateway: GatewayConfig | None = None

    @model_validator(mode="after")
    def _request_id_is_no_credential(self) -> Config:
        key = self.auth.api_key
        if key is not None and key.header.replace("_", "-") == self.request_id.header.replace(
            "_", "-"
        ):
            raise ValueError(
                f"request_id.header {key.header!r} is the API key header: the key would be "
                "echoed and audited as the request id"
            )
        return self


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
        if message.startswith(FIELD_MARK) and ": " in message:
            # A model-level check about one of its fields: name that field.
            field, _, message = message[len(FIELD_MARK) :].partition(": ")
            loc = (*loc, field)
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
    data = read_config_file(source)
    try:
        return parse_config(data, source=str(source))
    except RecursionError:
        raise ConfigError("the configuration is nested too deeply", source=str(source)) from None


def read_config_file(source: str | os.PathLike[str]) -> Any:
    """The parsed (not yet validated) content of a ``.toml`` or ``.json`` file."""
    path = Path(source)
    name = str(path)
    suffix = path.suffix.lower()
    if suffix not in (".json", ".toml"):
        raise ConfigError("the file name must end in .toml or .json", source=name)
    try:
        # Bounded and regular only: /dev/zero would be read forever, a FIFO block.
        raw = read_regular_file(path, MAX_CONFIG_BYTES)
    except OSError as exc:
        raise ConfigError(f"cannot read the file: {exc.strerror or exc}", source=name) from None
    except ValueError:
        raise ConfigError("the file is larger than 16 MiB", source=name) from None
    try:
        if suffix == ".json":
            # Like TOML, a key given twice is an error: the last one would win unseen.
            data = json.loads(raw, object_pairs_hook=_unique_keys)
        else:
            # Editors on Windows save UTF-8 with a byte-order mark; json.loads skips it too.
            data = tomllib.loads(raw.decode("utf-8-sig"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot parse the file: {exc}", source=name) from None
    except RecursionError:
        raise ConfigError("cannot parse the file: nested too deeply", source=name) from None
    return data


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise ValueError(f"the key {key!r} is given twice in one object")
        seen[key] = value
    return seen


# No real configuration comes near this; a bigger file is a mistake (or a device).
MAX_CONFIG_BYTES = 16 * 1024 * 1024

Builder = Callable[[Config], Any]


def _authenticator(config: Config) -> Any:
    from secmw.auth.build import build_authenticator  # noqa: PLC0415 - keeps imports lazy

    return _within("auth", lambda: build_authenticator(config.auth))


def _policy(config: Config) -> Any:
    from secmw.policy.build import build_policy  # noqa: PLC0415 - keeps imports lazy

    return build_policy(config.policy, config.auth)


def _redactor(config: Config) -> Any:
    from secmw.redact.build import build_redactor  # noqa: PLC0415 - keeps imports lazy

    return _within("redact", lambda: build_redactor(config.redact))


def _inspector(config: Config) -> Any:
    if config.inspect is None:
        return None
    from secmw.inspect.build import build_inspector  # noqa: PLC0415 - only when configured

    return _within("inspect", lambda: build_inspector(config.inspect))  # type: ignore[arg-type]


def _audit(config: Config) -> Any:
    from secmw.audit.build import build_sink  # noqa: PLC0415 - keeps imports lazy

    return _within("audit", lambda: build_sink(config.audit))


def _rate_limiter(config: Config) -> Any:
    from secmw.ratelimit.build import build_rate_limiter  # noqa: PLC0415 - keeps imports lazy

    return _within("ratelimit", lambda: build_rate_limiter(config.ratelimit))


# One builder per stage; a component issue adds its section to Config and a line here.
BUILDERS: dict[str, Builder] = {
    "authenticator": _authenticator,
    "inspector": _inspector,
    "policy": _policy,
    "rate_limiter": _rate_limiter,
    "redactor": _redactor,
    "audit": _audit,
}


def _within(prefix: str, build: Callable[[], Any]) -> Any:
    """Run a component builder, re-keying its ConfigError issues under ``prefix``."""
    try:
        return build()
    except ConfigError as exc:
        raise ConfigError(
            [
                ConfigIssue(f"{prefix}.{issue.key}".rstrip("."), issue.message)
                for issue in exc.issues
            ]
        ) from None


def _reads_content(config: Config, components: Mapping[str, Any]) -> bool:
    """Whether a stage judges message content: redaction, inspection or JSON-RPC rules
    (configured, or a redactor or inspector given in code)."""
    rules = config.policy.rules if config.policy is not None else []
    return (
        any(components.get(role) is not None for role in ("redactor", "inspector"))
        or config.redact.enabled
        or config.inspect is not None
        or any(
            conditions is not None
            and (
                conditions.tools is not None
                or conditions.rpc_methods is not None
                or conditions.arguments is not None
            )
            for rule in rules
            for conditions in (rule.when, rule.unless)
        )
    )


def _fail_open(config: Config, components: Mapping[str, Any]) -> tuple[str, ...]:
    """The fail-open settings in force, for the ``sys_startup`` event and check-config."""
    found = []
    if config.auth.allow_anonymous and "policy" not in components:
        found.append("auth.allow_anonymous")
    if (
        config.policy is not None
        and config.policy.default == "allow"
        and "policy" not in components
    ):
        found.append("policy.default")
    if "rate_limiter" not in components:
        from secmw.ratelimit.build import fail_open_settings  # noqa: PLC0415

        found.extend(fail_open_settings(config.ratelimit))
    found.extend(anomaly_fail_open(config.anomaly))
    if config.auth.websocket.query_token:
        found.append("auth.websocket.query_token")
    if config.auth.introspection is not None and not config.auth.introspection.verify_audience:
        found.append("auth.introspection.verify_audience")
    redact = config.redact
    if redact.enabled and redact.compressed == "pass" and "redactor" not in components:
        found.append("redact.compressed")
    if (
        config.inspect is not None
        and not config.inspect.fail_closed
        and "inspector" not in components
    ):
        found.append("inspect.fail_closed")
    if config.audit.file is not None and config.audit.file.on_failure == "fail_open":
        found.append("audit.file.on_failure")
    if config.metrics.enabled and config.metrics.endpoint and config.metrics.public:
        found.append("metrics.public")
    if config.gateway is not None and config.gateway.egress.allow_networks:
        found.append("gateway.egress.allow_networks")
    gateway = config.gateway
    if gateway is not None and gateway.websockets and _reads_content(config, components):
        # Relayed websocket messages are sized and rate-limited, nothing more.
        found.append("gateway.websockets")
    if config.mcp.session_binding != "strict":
        found.append("mcp.session_binding")
    jwt = config.auth.jwt
    if jwt is not None and "exp" not in jwt.required_claims and "authenticator" not in components:
        found.append("auth.jwt.required_claims")  # tokens without exp never expire
    if any(_catch_all(pattern) for pattern in config.auth.public_paths):
        found.append("auth.public_paths")  # every path skips authentication
    if config.max_body_bytes is None:
        found.append("max_body_bytes")
    if config.websocket.max_message_bytes is None:
        found.append("websocket.max_message_bytes")
    if config.inspect is not None and config.inspect.action == "audit":
        found.append("inspect.action")  # findings are recorded, nothing is refused
    if config.audit.sink == "none":
        found.append("audit.sink")
    return tuple(found)


def _catch_all(pattern: str) -> bool:
    """A public-path pattern that matches every path (``/**``)."""
    return pattern.rstrip("*") in ("", "/") and pattern.endswith("**")


def build_pipeline(config: Config, **components: Unpack[Components]) -> Pipeline:
    """Build the :class:`Pipeline` a configuration describes.

    Keyword ``components`` (``authenticator``, ``inspector``, ``policy``,
    ``rate_limiter``, ``redactor``, ``audit``) replace the configured ones. Every
    section is built before any error is raised, so one :class:`ConfigError`
    lists all of them.
    """
    given: dict[str, Any] = dict(components)
    unknown = set(given) - set(BUILDERS)
    if unknown:
        raise TypeError(f"unknown component(s): {', '.join(sorted(unknown))}")
    issues: list[ConfigIssue] = []
    stages: dict[str, Any] = {}
    for name, builder in BUILDERS.items():
        if name in given:
            stages[name] = given[name]
            continue
        try:
            stages[name] = builder(config)
        except ConfigError as exc:
            issues.extend(exc.issues)
    if given.get("authenticator") is not None:
        # The scope filters follow [auth.websocket]: an authenticator given in code
        # must read tokens in the same places, or a token could reach the app.
        authenticator = given["authenticator"]
        try:
            _within("auth", lambda: auth_build.check_credentials(config.auth, authenticator))
        except ConfigError as exc:
            issues.extend(exc.issues)
    hooks: dict[str, Any] = {}
    try:
        hooks = pipeline_hooks(config.anomaly, config.metrics, stages.get("audit"))
    except ConfigError as exc:
        issues.extend(exc.issues)
    # Documents secmw serves itself: RFC 9728 metadata (auth) and metrics.
    endpoints = dict(auth_build.endpoints(config.auth))
    for path, endpoint in hooks.pop("endpoints", {}).items():
        if path in endpoints:
            issues.append(ConfigIssue("metrics.path", f"{path} is already served by secmw"))
        endpoints[path] = endpoint
    stages.update(hooks)
    if issues:
        raise ConfigError(issues)
    return Pipeline(
        **stages,
        context=ContextSettings(
            request_id_header=config.request_id.header,
            trust_request_id=config.request_id.trust_incoming,
            trusted_hops=config.proxy.trusted_hops,
            trusted_proxies=tuple(ipaddress.ip_network(n) for n in config.proxy.trusted_proxies),
            forwarded_header=config.proxy.forwarded_header,
            trust_unix_socket=config.proxy.trust_unix_socket,
            allow_encoded_slash=config.paths.allow_encoded_slash,
            allow_double_encoding=config.paths.allow_double_encoding,
        ),
        challenge=ChallengeSettings(
            realm=config.auth.realm, resource_metadata=auth_build.resource_metadata_url(config.auth)
        ),
        endpoints=endpoints,
        scope_filters=auth_build.scope_filters(config.auth),
        max_body_bytes=config.max_body_bytes,
        max_message_bytes=config.websocket.max_message_bytes,
        echo_request_id=config.request_id.echo,
        fail_open=_fail_open(config, given),
        mcp_sessions=(None if config.mcp.session_binding == "off" else config.mcp.session_binding),
        max_mcp_sessions=config.mcp.max_sessions,
        max_mcp_sessions_per_principal=config.mcp.max_sessions_per_principal,
    )


__all__ = [
    "AuditConfig",
    "AuthConfig",
    "ClaimNames",
    "Config",
    "JWTConfig",
    "JWTKeyConfig",
    "McpConfig",
    "PathsConfig",
    "ProxyConfig",
    "RequestIdConfig",
    "WebSocketConfig",
    "build_pipeline",
    "load_config",
    "parse_config",
]
