"""The authorization stage's protocol, its :class:`Decision` and the default policy."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Protocol

from secmw.context import RequestContext
from secmw.errors import ConfigError, ConfigIssue
from secmw.policy.glob import NEVER_CANONICAL

# A value that is absent (a claim, a header, a tool argument), unlike ``None``.
MISSING: Any = object()


class Undecidable(Exception):
    """A condition could not be evaluated safely (a value too long for a regex, JSON
    too long to decode): the engine treats the rule as a deny, never as no match."""


class Effect(StrEnum):
    """What a decision tells the pipeline to do."""

    ALLOW = "allow"
    DENY = "deny"
    STEP_UP = "step_up"


@dataclass(frozen=True, slots=True)
class Decision:
    """An authorization outcome with the rules that produced it and why.

    ``scopes`` are the scopes the request lacked (for an RFC 6750
    ``insufficient_scope`` answer); ``acr_values`` and ``max_age`` describe a
    step-up (RFC 9470); ``obligations`` travel with the decision for the app to
    read (``ctx.decision``); secmw itself acts on ``audit`` only (the audit event's
    severity). Redaction is the ``[redact]`` section's job, not an obligation.
    """

    effect: Effect
    rule_ids: tuple[str, ...] = ()
    reason: str = ""
    scopes: tuple[str, ...] = ()
    acr_values: tuple[str, ...] = ()
    max_age: int | None = None
    obligations: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def allowed(self) -> bool:
        """True when the request may proceed."""
        return self.effect is Effect.ALLOW


class PolicyEvaluator(Protocol):
    """Protocol: decide whether the (authenticated) request may proceed.

    Set ``needs_body`` when rules look at JSON-RPC methods, tools or arguments.
    """

    needs_body: bool

    def evaluate(self, ctx: RequestContext) -> Decision:
        """Return the decision for ``ctx``; it must be explicit, never implied."""
        ...


def compile_path_patterns(
    patterns: Iterable[str], key: str
) -> tuple[frozenset[str], tuple[str, ...]]:
    """Split ``/exact`` and ``/prefix/**`` patterns into a set and a prefix tuple.

    ``/docs/**`` matches ``/docs`` and every path below it, never ``/docsx``.
    Patterns are compared with canonical paths, so they must be canonical too.
    """
    exact: set[str] = set()
    prefixes: list[str] = []
    issues: list[ConfigIssue] = []
    for index, pattern in enumerate(patterns):
        base = pattern[:-3] if pattern.endswith("/**") else pattern
        segments = base.split("/")
        if (
            not pattern.startswith("/")
            or "*" in base
            or "//" in pattern
            or any(segment in (".", "..") or ";" in segment for segment in segments)
            # Canonical paths are decoded and free of backslashes and control
            # characters: such a pattern would never match anything.
            or NEVER_CANONICAL.search(pattern) is not None
        ):
            issues.append(
                ConfigIssue(f"{key}[{index}]", f"{pattern!r} is not '/exact' or '/prefix/**'")
            )
            continue
        if pattern.endswith("/**"):
            base = base.rstrip("/")
            if not base:
                prefixes.append("/")
                continue
            exact.add(base)
            prefixes.append(base + "/")
        else:
            exact.add(pattern.rstrip("/") or "/")
    if issues:
        raise ConfigError(issues)
    return frozenset(exact), tuple(prefixes)


ALLOW_AUTHENTICATED = Decision(Effect.ALLOW, ("default:authenticated",), "authenticated")
ALLOW_PUBLIC = Decision(Effect.ALLOW, ("default:public_path",), "public path")
ALLOW_ANONYMOUS = Decision(Effect.ALLOW, ("default:anonymous_allowed",), "anonymous access allowed")
DENY_ANONYMOUS = Decision(
    Effect.DENY, ("default:authentication_required",), "authentication required"
)


class AuthenticatedPolicy:
    """The default policy: authenticated principals pass, anonymous ones do not.

    Anonymous requests pass only on ``public_paths`` or when ``allow_anonymous``
    is set (an explicit, audited fail-open). A deny for an anonymous principal
    becomes a 401 challenge, not a 403.
    """

    __slots__ = ("_allow_anonymous", "_exact", "_prefixes")
    needs_body = False

    def __init__(self, public_paths: Iterable[str] = (), *, allow_anonymous: bool = False) -> None:
        self._exact, self._prefixes = compile_path_patterns(public_paths, "public_paths")
        self._allow_anonymous = allow_anonymous

    def is_public(self, path: str) -> bool:
        """True when ``path`` (canonical) is one of the public paths."""
        return path in self._exact or path.startswith(self._prefixes)

    def evaluate(self, ctx: RequestContext) -> Decision:
        """Allow authenticated principals, public paths and, if enabled, anyone."""
        if ctx.principal.is_authenticated:
            return ALLOW_AUTHENTICATED
        if (self._prefixes or self._exact) and self.is_public(ctx.path):
            return ALLOW_PUBLIC
        if self._allow_anonymous:
            return ALLOW_ANONYMOUS
        return DENY_ANONYMOUS
