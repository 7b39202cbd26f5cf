"""The public API is deliberate: pinned here, sorted, and every name documented."""

from __future__ import annotations

import inspect

import secmw

EXPECTED = [
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


def test_all_is_pinned_and_sorted() -> None:
    assert secmw.__all__ == EXPECTED
    assert secmw.__all__ == sorted(secmw.__all__)


def test_every_public_name_exists_and_has_a_docstring() -> None:
    for name in secmw.__all__:
        value = getattr(secmw, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert inspect.getdoc(value), name


def test_py_typed_ships() -> None:
    from importlib.resources import files

    assert files("secmw").joinpath("py.typed").is_file()
