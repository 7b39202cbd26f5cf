"""Configuration models of the policy stage (the ``policy`` section): rules as data."""

from __future__ import annotations

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


class FindingMatch(ConfigModel):
    """A finding an inspector (or another stage) reported on the request."""

    source: str | None = None
    kind: str = "*"
    min_score: float = Field(default=0.0, ge=0.0, le=1.0)


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

    @field_validator("methods")
    @classmethod
    def _upper(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
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
