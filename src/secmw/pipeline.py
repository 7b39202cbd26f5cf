"""The pipeline: the one place that knows the order of the stages.

For one request::

    context      RequestContext.from_scope      (400 for an unsafe path)
    guard        Guard.before                   (anomaly blocks by client address)
    authenticate Authenticator.authenticate     (401 / 400)
    guard        Guard.after_authentication     (anomaly blocks / step-ups by principal)
    inspect      Inspector.inspect              (findings only)
    authorize    PolicyEvaluator.evaluate       (401 challenge / 403 / step-up 401)
    sessions     SessionBinding.check           (404 for another principal's MCP session)
    throttle     RateLimiter.hit                (429 + Retry-After)
    call         the app or upstream            (adapter's job)
    redact       Redactor on the response body  (adapter's job, via ``redactor``)
    record       AuditSink.emit                 (one event per request; observers see it first)

A stage that is switched off is ``None`` and costs nothing. A stage that fails
with anything but a :class:`~secmw.errors.Denial` fails closed: the request gets a
503 and the audit line names the stage, never the exception's message.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any, Protocol, TypedDict

import anyio

from secmw._contract import check_audit_sink, check_component, checked, sole_denial
from secmw._responses import ChallengeSettings, Header, render_denial
from secmw.audit.base import AuditEvent, AuditSink
from secmw.audit.format import bind_request, unbind_request
from secmw.auth.base import Authenticator
from secmw.context import ECHOES, NESTED, ContextSettings, Finding, Principal, RequestContext
from secmw.errors import (
    AccessDenied,
    AuthenticationError,
    ComponentError,
    Denial,
    InsufficientScope,
    RateLimited,
    ServiceUnavailable,
    StepUpRequired,
)
from secmw.hooks import SCREENED, Endpoint, Guard, NoGuard, Observer
from secmw.inspect.base import Inspector
from secmw.policy.base import AuthenticatedPolicy, Decision, Effect, PolicyEvaluator
from secmw.policy.sessions import SessionBinding, SessionMode
from secmw.ratelimit.base import MessageRateLimiter, RateDecision, RateLimiter
from secmw.redact.base import ChainedTransform, Redactor
from secmw.redact.paths import path_for_audit

DEFAULT_MAX_BODY_BYTES = 1024 * 1024


# Where a secret can hide in a path: a run of 16 token characters, an escape, a
# URL's user information, a "key=value" or "key: value", words apart. Other paths
# skip the scan (it costs a few microseconds per event).
_MAY_HIDE = re.compile(r"[A-Za-z0-9_+=.~-]{16}|[%@=: ]")


def _for_audit(redactor: Redactor, value: str | None) -> str | None:
    if value is None or _MAY_HIDE.search(value) is None:
        return value
    return path_for_audit(redactor, value)


class Components(TypedDict, total=False):
    """Components that replace the configured ones (``SecurityMiddleware(app, config, **c)``)."""

    authenticator: Authenticator | None
    inspector: Inspector | None
    policy: PolicyEvaluator | None
    rate_limiter: RateLimiter | None
    redactor: Redactor | None
    audit: AuditSink | None


class Pipeline:
    """Runs the request stages in order and turns outcomes into responses.

    Built once (from a :class:`~secmw.config.Config` by
    :func:`~secmw.config.build_pipeline`, or by hand); every per-request method
    takes a :class:`RequestContext` and keeps no request state on ``self``.
    """

    __slots__ = (
        "_audit_gate",
        "_lifespans",
        "_message_limiter",
        "_request_id_header",
        "_response_filter",
        "_started",
        "audit",
        "authenticator",
        "challenge",
        "clock",
        "context_settings",
        "endpoints",
        "fail_open",
        "guard",
        "http_scope_filters",
        "inspector",
        "max_body_bytes",
        "max_message_bytes",
        "max_response_buffer",
        "needs_body",
        "observers",
        "policy",
        "rate_limiter",
        "redactor",
        "scope_filters",
        "sessions",
    )

    def __init__(
        self,
        *,
        authenticator: Authenticator | None = None,
        inspector: Inspector | None = None,
        policy: PolicyEvaluator | None = None,
        rate_limiter: RateLimiter | None = None,
        redactor: Redactor | None = None,
        audit: AuditSink | None = None,
        context: ContextSettings | None = None,
        challenge: ChallengeSettings | None = None,
        max_body_bytes: int | None = DEFAULT_MAX_BODY_BYTES,
        max_response_buffer: int = 8 * 1024 * 1024,
        max_message_bytes: int | None = DEFAULT_MAX_BODY_BYTES,
        echo_request_id: bool = True,
        fail_open: tuple[str, ...] = (),
        clock: Callable[[], float] = time.time,
        observers: tuple[Observer, ...] = (),
        guard: Guard | None = None,
        endpoints: Mapping[str, Endpoint] | None = None,
        scope_filters: tuple[Callable[[MutableMapping[str, Any]], None], ...] = (),
        mcp_sessions: SessionMode | None = "strict",
        max_mcp_sessions: int = 100_000,
        max_mcp_sessions_per_principal: int = 100,
    ) -> None:
        for role, component, methods in (
            ("authenticator", authenticator, (("authenticate", True),)),
            ("inspector", inspector, (("inspect", False),)),
            ("policy", policy, (("evaluate", False),)),
            ("rate_limiter", rate_limiter, (("hit", True),)),
            ("redactor", redactor, (("redact", False), ("stream", False))),
        ):
            check_component(role, component, methods)
        check_audit_sink(audit)
        self.authenticator = authenticator
        self.inspector = inspector
        self.policy: PolicyEvaluator = policy if policy is not None else AuthenticatedPolicy()
        self.rate_limiter = rate_limiter
        self.redactor = redactor
        self.audit = audit
        self.context_settings = context or ContextSettings()
        self.challenge = challenge or ChallengeSettings()
        self.max_body_bytes = max_body_bytes
        self.max_response_buffer = max_response_buffer
        self.max_message_bytes = max_message_bytes
        self.clock = clock
        self._message_limiter: MessageRateLimiter | None = (
            rate_limiter if callable(getattr(rate_limiter, "hit_message", None)) else None  # type: ignore[assignment]
        )
        self.needs_body = bool(
            getattr(inspector, "needs_body", False)
            or getattr(self.policy, "needs_body", False)
            or getattr(rate_limiter, "needs_body", False)
            or any(getattr(observer, "needs_body", False) for observer in observers)
        )
        self._request_id_header = (
            self.context_settings.request_id_header.encode("latin-1") if echo_request_id else None
        )
        # The components' own fail-open settings too (built in code, not in config).
        own = getattr(authenticator, "fail_open_settings", ())
        self.fail_open = tuple(dict.fromkeys((*fail_open, *own)))
        # Looked up once: a policy may rewrite responses (tools/list filtering).
        self._response_filter: Callable[[RequestContext], Redactor | None] | None = getattr(
            self.policy, "response_filter", None
        )
        self.observers = observers
        # A guard that refuses nothing costs two awaits per request: keep None instead.
        self.guard: Guard | None = None if isinstance(guard, NoGuard) else guard
        self._started = False
        self._lifespans = 0  # apps whose lifespan started this pipeline and has not ended
        # Components that audit on their own (JWKS outages, shadow tiers, storage
        # outages) get our emit.
        for component in (authenticator, rate_limiter):
            bind = getattr(component, "bind_emitter", None)
            if callable(bind):
                bind(self.emit)
        # Responses secmw serves itself, by canonical path (RFC 9728 metadata, metrics),
        # and rewrites of the app's scope (credential stripping); see secmw.auth.build.
        self.endpoints: Mapping[str, Endpoint] = endpoints or {}
        self.scope_filters = scope_filters
        # The ones http scopes need (websocket-only rewrites left out).
        self.http_scope_filters = tuple(
            found for found in scope_filters if not getattr(found, "websocket_only", False)
        )
        # A sink that can refuse (JSONL file, fail_closed) says so through ``healthy``.
        self._audit_gate: _Gate | None = audit if _has_gate(audit) else None  # type: ignore[assignment]
        # MCP session ids bound to the principal that opened them (None: not checked).
        self.sessions = (
            SessionBinding(mcp_sessions, max_mcp_sessions, max_mcp_sessions_per_principal)
            if mcp_sessions is not None
            else None
        )

    # -- the request phase -------------------------------------------------

    def context(self, scope: Mapping[str, Any]) -> RequestContext:
        """Build the request's context; raises :class:`~secmw.errors.BadRequest`."""
        ctx = RequestContext.from_scope(scope, self.context_settings)
        if self._request_id_header is not None:
            ctx.state[ECHOES] = self._request_id_header  # read by a nested middleware
        bind_request(ctx)
        return ctx

    def fallback_context(self, scope: Mapping[str, Any]) -> RequestContext:
        """A context for a request whose path was refused, for the reply and audit."""
        raw = scope.get("raw_path") or str(scope.get("path", "")).encode("utf-8", "replace")
        shown = raw.split(b"?", 1)[0].decode("ascii", "backslashreplace")
        ctx = RequestContext.from_scope(scope, self.context_settings, path=shown)
        bind_request(ctx)
        return ctx

    async def check(self, ctx: RequestContext) -> None:
        """Run authenticate, inspect, authorize and throttle; raise a Denial to stop."""
        self._check_audit()
        stage = "authenticate"
        try:
            guard = self.guard
            if guard is not None:
                await guard.before(ctx)
            if self.authenticator is not None:
                principal = await self.authenticator.authenticate(ctx)
                if principal is not None:
                    ctx.principal = checked(principal, Principal, "authenticate")
            if guard is not None:
                await guard.after_authentication(ctx)
            stage = "inspect"
            if self.inspector is not None:
                found = list(self.inspector.inspect(ctx))
                for finding in found:
                    checked(finding, Finding, "inspect")
                ctx.findings.extend(found)
            stage = "authorize"
            decision = checked(self.policy.evaluate(ctx), Decision, "evaluate")
            ctx.decision = decision
            if decision.effect is not Effect.ALLOW:
                raise _refusal(ctx, decision)
            if self.sessions is not None:
                self.sessions.check(ctx)
            stage = "throttle"
            if self.rate_limiter is not None:
                rate = checked(await self.rate_limiter.hit(ctx), RateDecision, "hit")
                ctx.state["rate"] = rate
                if not rate.allowed:
                    raise RateLimited(
                        rate.retry_after or 1.0,
                        "The rate limit for this request was exceeded.",
                        policies=rate.policies,
                        reason=rate.reason or "rate limit exceeded",
                        headers=rate.headers,
                        problem_type=rate.problem_type,
                    )
        except Denial:
            raise
        except Exception as exc:
            denial = sole_denial(exc)
            if denial is not None:
                raise denial from exc
            raise _stage_failure(stage, exc) from exc

    async def screen(self, ctx: RequestContext) -> None:
        """The check an endpoint secmw serves itself gets first: the client-address guard.

        A client blocked for guessing credentials stays blocked on the metrics
        endpoint too; the endpoint then checks its own token or networks.
        """
        self._check_audit()  # the endpoint decides on tokens or networks too
        if self.guard is None:
            return
        ctx.state[SCREENED] = True
        try:
            await self.guard.before(ctx)
        except Denial:
            raise
        except Exception as exc:
            raise _stage_failure("authenticate", exc) from exc

    def _check_audit(self) -> None:
        gate = self._audit_gate
        if gate is None:
            return
        try:
            healthy = bool(gate.healthy)
        except Exception:  # a custom sink's property that fails: it cannot record either
            healthy = False
        if not healthy:
            # NIST SP 800-53 AU-5: no decision is made that could not be recorded.
            raise ServiceUnavailable(
                "The request cannot be checked right now.",
                retry_after=1,
                reason="audit sink cannot record",
                event="sys_monitor_disabled",
            )

    @property
    def checks_messages(self) -> bool:
        """True when open websocket sessions have per-message checks."""
        return self._message_limiter is not None

    async def check_message(self, ctx: RequestContext, message: Mapping[str, Any]) -> None:
        """Per-message checks on an open websocket; raise a Denial to close it."""
        if self._message_limiter is None:
            return
        try:
            rate = checked(
                await self._message_limiter.hit_message(ctx, message), RateDecision, "hit_message"
            )
        except Denial:
            raise
        except Exception as exc:
            raise _stage_failure("throttle", exc) from exc
        if not rate.allowed:
            ctx.state["rate"] = rate  # what the refusal's observers read (``shared``)
            raise RateLimited(
                rate.retry_after or 1.0,
                "The message rate limit was exceeded.",
                policies=rate.policies,
                reason=rate.reason or "message rate limit exceeded",
            )

    @property
    def request_id_header(self) -> bytes | None:
        """The header the request id is echoed in (``None``: not echoed)."""
        return self._request_id_header

    def scrubbed(self, denial: Denial) -> Denial:
        """A denial the app raised, its audit ``reason`` and ``rule_ids`` redacted (the app
        wrote them)."""
        redactor = self.redactor
        if redactor is not None:
            with contextlib.suppress(Exception):
                if denial.reason:
                    denial.reason = redactor.redact(denial.reason)[0]
                if denial.rule_ids:
                    denial.rule_ids = tuple(redactor.redact(str(r))[0] for r in denial.rule_ids)
        return denial

    # -- the response phase ------------------------------------------------

    def body_transform(self, ctx: RequestContext) -> Redactor | None:
        """What rewrites this request's response body: the policy's filter, the redactor."""
        factory = self._response_filter
        policy_filter: Redactor | None = factory(ctx) if factory is not None else None
        if policy_filter is None:
            return self.redactor
        if self.redactor is None:
            return policy_filter
        return ChainedTransform(policy_filter, self.redactor)

    def response_headers(self, ctx: RequestContext) -> list[Header]:
        """Headers every response of an admitted request gets (request id, RateLimit)."""
        headers: list[Header] = []
        state = ctx.state
        echo = self._request_id_header
        if echo is not None and state.get(NESTED) != echo:
            headers.append((echo, ctx.request_id.encode("latin-1")))
        rate: RateDecision | None = state.get("rate")
        if rate is not None and rate.headers:
            headers.extend(rate.headers)
        return headers

    def render(self, ctx: RequestContext, denial: Denial) -> tuple[int, list[Header], bytes]:
        """Status, headers and body that answer a denied request.

        A JSON-RPC request (MCP) gets its refusal as JSON-RPC error objects, one per
        call that carries an id, so clients surface the code and message.
        """
        ids = [call.id for call in ctx.rpc if call.method is not None and call.id is not None]
        status, headers, body = render_denial(
            denial, self.challenge, ctx.request_id, rpc_ids=ids, rpc_batch=ctx.rpc_batch
        )
        echo = self._request_id_header
        if echo is not None and ctx.state.get(NESTED) != echo:
            headers.append((echo, ctx.request_id.encode("latin-1")))
        return status, headers, body

    # -- the record stage --------------------------------------------------

    async def record(
        self,
        ctx: RequestContext,
        denial: Denial | None = None,
        *,
        name: str | None = None,
        reason: str | None = None,
        status: int | None = None,
    ) -> None:
        """Emit the audit event that describes how the request (or session) ended."""
        unbind_request(ctx)  # the request is over; the task may serve another one
        if self.audit is None and not self.observers:
            return
        principal = ctx.principal
        decision: Decision | None = ctx.decision
        if denial is None and name is None:
            denial = ctx.state.get("denial")  # set by an app that answered in secmw's name
        rpc = ctx.rpc[0] if len(ctx.rpc) == 1 else None
        if denial is not None:
            event_name = denial.event
            outcome = "failure"
            severity = "error" if denial.status >= 500 else "warning"
            rule_ids = denial.rule_ids or (decision.rule_ids if decision else ())
            why: str | None = denial.reason
            status = status if status is not None else denial.status
        else:
            event_name = name or "authz_allow"
            outcome = "success" if name is None else "unknown"
            severity = "info"
            rule_ids = decision.rule_ids if decision else ()
            why = reason or (decision.reason if decision else None)
            status = status if status is not None else ctx.status
        if decision is not None and decision.obligations.get("audit"):
            severity = str(decision.obligations["audit"])
        event = AuditEvent(
            name=event_name,
            outcome=outcome,
            severity=severity,
            request_id=ctx.request_id,
            transport=ctx.transport,
            method=ctx.method,
            path=ctx.path,
            client=ctx.client,
            subject=principal.subject or None,
            tenant=principal.tenant,
            auth_method=principal.auth_method,
            rpc_method=rpc.method if rpc else None,
            tool=rpc.target if rpc else None,
            rule_ids=rule_ids,
            reason=why,
            status=status,
            latency_ms=ctx.elapsed_ms(),
            # Extra details a stage left for this event (e.g. inspection signals).
            details=ctx.state.get("audit_details") or {},
        )
        for observer in self.observers:
            try:
                observer.observe(ctx, event)
            except Exception as exc:
                print(
                    f"secmw: observer {type(observer).__name__} failed with {type(exc).__name__}",
                    file=sys.stderr,
                )
        await self.emit(event)

    async def emit(self, event: AuditEvent) -> None:
        """Hand ``event`` to the sink; a failing sink is reported, not propagated.

        With a redactor, a secret in the event's path (``/bot<token>/send``, a
        magic link) is redacted like a response body before the line is written.
        """
        if self.audit is None:
            return
        if self.redactor is not None:
            # The tool field holds a client's JSON-RPC target: a tool or prompt name,
            # or a resource URI (``postgres://user:pw@db``, ``...?key=sk_live_...``):
            # short, and only on MCP requests, so always scanned.
            path, tool = event.path, event.tool
            clean_path = _for_audit(self.redactor, path)
            clean_tool = tool if tool is None else path_for_audit(self.redactor, tool)
            if clean_path != path or clean_tool != tool:
                event = dataclasses.replace(event, path=clean_path, tool=clean_tool)
        audit = self.audit
        # The class's own promise: not inherited by a subclass that may override emit,
        # nor passed on by a wrapper's __getattr__ (whose emit does more).
        if vars(type(audit)).get("bounded_emit", False):
            # The built-in sinks bound themselves; a cancel scope costs ~10 µs per event.
            try:
                await audit.emit(event)
            except Exception as exc:
                _sink_failed(exc, event)
            return
        try:
            with anyio.move_on_after(SINK_DEADLINE) as waited:
                await audit.emit(event)
        except Exception as exc:
            _sink_failed(exc, event)
        else:
            if waited.cancelled_caught:
                # A sink that hangs must not pin the request (its caller is shielded).
                print(
                    f"secmw: audit sink did not answer within {SINK_DEADLINE:g} s; "
                    f"event {event.name} lost",
                    file=sys.stderr,
                )

    # -- lifecycle ---------------------------------------------------------

    def stage_names(self) -> list[str]:
        """The stages that are on, in the order a request meets them."""
        return [
            name
            for name, stage in (
                ("guard", self.guard),
                ("authenticate", self.authenticator),
                ("inspect", self.inspector),
                ("authorize", self.policy),
                ("throttle", self.rate_limiter),
                ("redact", self.redactor),
            )
            if stage is not None
        ]

    async def startup(self) -> None:
        """Record ``sys_startup`` once (stages, fail-open settings), then start the stages."""
        if self._started:
            return
        self._started = True
        open_sink = getattr(self.audit, "startup", None)
        if callable(open_sink):
            try:
                await open_sink()  # a sink closed by an earlier shutdown opens again
            except Exception as exc:  # the audit gate then refuses requests
                print(
                    f"secmw: starting the audit sink failed with {type(exc).__name__}",
                    file=sys.stderr,
                )
        await self.emit(
            AuditEvent(
                name="sys_startup",
                outcome="success",
                severity="warning" if self.fail_open else "info",
                details={"stages": self.stage_names(), "fail_open": list(self.fail_open)},
            )
        )
        for component in self._components():
            start = getattr(component, "startup", None)
            if callable(start):
                try:
                    await start()  # e.g. fetch JWKS keys before the first request
                except Exception as exc:  # the stage itself fails closed per request
                    print(
                        f"secmw: starting {type(component).__name__} failed with "
                        f"{type(exc).__name__}",
                        file=sys.stderr,
                    )

    async def lifespan_started(self) -> None:
        """An app's lifespan started: start the pipeline (once, however many apps share it)."""
        self._lifespans += 1
        await self.startup()

    async def lifespan_ended(self) -> None:
        """An app's lifespan ended: close the pipeline when no other app still uses it."""
        self._lifespans = max(0, self._lifespans - 1)
        if self._lifespans == 0:
            await self.aclose()

    def _components(self) -> tuple[Any, ...]:
        """The stages started and closed here: not the audit sink, closed last, nor the
        guard, whose anomaly monitor its audit-sink wrapper flushes and closes."""
        return (self.authenticator, self.inspector, self.policy, self.rate_limiter, self.redactor)

    @property
    def started(self) -> bool:
        """True once :meth:`startup` ran."""
        return self._started

    async def aclose(self) -> None:
        """Record ``sys_shutdown``, close the stages, then the audit sink (flushing it)."""
        await self.emit(AuditEvent(name="sys_shutdown", outcome="success"))
        for component in self._components():
            close = getattr(component, "aclose", None)
            if callable(close):
                # Connections: Redis, an introspection HTTP client.
                await _closed(close, type(component).__name__)
        close_sink = getattr(self.audit, "aclose", None)
        if callable(close_sink):
            await _closed(close_sink, "the audit sink")
        self._started = False


# How long a component may take to take an audit event or to close: a hung custom
# one must not pin requests or a server's shutdown (the built-in file sink waits
# at most its ``block_timeout_ms`` for room, and flushes in well under this).
SINK_DEADLINE = 30.0


def _sink_failed(exc: Exception, event: AuditEvent) -> None:
    print(
        f"secmw: audit sink failed with {type(exc).__name__}; event {event.name} lost",
        file=sys.stderr,
    )


async def _closed(close: Callable[[], Awaitable[None]], name: str) -> None:
    try:
        with anyio.move_on_after(SINK_DEADLINE) as waited:
            await close()
    except Exception as exc:
        print(f"secmw: closing {name} failed with {type(exc).__name__}", file=sys.stderr)
        return
    if waited.cancelled_caught:
        print(f"secmw: closing {name} took over {SINK_DEADLINE:g} s; left", file=sys.stderr)


class _Gate(Protocol):
    @property
    def healthy(self) -> bool: ...


def _has_gate(audit: object) -> bool:
    try:
        return hasattr(audit, "healthy")
    except Exception:  # a property that fails already: a gate, and a closed one
        return True


def _stage_failure(stage: str, exc: Exception) -> ServiceUnavailable:
    """The 503 for a stage that could not decide: unavailable storage, or a crash."""
    if isinstance(exc, ComponentError):
        return ServiceUnavailable(
            "The request cannot be checked right now.",
            retry_after=1,
            reason=f"{stage} stage unavailable: {type(exc).__name__}",
            event="sys_monitor_disabled",
        )
    print(f"secmw: {stage} stage failed with {type(exc).__name__}; request denied", file=sys.stderr)
    return ServiceUnavailable(
        "The request cannot be checked right now.",
        reason=f"{stage} stage failed: {type(exc).__name__}",
        event="sys_error",
    )


def _refusal(ctx: RequestContext, decision: Decision) -> Denial:
    """The denial a non-allow decision stands for, given who is asking."""
    reason = decision.reason or "denied by policy"
    if not ctx.principal.is_authenticated:
        # No credential: a plain challenge, also where a stronger login is needed
        # (RFC 6750 section 3.1: no error code; RFC 9470's applies to a token sent).
        denial: Denial = AuthenticationError(
            "Authentication is required.", error=None, reason=reason
        )
        denial.rule_ids = decision.rule_ids
        return denial
    if decision.effect is Effect.STEP_UP:
        return StepUpRequired(
            acr_values=decision.acr_values,
            max_age=decision.max_age,
            reason=reason,
            rule_ids=decision.rule_ids,
        )
    if decision.scopes:
        return InsufficientScope(decision.scopes, reason=reason, rule_ids=decision.rule_ids)
    return AccessDenied(
        "You are not allowed to perform this request.", reason=reason, rule_ids=decision.rule_ids
    )
