"""Tiers compiled from configuration: which counters a request touches, and at what cost.

A tier's key is one part or several joined by ``+``; each part reads one fact of
the request context:

``global``     one counter for everyone
``principal``  the authenticated subject, within its issuer (or authentication
               method) and tenant; an anonymous caller is keyed by ``ip``
``tenant``     the principal's tenant; without one, the ``principal`` value
``ip``         ``ctx.client``: the socket peer, or the trusted proxies' client
               (never a raw ``X-Forwarded-For``); an IPv6 client counts as its /64
``route``      method and canonical path (``HEAD`` counts as ``GET``: one handler)
``tool``       each MCP ``tools/call`` name in the body; a request without one
               is not counted by the tier
``api_key``    the API key's id for an API-key principal; anyone else (a bearer
               token is a new credential with every refresh) by ``principal``

A client-chosen part longer than 128 characters (a path, a tool name) is
counted under its SHA-256, so a key's size does not grow with what a client sends.
``connection`` the websocket session (message tiers only)
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING

from limits import RateLimitItem, parse_many

from secmw.anomaly.base import client_key
from secmw.context import new_request_id
from secmw.policy.base import compile_path_patterns
from secmw.ratelimit.algorithms import GCRA, Limit

if TYPE_CHECKING:
    from secmw.context import Principal, RequestContext
    from secmw.ratelimit.config import TierConfig

Part = Callable[["RequestContext"], str]


def _ip(ctx: RequestContext) -> str:
    # One IPv6 subscriber holds a whole /64: per address, it could rotate past any limit.
    client = ctx.client
    return client_key(client) if client else "unknown"


def _principal(ctx: RequestContext) -> str:
    principal = ctx.principal
    if not principal.is_authenticated:
        return "ip:" + _ip(ctx)
    state = ctx.state
    cached: tuple[Principal, str] | None = state.get(_PRINCIPAL_KEY)
    if cached is not None and cached[0] is principal:
        return cached[1]  # a second tier of the same request
    # alice of tenant acme is not alice of globex, nor another issuer's alice.
    issuer = principal.claims.get("iss")
    source = issuer if isinstance(issuer, str) and issuer else principal.auth_method
    tenant = principal.tenant or ""
    key = "p:" + _escaped(source) + "," + _escaped(tenant) + "," + principal.subject
    state[_PRINCIPAL_KEY] = (principal, key)
    return key


_PRINCIPAL_KEY = "secmw.ratelimit.principal"


def _escaped(piece: str) -> str:
    return piece.replace("%", "%25").replace(",", "%2C") if "%" in piece or "," in piece else piece


_LONGEST_PART = 128
_DIGEST = "sha256:"


def _bounded(part: str) -> str:
    """A client-chosen key part, hashed when long (memory and Redis keys stay small)."""
    if len(part) <= _LONGEST_PART and not part.startswith(_DIGEST):
        return part  # a short one spelt like a digest is hashed too: no aliasing
    digest = hashlib.sha256(part.encode("utf-8", "surrogatepass")).hexdigest()
    return _DIGEST + digest[:32]


def _route(ctx: RequestContext) -> str:
    method = ctx.method
    return _bounded(("GET" if method == "HEAD" else method) + " " + ctx.path)


def _tenant(ctx: RequestContext) -> str:
    tenant = ctx.principal.tenant
    return "t:" + tenant if tenant is not None else _principal(ctx)


def _api_key(ctx: RequestContext) -> str:
    principal = ctx.principal
    credential = principal.credential_id
    if credential is not None and principal.auth_method == "api_key":
        return "k:" + credential
    # A bearer token's credential id (jti, digest) is new with every token: a client
    # that can mint tokens would get a fresh budget each time.
    return _principal(ctx)


def _connection(ctx: RequestContext) -> str:
    # Not the request id: a client may choose that one (X-Request-Id, when trusted)
    # and share another session's budget. One id per context, made here.
    state = ctx.state
    key: str | None = state.get(_CONNECTION)
    if key is None:
        key = state[_CONNECTION] = new_request_id()
    return key


_CONNECTION = "secmw.ratelimit.connection"
# Key parts only the caller can fill. A tier without any counts several callers
# together, and one of them can fill it for the others: a tenant's members, and
# everyone behind one address too (an office NAT, carrier-grade NAT, an IPv6 /64).
# ``ip+principal`` is the caller's own: its principal part keeps other users out.
_OWN_PARTS = frozenset({"principal", "api_key", "connection"})

PARTS: dict[str, Part] = {
    "global": lambda ctx: "*",
    "principal": _principal,
    "tenant": _tenant,
    "ip": _ip,
    "route": _route,
    "api_key": _api_key,
    "connection": _connection,
}


def compile_limits(
    tier: str,
    rate: str,
    algorithm: str,
    burst: int | None,
    shadow: bool,
    *,
    shared: bool = False,
) -> tuple[Limit, ...]:
    """The :class:`Limit` of every window in ``rate`` (``limits`` parses the string)."""
    items: list[RateLimitItem] = parse_many(rate)
    several = len(items) > 1
    limits = []
    for item in items:
        window = float(item.get_expiry())
        seconds = math.ceil(window)
        policy = f"{tier}-{seconds}s" if several else tier
        limits.append(
            Limit(
                tier=tier,
                slot=f"{tier}:{seconds}",
                policy=policy,
                algorithm=algorithm,
                amount=item.amount,
                window=window,
                burst=(burst or item.amount) if algorithm == GCRA else item.amount,
                shadow=shadow,
                descriptor=f'"{policy}";q={item.amount};w={seconds}',
                shared=shared,
            )
        )
    return tuple(limits)


class Tier:
    """One configured tier, ready to turn a request into ``(limit, key, cost)`` checks."""

    __slots__ = (
        "_exempt_prefixes",
        "_exempt_roles",
        "_exempt_routes",
        "_exempt_subjects",
        "_has_exemptions",
        "_has_route_costs",
        "_parts",
        "_route_costs",
        "_route_prefixes",
        "cost",
        "limits",
        "messages",
        "name",
        "plans",
        "shadow",
        "simple",
        "tool_costs",
        "uses_tool",
    )

    def __init__(self, config: TierConfig) -> None:
        self.name = config.name
        parts = config.key.split("+")
        self.uses_tool = "tool" in parts
        self._parts = tuple(PARTS[part] for part in parts if part != "tool")
        self.shadow = config.shadow
        self.messages = config.applies_to == "messages"
        shared = _OWN_PARTS.isdisjoint(parts)
        self.limits = compile_limits(
            config.name, config.rate, config.algorithm, config.burst, config.shadow, shared=shared
        )
        self.plans = {
            plan: compile_limits(
                config.name, rate, config.algorithm, config.burst, config.shadow, shared=shared
            )
            for plan, rate in config.plans.items()
        }
        self.cost = config.cost
        self.tool_costs = dict(config.costs.tools)
        compile_path_patterns(config.costs.routes, "costs.routes")  # names a bad entry
        # Whatever order the table lists them in: an ``/exact`` entry beats the
        # base of a ``/prefix/**`` one, and a longer prefix beats a shorter one
        # (``"/api/**" = 1`` must not undercut ``"/api/export/**" = 10``).
        self._route_costs: dict[str, int] = {}
        bases: dict[str, int] = {}
        prefixes: list[tuple[str, int]] = []
        for pattern, cost in config.costs.routes.items():
            exact, starts = compile_path_patterns([pattern], "costs.routes")
            (bases if starts else self._route_costs).update(dict.fromkeys(exact, cost))
            prefixes.extend((start, cost) for start in starts)
        for base, cost in bases.items():
            self._route_costs.setdefault(base, cost)
        prefixes.sort(key=lambda entry: len(entry[0]), reverse=True)
        self._route_prefixes = tuple(prefixes)
        self._exempt_subjects = frozenset(config.exempt.principals)
        self._exempt_roles = frozenset(config.exempt.roles)
        self._exempt_routes, self._exempt_prefixes = compile_path_patterns(
            config.exempt.routes, "exempt.routes"
        )
        self._has_exemptions = bool(
            self._exempt_subjects or self._exempt_roles or config.exempt.routes
        )
        self._has_route_costs = bool(config.costs.routes)
        simple = (
            len(self._parts) == 1
            and not self.uses_tool
            and not self.tool_costs
            and not self._has_exemptions
            and not self._has_route_costs
        )
        # The key part of a tier with one part and one constant cost, else None.
        self.simple: Part | None = self._parts[0] if simple else None

    def exempt(self, ctx: RequestContext) -> bool:
        """True when the tier does not count this request at all."""
        principal = ctx.principal
        if principal.is_authenticated and (
            principal.subject in self._exempt_subjects
            or (self._exempt_roles and not self._exempt_roles.isdisjoint(principal.roles))
        ):
            return True
        path = ctx.path
        return path in self._exempt_routes or path.startswith(self._exempt_prefixes)

    def limits_for(self, ctx: RequestContext) -> tuple[Limit, ...]:
        """The plan's limits for the principal's ``tier``; the default rate otherwise."""
        plan = ctx.principal.tier
        if plan is not None and self.plans:
            return self.plans.get(plan, self.limits)
        return self.limits

    def base_cost(self, ctx: RequestContext) -> int:
        """The request's cost from the per-route table, else the tier's constant."""
        path = ctx.path
        cost = self._route_costs.get(path)
        if cost is not None:
            return cost
        for prefix, prefix_cost in self._route_prefixes:
            if path.startswith(prefix):
                return prefix_cost
        return self.cost

    def keys(self, ctx: RequestContext) -> list[tuple[Hashable, int]]:
        """The counter keys this request touches, with their costs (empty: not counted)."""
        if self.simple is not None:  # one key part, one constant cost: most tiers
            return [((self.simple(ctx),), self.cost)]
        if self._has_exemptions and self.exempt(ctx):
            return []
        parts = self._parts
        base = (parts[0](ctx),) if len(parts) == 1 else tuple(part(ctx) for part in parts)
        cost = self.base_cost(ctx) if self._has_route_costs else self.cost
        if self.uses_tool:
            per_tool: dict[str, int] = {}
            for tool in ctx.tools:
                per_tool[tool] = per_tool.get(tool, 0) + self.tool_costs.get(tool, cost)
            return [((*base, "tool:" + _bounded(tool)), total) for tool, total in per_tool.items()]
        if self.tool_costs:
            tools = ctx.tools
            if tools:
                cost = sum(self.tool_costs.get(tool, cost) for tool in tools)
        return [(base, cost)]
