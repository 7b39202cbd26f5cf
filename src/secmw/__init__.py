"""secmw: composable security middleware for ASGI apps, MCP gateways and LLM-API proxies.

``app = SecurityMiddleware(app, config)`` is the one-line integration; the
components behind it (authenticator, policy, rate limiter, redactor, inspector,
audit sink, circuit breaker) each work alone behind their protocols.
"""

from secmw._headers import Headers
from secmw.anomaly import AnomalyMonitor
from secmw.asgi import SecurityMiddleware
from secmw.audit import (
    AuditEvent,
    AuditSink,
    JSONLFileSink,
    MemoryAuditSink,
    NullAuditSink,
    StreamAuditSink,
)
from secmw.auth import Authenticator, JWTAuthenticator, NoAuthenticator
from secmw.breaker import Breaker, CircuitBreaker, NoBreaker
from secmw.config import Config, build_pipeline, load_config
from secmw.context import ANONYMOUS, Finding, Principal, RequestContext
from secmw.errors import (
    AccessDenied,
    AuthenticationError,
    BadRequest,
    ComponentError,
    ConfigError,
    Denial,
    InsufficientScope,
    PayloadTooLarge,
    RateLimited,
    SecmwError,
    ServiceUnavailable,
    StepUpRequired,
)
from secmw.inspect import Inspector, NoInspector, PromptInjectionInspector, inspect_text
from secmw.metrics import SecurityMetrics
from secmw.pipeline import Pipeline
from secmw.policy import AuthenticatedPolicy, Decision, Effect, PolicyEvaluator
from secmw.ratelimit import NoRateLimiter, RateDecision, RateLimiter, TieredRateLimiter
from secmw.redact import NoRedactor, Redactor, SecretRedactor, StreamRedactor

__all__ = [
    "ANONYMOUS",
    "AccessDenied",
    "AnomalyMonitor",
    "AuditEvent",
    "AuditSink",
    "AuthenticatedPolicy",
    "AuthenticationError",
    "Authenticator",
    "BadRequest",
    "Breaker",
    "CircuitBreaker",
    "ComponentError",
    "Config",
    "ConfigError",
    "Decision",
    "Denial",
    "Effect",
    "Finding",
    "Headers",
    "Inspector",
    "InsufficientScope",
    "JSONLFileSink",
    "JWTAuthenticator",
    "MemoryAuditSink",
    "NoAuthenticator",
    "NoBreaker",
    "NoInspector",
    "NoRateLimiter",
    "NoRedactor",
    "NullAuditSink",
    "PayloadTooLarge",
    "Pipeline",
    "PolicyEvaluator",
    "Principal",
    "PromptInjectionInspector",
    "RateDecision",
    "RateLimited",
    "RateLimiter",
    "Redactor",
    "RequestContext",
    "SecmwError",
    "SecretRedactor",
    "SecurityMetrics",
    "SecurityMiddleware",
    "ServiceUnavailable",
    "StepUpRequired",
    "StreamAuditSink",
    "StreamRedactor",
    "TieredRateLimiter",
    "build_pipeline",
    "inspect_text",
    "load_config",
]
