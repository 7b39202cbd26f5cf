"""Authorization policies."""

from secmw.policy.base import AuthenticatedPolicy, Decision, Effect, PolicyEvaluator

__all__ = ["AuthenticatedPolicy", "Decision", "Effect", "PolicyEvaluator"]
