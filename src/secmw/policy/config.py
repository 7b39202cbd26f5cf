"""Configuration models of the policy stage (the ``policy`` section): rules as data."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from secmw._config_base import ConfigModel


class ValueMatch(ConfigModel):
    """One test on a value: exactly one of the keys is set.

    ``equals`` and ``in`` compare exactly, ``prefix`` on strings, ``regex`` searches
    (anchor with ``^``/``$``) with a backtracking-safe pattern, ``contains`` tests a
    list (or a space-separated string) for a member, ``present`` tests existence.
    """

    equals: str | int | float | bool | None = None
    in_: list[str | int | float | bool] | None = Field(default=None, alias="in")
    prefix: str | None = None
    regex: str | None = None
    contains: str | None = None
    present: bool | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> ValueMatch:
        if len(self.model_fields_set) != 1:
            raise ValueError("give exactly one of equals, in, prefix, regex, contains, present")
        return self


class TimeWindow(ConfigModel):
    """Days of the week and a time-of-day range, in a time zone."""

    days: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] | None = None
    between: str | None = Field(default=None, pattern=r"^\d\d:\d\d-\d\d:\d\d$")
    tz: str = "UTC"

    @field_validator("between")
    @classmethod
    def _not_empty(cls, value: str | None) -> str | None:
        if value is not None and value[:5] == value[6:]:
            raise ValueError("an empty window (start equals end) never matches")
        return value


class FindingMatch(ConfigModel):
    """A finding an inspector (or another stage) reported on the request."""

    source: str | None = None
    kind: str = "*"
    min_score: float = Field(default=0.0, ge=0.0, le=1.0)


# RFC 9110 token: what a method is made of.
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# A scheme, path, user info or port (after an optional [IPv6] literal).
_NOT_A_HOST = re.compile(r"[/@]|^(?:\[[^\]]*\]|[^:\[]*):")
_LISTS = (
    "subjects",
    "tenants",
    "roles_any",
    "roles_all",
    "scopes_any",
    "scopes_all",
    "tiers",
    "auth_methods",
    "acr",
    "amr_any",
    "methods",
    "paths",
    "hosts",
    "client_ips",
    "rpc_methods",
    "tools",
    "findings",
)


class Conditions(ConfigModel):
    """Conditions of a rule; all the given ones must hold (lists mean any-of)."""

    # principal
    authenticated: bool | None = None
    subjects: list[str] | None = None
    tenants: list[str] | None = None
    roles_any: list[str] | None = None
    roles_all: list[str] | None = None
    scopes_any: list[str] | None = None
    scopes_all: list[str] | None = None
    tiers: list[str] | None = None
    auth_methods: list[str] | None = None
    acr: list[str] | None = None
    amr_any: list[str] | None = None
    claims: dict[str, ValueMatch] | None = None
    # request
    methods: list[str] | None = None
    paths: list[str] | None = None
    path_params: dict[str, ValueMatch] | None = None
    principal_matches_path: dict[str, str] | None = None
    hosts: list[str] | None = None
    client_ips: list[str] | None = None
    headers: dict[str, ValueMatch] | None = None
    time: TimeWindow | None = None
    transport: Literal["http", "websocket"] | None = None
    # MCP / JSON-RPC
    rpc_methods: list[str] | None = None
    tools: list[str] | None = None
    arguments: dict[str, ValueMatch] | None = None
    # inspection
    findings: list[FindingMatch] | None = None

    @field_validator(*_LISTS)
    @classmethod
    def _not_empty(cls, value: list[Any] | None) -> list[Any] | None:
        # An empty any-of list never matches (an all-of one always does): a rule
        # that silently never applies is a config error, not a policy.
        if value is not None and not value:
            raise ValueError("an empty list: leave the key out instead")
        return value

    @field_validator("hosts")
    @classmethod
    def _bare_hosts(cls, value: list[str] | None) -> list[str] | None:
        for host in value or ():
            if _NOT_A_HOST.search(host):
                raise ValueError(
                    f"{host!r}: a host name glob only (the port, scheme and path of"
                    " the request are not part of what it matches)"
                )
        # "admin.example.com." names the same host; requests are compared without it.
        return [host[:-1] if host.endswith(".") else host for host in value or ()] or value

    @field_validator("methods")
    @classmethod
    def _upper(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        for method in value:
            if method == "*" or not _TOKEN.fullmatch(method):
                raise ValueError(
                    f"{method!r} is not an HTTP method (leave methods out to match any)"
                )
        methods = [method.upper() for method in value]
        # Servers answer HEAD with the GET handler (Starlette, Django, Flask...): the
        # handler runs and its headers go out, so a rule on GET must judge HEAD too.
        if "GET" in methods and "HEAD" not in methods:
            methods.append("HEAD")
        return methods


class RuleConfig(ConfigModel):
    """One rule: an id, an effect, conditions (``when``) and exceptions (``unless``)."""

    id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:\-]+$")
    effect: Literal["allow", "deny", "step_up"]
    when: Conditions = Field(default_factory=Conditions)
    unless: Conditions | None = None
    reason: str | None = Field(default=None, max_length=256)
    scopes: list[str] = Field(default_factory=list)
    acr_values: list[str] = Field(default_factory=list)
    max_age: int | None = Field(default=None, ge=0)
    amr_mfa: list[str] | None = None
    obligations: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _effect_fields(self) -> RuleConfig:
        if self.effect == "step_up" and not self.acr_values and self.max_age is None:
            raise ValueError("a step_up rule needs acr_values or max_age")
        if self.effect != "step_up" and (self.acr_values or self.max_age is not None):
            raise ValueError("acr_values and max_age belong to step_up rules")
        if self.scopes and self.effect != "deny":
            raise ValueError("scopes (for insufficient_scope answers) belong to deny rules")
        audit = self.obligations.get("audit")
        if audit is not None and audit not in ("info", "warning", "error", "critical"):
            raise ValueError("obligations.audit must be info, warning, error or critical")
        return self


class PolicyConfig(ConfigModel):
    """The rule set and how rule outcomes combine."""

    combining: Literal["deny_overrides", "first_applicable"] = "deny_overrides"
    default: Literal["deny", "allow"] = "deny"
    rules: list[RuleConfig] = Field(default_factory=list)
    filter_tools_list: bool = True

    @model_validator(mode="after")
    def _unique_ids(self) -> PolicyConfig:
        seen: set[str] = set()
        for rule in self.rules:
            if rule.id in seen:
                raise ValueError(f"rule id {rule.id!r} is used twice")
            seen.add(rule.id)
        return self
