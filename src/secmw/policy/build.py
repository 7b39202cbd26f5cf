"""Building the configured policy stage."""

from __future__ import annotations

from collections.abc import Callable

from secmw.auth.config import AuthConfig
from secmw.errors import ConfigError, ConfigIssue
from secmw.policy.base import AuthenticatedPolicy, PolicyEvaluator, compile_path_patterns
from secmw.policy.config import PolicyConfig
from secmw.policy.engine import PolicyEngine


def build_policy(
    policy: PolicyConfig | None, auth: AuthConfig, clock: Callable[[], float] | None = None
) -> PolicyEvaluator:
    """The rule engine when a ``policy`` section exists, else the default policy.

    ``auth.public_paths`` become an implicit first allow rule of the engine.
    ``auth.allow_anonymous`` is refused next to rules: with rules, anonymous
    access is granted by a rule, visibly, not by a switch.
    """
    try:
        compile_path_patterns(auth.public_paths, "public_paths")
    except ConfigError as exc:
        raise ConfigError([ConfigIssue(f"auth.{i.key}", i.message) for i in exc.issues]) from None
    if policy is None:
        return AuthenticatedPolicy(auth.public_paths, allow_anonymous=auth.allow_anonymous)
    if auth.allow_anonymous:
        raise ConfigError(
            [
                ConfigIssue(
                    "auth.allow_anonymous", "not allowed with policy rules; write an allow rule"
                )
            ]
        )
    try:
        if clock is None:
            return PolicyEngine.from_config(policy, public_paths=auth.public_paths)
        return PolicyEngine.from_config(policy, public_paths=auth.public_paths, clock=clock)
    except ConfigError as exc:
        raise ConfigError([ConfigIssue(f"policy.{i.key}", i.message) for i in exc.issues]) from None
