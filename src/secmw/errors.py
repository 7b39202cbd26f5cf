"""The secmw exception hierarchy.

Two families hang off :class:`SecmwError`:

* :class:`Denial` and its subclasses are *outcomes*: a stage raises one to stop a
  request, and the pipeline turns it into a standard response (RFC 6750 challenge,
  RFC 9457 problem document, ``Retry-After``). Their ``detail`` is written by secmw,
  never copied from a third-party exception, so it is safe to show a client.
* :class:`ConfigError` and :class:`ComponentError` are *faults*: a bad configuration
  or a component that could not do its job (storage down, key unreadable).

Third-party exceptions (PyJWT, pydantic, limits, OS errors) are translated into
these at the boundary of the component that calls the library.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class SecmwError(Exception):
    """Base class of every exception secmw raises on purpose."""


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One problem in a configuration: the dotted key and what is wrong with it."""

    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.key or '<root>'}: {self.message}"


class ConfigError(SecmwError, ValueError):
    """A configuration that cannot be used; ``issues`` names every offending key."""

    def __init__(self, issues: Sequence[ConfigIssue] | str, *, source: str | None = None) -> None:
        if isinstance(issues, str):
            issues = [ConfigIssue("", issues)]
        self.issues: tuple[ConfigIssue, ...] = tuple(issues)
        self.source = source
        head = f"invalid secmw configuration{f' in {source}' if source else ''}"
        super().__init__(head + ":\n" + "\n".join(f"  {issue}" for issue in self.issues))


class ComponentError(SecmwError):
    """A component failed for reasons outside the request (storage, keys, disk)."""


class Denial(SecmwError):
    """A stage's refusal of a request; rendered by the pipeline as an HTTP response.

    ``event`` is the audit event name (OWASP logging vocabulary style) and
    ``reason`` an operator-facing explanation for the audit line. ``detail`` is the
    client-facing sentence, which must not leak internals.
    """

    status: int = 403
    title: str = "Forbidden"
    event: str = "authz_fail"
    problem_type: str = "about:blank"

    def __init__(
        self,
        detail: str | None = None,
        *,
        reason: str | None = None,
        headers: Sequence[tuple[bytes, bytes]] = (),
        rule_ids: Sequence[str] = (),
    ) -> None:
        self.detail = detail if detail is not None else self.title
        self.reason = reason if reason is not None else self.detail
        self.headers: tuple[tuple[bytes, bytes], ...] = tuple(headers)
        self.rule_ids: tuple[str, ...] = tuple(rule_ids)
        super().__init__(self.reason)


class BadRequest(Denial):
    """The request is malformed or ambiguous (400); it never reaches the app."""

    status = 400
    title = "Bad Request"
    event = "input_validation_fail"


class PayloadTooLarge(Denial):
    """The request body exceeds the configured limit (413)."""

    status = 413
    title = "Content Too Large"
    event = "input_validation_fail"


class AuthenticationError(Denial):
    """Missing or invalid credentials (RFC 6750 section 3.1).

    ``error`` is the RFC 6750 error code: ``None`` when the request carried no
    credentials (the challenge then has no ``error`` attribute), ``invalid_token``
    (401) or ``invalid_request`` (400).
    """

    status = 401
    title = "Unauthorized"
    event = "authn_login_fail"

    def __init__(
        self,
        detail: str | None = None,
        *,
        error: str | None = "invalid_token",
        reason: str | None = None,
        event: str | None = None,
        headers: Sequence[tuple[bytes, bytes]] = (),
    ) -> None:
        super().__init__(detail, reason=reason, headers=headers)
        self.error = error
        if error == "invalid_request":
            self.status = 400
            self.title = "Bad Request"
        if event is not None:
            self.event = event
        elif error is None:
            self.event = "authn_token_missing"


class InsufficientScope(Denial):
    """The token lacks a scope the resource needs (403, RFC 6750 ``insufficient_scope``)."""

    status = 403
    title = "Forbidden"
    event = "authz_fail"

    def __init__(
        self,
        scopes: Sequence[str],
        detail: str | None = None,
        *,
        reason: str | None = None,
        rule_ids: Sequence[str] = (),
    ) -> None:
        self.scopes: tuple[str, ...] = tuple(scopes)
        super().__init__(
            detail or "The access token lacks a required scope.", reason=reason, rule_ids=rule_ids
        )


class StepUpRequired(Denial):
    """Stronger or fresher user authentication is needed (401, RFC 9470)."""

    status = 401
    title = "Unauthorized"
    event = "authz_step_up_required"

    def __init__(
        self,
        *,
        acr_values: Sequence[str] = (),
        max_age: int | None = None,
        detail: str | None = None,
        reason: str | None = None,
        rule_ids: Sequence[str] = (),
    ) -> None:
        self.acr_values: tuple[str, ...] = tuple(acr_values)
        self.max_age = max_age
        super().__init__(
            detail or "A stronger or more recent authentication is required.",
            reason=reason,
            rule_ids=rule_ids,
        )


class AccessDenied(Denial):
    """The principal is known but not allowed (403)."""


class RateLimited(Denial):
    """A rate limit was exceeded (429, RFC 6585); ``retry_after`` is in seconds."""

    status = 429
    title = "Too Many Requests"
    event = "excess_rate_limit_exceeded"

    def __init__(
        self,
        retry_after: float,
        detail: str | None = None,
        *,
        problem_type: str | None = None,
        policies: Sequence[str] = (),
        reason: str | None = None,
        headers: Sequence[tuple[bytes, bytes]] = (),
    ) -> None:
        self.retry_after = max(0.0, retry_after)
        self.policies: tuple[str, ...] = tuple(policies)
        if problem_type is not None:
            self.problem_type = problem_type
        super().__init__(detail, reason=reason, headers=headers)


class ServiceUnavailable(Denial):
    """secmw cannot decide safely right now (503), e.g. a failed audit sink."""

    status = 503
    title = "Service Unavailable"
    event = "sys_unavailable"

    def __init__(
        self,
        detail: str | None = None,
        *,
        retry_after: float | None = None,
        reason: str | None = None,
        event: str | None = None,
    ) -> None:
        self.retry_after = retry_after
        if event is not None:
            self.event = event
        super().__init__(detail, reason=reason)


class UpstreamError(Denial):
    """The upstream failed or answered unusably (502); ``event`` names what happened."""

    status = 502
    title = "Bad Gateway"
    event = "upstream_fail"

    def __init__(
        self, detail: str | None = None, *, reason: str | None = None, event: str | None = None
    ) -> None:
        if event is not None:
            self.event = event
        super().__init__(detail or "The upstream service failed.", reason=reason)


class UpstreamTimeout(UpstreamError):
    """The upstream did not answer in time (504)."""

    status = 504
    title = "Gateway Timeout"
    event = "upstream_timeout"


__all__ = [
    "AccessDenied",
    "AuthenticationError",
    "BadRequest",
    "ComponentError",
    "ConfigError",
    "ConfigIssue",
    "Denial",
    "InsufficientScope",
    "PayloadTooLarge",
    "RateLimited",
    "SecmwError",
    "ServiceUnavailable",
    "StepUpRequired",
    "UpstreamError",
    "UpstreamTimeout",
]
