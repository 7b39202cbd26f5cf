"""Authorization policies: the default policy and the declarative rule engine."""

from secmw.policy.base import AuthenticatedPolicy, Decision, Effect, PolicyEvaluator
from secmw.policy.config import PolicyConfig, RuleConfig
from secmw.policy.engine import Explanation, PolicyEngine, RuleTrace
from secmw.policy.toolfilter import ToolListFilter

__all__ = [
    "AuthenticatedPolicy",
    "Decision",
    "Effect",
    "Explanation",
    "PolicyConfig",
    "PolicyEngine",
    "PolicyEvaluator",
    "RuleConfig",
    "RuleTrace",
    "ToolListFilter",
]
