"""The rule engine: compiled rules, an index, and the two combining algorithms.

``deny_overrides`` (the default): any applicable deny wins, then any unmet
step-up, then any allow; nothing applicable gives the default (deny).
``first_applicable``: the first applicable rule, in file order, decides.

A JSON-RPC batch is judged call by call and refused whole when any call is
refused. Rules are indexed by method, first path segment, tool name and role, so
a request only visits the rules that could apply to it; conditions the index
cannot use (claims, headers, arguments, ...) are checked rule by rule.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from secmw._jsonrpc import RpcCall
from secmw.auth.stepup import MFA_AMR_VALUES, step_up_needed
from secmw.context import RequestContext
from secmw.errors import ConfigError, ConfigIssue
from secmw.policy.base import Decision, Effect, Undecidable, compile_path_patterns
from secmw.policy.conditions import Check, compile_conditions
from secmw.policy.config import PolicyConfig, RuleConfig
from secmw.policy.glob import compile_path_glob, is_literal_name
from secmw.policy.toolfilter import ToolListFilter

_ANY = None
MEMO_SIZE = 4096
IndexKey = tuple[str | None, str | None, str | None, frozenset[str]]


@dataclass(slots=True)
class Rule:
    """A compiled rule."""

    id: str
    effect: Effect
    when: list[Check]
    unless: list[Check]
    decision: Decision
    acr_values: tuple[str, ...] = ()
    max_age: int | None = None
    mfa_amr: frozenset[str] = MFA_AMR_VALUES
    methods: frozenset[str] | None = None
    segments: frozenset[str] | None = None
    tools: frozenset[str] | None = None
    roles: frozenset[str] | None = None
    listing: Rule | None = None  # this rule as judged when listing tools (no arguments)

    @property
    def static(self) -> bool:
        """True when the outcome depends only on what the engine's memo keys on."""
        return self.effect is not Effect.STEP_UP and all(
            check.static for check in (*self.when, *self.unless)
        )

    def applies(self, ctx: RequestContext, call: RpcCall | None, now: float) -> bool:
        """True when the conditions hold, the exceptions do not, and (step-up) it is unmet."""
        for check in self.when:
            if not check.test(ctx, call):
                return False
        if self.unless and all(check.test(ctx, call) for check in self.unless):
            return False
        if self.effect is Effect.STEP_UP:
            return step_up_needed(
                ctx.principal,
                acr_values=self.acr_values,
                max_age=self.max_age,
                now=now,
                mfa_amr=self.mfa_amr,
            )
        return True


@dataclass(frozen=True, slots=True)
class RuleTrace:
    """How one rule fared for a request: applied, or the first condition that failed."""

    rule_id: str
    effect: str
    applied: bool
    failed: str | None


@dataclass(frozen=True, slots=True)
class Explanation:
    """The decision for a request and how every rule fared (``secmw policy explain``)."""

    decision: Decision
    traces: tuple[RuleTrace, ...]


def _default(effect: str) -> Decision:
    if effect == "allow":
        return Decision(Effect.ALLOW, ("policy:default",), "no rule applied; default allow")
    return Decision(Effect.DENY, ("policy:default",), "no rule applied; default deny")


def _first_segment(path: str) -> str:
    return path[1:].split("/", 1)[0]


class PolicyEngine:
    """Evaluates compiled rules; satisfies the ``PolicyEvaluator`` protocol."""

    def __init__(
        self,
        rules: Sequence[Rule],
        *,
        combining: str = "deny_overrides",
        default: str = "deny",
        clock: Callable[[], float] = time.time,
        filter_tools_list: bool = True,
    ) -> None:
        self.rules = tuple(rules)
        self.filter_tools_list = filter_tools_list
        self.combining = combining
        self.default = _default(default)
        self.clock = clock
        self.needs_body = any(
            check.needs_body for rule in self.rules for check in (*rule.when, *rule.unless)
        )
        self._known_methods = frozenset(m for r in self.rules if r.methods for m in r.methods)
        self._known_segments = frozenset(s for r in self.rules if r.segments for s in r.segments)
        self._known_tools = frozenset(t for r in self.rules if r.tools for t in r.tools)
        self._known_roles = frozenset(x for r in self.rules if r.roles for x in r.roles)
        self._index: dict[IndexKey, tuple[Rule, ...]] = {}
        # Candidate sets made only of static rules (see Rule.static), by index key.
        self._static: dict[IndexKey, bool] = {}
        # Decisions of static candidate sets, by everything their rules read; bounded,
        # oldest entry first out, because paths and role sets come from clients.
        self._memo: dict[tuple[Any, ...], Decision] = {}
        self.memo_size = MEMO_SIZE

    @classmethod
    def from_config(
        cls,
        config: PolicyConfig,
        *,
        public_paths: Iterable[str] = (),
        clock: Callable[[], float] = time.time,
    ) -> PolicyEngine:
        """Compile a ``policy`` section; errors name ``rules[i].<key>``."""
        issues: list[ConfigIssue] = []
        rules: list[Rule] = []
        public = list(public_paths)
        if public:
            compile_path_patterns(public, "public_paths")
            implicit = RuleConfig.model_validate(
                {
                    "id": "auth.public_paths",
                    "effect": "allow",
                    "when": {"paths": _as_globs(public)},
                    "reason": "public path",
                }
            )
            try:
                rules.append(compile_rule(implicit, "auth.public_paths", clock))
            except ConfigError as exc:
                issues.extend(exc.issues)
        for index, rule in enumerate(config.rules):
            try:
                rules.append(compile_rule(rule, f"rules[{index}]", clock))
            except ConfigError as exc:
                issues.extend(exc.issues)
        if issues:
            raise ConfigError(issues)
        return cls(
            rules,
            combining=config.combining,
            default=config.default,
            clock=clock,
            filter_tools_list=config.filter_tools_list,
        )

    # -- evaluation ------------------------------------------------------------

    def evaluate(self, ctx: RequestContext) -> Decision:
        """Decide the request; a batch is refused whole if any call is refused."""
        now = self.clock()
        if not ctx.rpc:
            return self._decide(ctx, None, now)
        allowed: list[Decision] = []
        for call in ctx.rpc:
            if call.method is None:
                continue  # a response to a server request carries no action to authorize
            decision = self._decide(ctx, call, now)
            if not decision.allowed:
                return decision
            allowed.append(decision)
        if not allowed:
            return self._decide(ctx, None, now)
        if len(allowed) == 1:
            return allowed[0]
        ids = tuple(dict.fromkeys(rule_id for d in allowed for rule_id in d.rule_ids))
        return Decision(Effect.ALLOW, ids, "every call of the batch is allowed")

    def _decide(self, ctx: RequestContext, call: RpcCall | None, now: float) -> Decision:
        try:
            rules, index_key = self._lookup(ctx, call)
            if self._static[index_key]:
                return self._remembered(rules, index_key, ctx, call, now)
            return self._combine(rules, ctx, call, now)
        except Undecidable as exc:
            return Decision(
                Effect.DENY, ("policy:undecidable",), f"a rule could not be evaluated: {exc}"
            )

    def _remembered(
        self,
        rules: Sequence[Rule],
        index_key: IndexKey,
        ctx: RequestContext,
        call: RpcCall | None,
        now: float,
    ) -> Decision:
        """``_combine`` for static rules, through the memo (keyed on all they read)."""
        principal = ctx.principal
        # Every field a static check reads: the index key holds the method only when
        # a ``when`` names it, and an ``unless`` may name others.
        memo_key = (
            index_key,
            ctx.method,
            ctx.path,
            ctx.transport,
            principal.is_authenticated,
            principal.roles,
            call.method if call is not None else None,
            call.tool if call is not None else None,
        )
        memo = self._memo
        decision = memo.get(memo_key)
        if decision is None:
            decision = self._combine(rules, ctx, call, now)
            if len(memo) >= self.memo_size:
                del memo[next(iter(memo))]
            memo[memo_key] = decision
        return decision

    def _combine(
        self, rules: Sequence[Rule], ctx: RequestContext, call: RpcCall | None, now: float
    ) -> Decision:
        if self.combining == "first_applicable":
            for rule in rules:
                if rule.applies(ctx, call, now):
                    return rule.decision
            return self.default
        step_up: Rule | None = None
        allows: list[Rule] = []
        for rule in rules:
            if rule.effect is Effect.ALLOW and allows and not rule.decision.obligations:
                continue  # one allow is enough; only a deny, a step-up or an obligation matters
            if not rule.applies(ctx, call, now):
                continue
            if rule.effect is Effect.DENY:
                return rule.decision
            if rule.effect is Effect.STEP_UP:
                step_up = step_up or rule
            else:
                allows.append(rule)
        if step_up is not None:
            return step_up.decision
        if len(allows) == 1:
            return allows[0].decision
        if allows:
            return _merge_allows(allows)
        return self.default

    def _candidates(self, ctx: RequestContext, call: RpcCall | None) -> tuple[Rule, ...]:
        return self._lookup(ctx, call)[0]

    def _lookup(
        self, ctx: RequestContext, call: RpcCall | None
    ) -> tuple[tuple[Rule, ...], IndexKey]:
        """The rules that could apply to the request, and their index key."""
        method = ctx.method if ctx.method in self._known_methods else _ANY
        segment = _first_segment(ctx.path)
        segment_key = segment if segment in self._known_segments else _ANY
        tool = call.tool if call is not None else None
        tool_key = tool if tool in self._known_tools else _ANY
        roles = self._known_roles & ctx.principal.roles if self._known_roles else frozenset()
        key = (method, segment_key, tool_key, roles)
        found = self._index.get(key)
        if found is None:
            # Unknown values collapse to None and roles to the configured ones, so the
            # cache is bounded by the configuration, not by what clients send.
            found = tuple(
                rule
                for rule in self.rules
                if (rule.methods is None or method in rule.methods)
                and (rule.segments is None or segment_key in rule.segments)
                and (rule.tools is None or tool_key in rule.tools)
                and (rule.roles is None or not rule.roles.isdisjoint(roles))
            )
            self._index[key] = found
            self._static[key] = all(rule.static for rule in found)
        return found, key

    # -- explain and tool listing -----------------------------------------------

    def response_filter(self, ctx: RequestContext) -> ToolListFilter | None:
        """A filter for this request's response when it lists tools (see visible_tools)."""
        if not self.filter_tools_list:
            return None
        ids = [c.id for c in ctx.rpc if c.method == "tools/list" and c.id is not None]
        if not ids:
            return None
        return ToolListFilter(ids, lambda names: self.visible_tools(ctx, names))

    def explain(self, ctx: RequestContext) -> Explanation:
        """The decision and, for every rule in order, whether it applied and why not."""
        traces: list[RuleTrace] = []
        now = self.clock()
        calls: Sequence[RpcCall | None] = [c for c in ctx.rpc if c.method is not None] or [None]
        for rule in self.rules:
            for call in calls:
                failed = _first_failure(rule, ctx, call, now)
                traces.append(RuleTrace(rule.id, rule.effect.value, failed is None, failed))
        return Explanation(self.evaluate(ctx), tuple(traces))

    def visible_tools(self, ctx: RequestContext, names: Iterable[str]) -> set[str]:
        """The tool names the principal could call, for filtering ``tools/list``.

        Arguments are unknown when listing, so argument conditions count as met
        for allow rules and as unmet for deny and step-up rules: a tool stays
        visible when some call to it could be allowed. A tool behind step-up stays
        visible (the client can step up).
        """
        now = self.clock()
        visible: set[str] = set()
        for name in names:
            call = RpcCall("tools/call", None, {"name": name}, name, None)
            decision = self._combine_listing(self._candidates(ctx, call), ctx, call, now)
            if decision.effect is not Effect.DENY:
                visible.add(name)
        return visible

    def _combine_listing(
        self, rules: Sequence[Rule], ctx: RequestContext, call: RpcCall, now: float
    ) -> Decision:
        try:
            listing = [rule.listing or rule for rule in rules]
            return self._combine(listing, ctx, call, now)
        except Undecidable:
            return Decision(Effect.DENY, ("policy:undecidable",), "undecidable")


_SEVERITY = ("info", "warning", "error", "critical")


def _merge_allows(allows: Sequence[Rule]) -> Decision:
    """One allow carrying every applicable rule's obligations (the highest audit level)."""
    obligations: dict[str, Any] = {}
    for rule in allows:
        for key, value in rule.decision.obligations.items():
            if key == "audit" and key in obligations:
                obligations[key] = max(value, obligations[key], key=_SEVERITY.index)
            elif key not in obligations:
                obligations[key] = value
    first = allows[0].decision
    return Decision(
        Effect.ALLOW,
        tuple(rule.id for rule in allows),
        first.reason,
        obligations=MappingProxyType(obligations),
    )


def _first_failure(rule: Rule, ctx: RequestContext, call: RpcCall | None, now: float) -> str | None:
    try:
        for check in rule.when:
            if not check.test(ctx, call):
                return check.name
        if rule.unless and all(check.test(ctx, call) for check in rule.unless):
            return "unless (all exceptions hold)"
    except Undecidable as exc:
        return f"undecidable: {exc}"
    if rule.effect is Effect.STEP_UP and not rule.applies(ctx, call, now):
        return "step-up requirement already met"
    return None


def _as_globs(public_paths: Iterable[str]) -> list[str]:
    return [path.rstrip("/") or "/" if not path.endswith("/**") else path for path in public_paths]


def _TRUE(ctx: RequestContext, call: RpcCall | None) -> bool:  # noqa: N802 - a constant
    return True


def _FALSE(ctx: RequestContext, call: RpcCall | None) -> bool:  # noqa: N802 - a constant
    return False


def _listing_checks(checks: list[Check], effect: Effect, *, exceptions: bool) -> list[Check]:
    """Argument conditions become constants when listing tools (see visible_tools)."""
    met = effect is Effect.ALLOW
    if exceptions:
        met = not met
    result = []
    for check in checks:
        if check.uses_arguments:
            result.append(Check(check.name, _TRUE if met else _FALSE))
        else:
            result.append(check)
    return result


def compile_rule(rule: RuleConfig, key: str, clock: Callable[[], float] = time.time) -> Rule:
    """Compile one rule; errors name ``key``."""
    allows = rule.effect == "allow"
    when = compile_conditions(rule.when, f"{key}.when", clock=clock, granting=allows)
    exceptions = rule.unless
    if (
        exceptions is not None
        and exceptions.paths is None
        and (exceptions.path_params or exceptions.principal_matches_path)
    ):
        # Parameters captured by the rule's own paths may be tested in `unless`.
        exceptions = exceptions.model_copy(update={"paths": rule.when.paths})
    unless = (
        compile_conditions(exceptions, f"{key}.unless", clock=clock, granting=not allows)
        if exceptions
        else []
    )
    effect = Effect(rule.effect)
    reason = rule.reason or f"rule {rule.id} ({rule.effect})"
    decision = Decision(
        effect,
        (rule.id,),
        reason,
        scopes=tuple(rule.scopes),
        acr_values=tuple(rule.acr_values),
        max_age=rule.max_age,
        obligations=MappingProxyType(dict(rule.obligations)),
    )
    conditions = rule.when
    segments = None
    if conditions.paths:
        firsts = [compile_path_glob(p).first_segment for p in conditions.paths]
        if all(first is not None for first in firsts):
            segments = frozenset(f for f in firsts if f is not None)
    tools = None
    if conditions.tools and all(is_literal_name(t) for t in conditions.tools):
        tools = frozenset(conditions.tools)
    compiled = Rule(
        id=rule.id,
        effect=effect,
        when=when,
        unless=unless,
        decision=decision,
        acr_values=tuple(rule.acr_values),
        max_age=rule.max_age,
        mfa_amr=frozenset(rule.amr_mfa) if rule.amr_mfa is not None else MFA_AMR_VALUES,
        methods=frozenset(conditions.methods) if conditions.methods else None,
        segments=segments,
        tools=tools,
        roles=frozenset(conditions.roles_any) if conditions.roles_any else None,
    )
    compiled.listing = Rule(
        compiled.id,
        effect,
        _listing_checks(when, effect, exceptions=False),
        _listing_checks(unless, effect, exceptions=True),
        decision,
        compiled.acr_values,
        compiled.max_age,
        compiled.mfa_amr,
    )
    return compiled


__all__ = ["Explanation", "PolicyEngine", "Rule", "RuleTrace", "compile_rule"]
