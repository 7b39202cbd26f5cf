"""FastAPI dependencies for route-level requirements, on top of SecurityMiddleware.

The middleware authenticates and applies the configured policy to every request;
these dependencies read the principal it set and add per-route requirements::

    from secmw.fastapi import current_principal, install, require

    install(api)                                   # problem+json bodies for refusals

    @api.get("/reports", dependencies=[Security(require(scopes=["reports:read"]))])
    async def reports(user: Principal = Depends(current_principal)) -> ...

Both layers apply, so the stricter one wins: a request the policy denies never
reaches the route, and a route requirement can only narrow what the policy
allowed. Refusals carry the same status and ``WWW-Authenticate`` challenge as the
middleware's (RFC 6750 ``insufficient_scope``, RFC 9470
``insufficient_user_authentication``) and are recorded as the request's audit
event. The dependencies also declare OpenAPI security schemes (HTTP bearer by
default; API-key header and OAuth2 with scopes on request), so ``/docs`` shows
the locks and the scopes each route needs.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, cast

try:
    from fastapi import FastAPI, HTTPException, Request, Security
    from fastapi.openapi.models import OAuthFlowAuthorizationCode, OAuthFlows
    from fastapi.responses import Response
    from fastapi.security import APIKeyHeader, HTTPBearer, OAuth2
    from fastapi.security.base import SecurityBase
except ModuleNotFoundError as exc:
    raise ModuleNotFoundError(
        "secmw.fastapi needs FastAPI: pip install 'secmw[fastapi]'", name=exc.name
    ) from exc

from secmw._response import vet_app_denial
from secmw.auth.stepup import MFA_AMR_VALUES, step_up_needed
from secmw.context import Principal, RequestContext
from secmw.errors import (
    AccessDenied,
    AuthenticationError,
    Denial,
    InsufficientScope,
    StepUpRequired,
)
from secmw.redact.audit import redaction_event

bearer_scheme = HTTPBearer(auto_error=False, description="An OAuth 2.0 / JWT access token.")


def api_key_scheme(header: str = "X-API-Key") -> APIKeyHeader:
    """An OpenAPI API-key scheme for the header secmw's API-key authenticator reads."""
    return APIKeyHeader(name=header, auto_error=False, description="A secmw API key.")


def oauth2_scheme(authorization_url: str, token_url: str, scopes: dict[str, str]) -> OAuth2:
    """An OpenAPI OAuth2 authorization-code scheme listing the scopes routes may need."""
    flows = OAuthFlows(
        authorizationCode=OAuthFlowAuthorizationCode(
            authorizationUrl=authorization_url, tokenUrl=token_url, scopes=scopes
        )
    )
    return OAuth2(flows=flows, auto_error=False)


class SecmwHTTPException(HTTPException):
    """A route-level refusal; :func:`install` renders it exactly like the middleware."""

    def __init__(
        self, denial: Denial, rendered: tuple[int, list[tuple[bytes, bytes]], bytes]
    ) -> None:
        status, headers, _body = rendered
        self.denial = denial
        self.rendered = rendered
        text_headers = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in headers
            if name.lower() in (b"www-authenticate", b"retry-after", b"cache-control")
        }
        super().__init__(status_code=status, detail=denial.detail, headers=text_headers)


def _context(request: Request) -> RequestContext:
    state = request.scope.get("state") or {}
    ctx = state.get("secmw")
    if not isinstance(ctx, RequestContext):
        # The dependency is used on an app SecurityMiddleware does not wrap: a
        # deployment error, refused rather than treated as anonymous.
        raise RuntimeError(  # noqa: TRY004 - a deployment error, not a bad argument
            "secmw.fastapi dependencies need the app wrapped in SecurityMiddleware"
        )
    return ctx


def _refuse(ctx: RequestContext, denial: Denial) -> SecmwHTTPException:
    pipeline = ctx.state.get("pipeline")
    ctx.state["denial"] = denial
    if pipeline is None:  # pragma: no cover - the adapter always sets it
        raise RuntimeError("secmw.fastapi dependencies need the app wrapped in SecurityMiddleware")
    status, headers, body = pipeline.render(ctx, denial)
    # The response goes out through the middleware, which adds the request id itself.
    echo = pipeline.request_id_header
    kept = [header for header in headers if header[0] != echo]
    return SecmwHTTPException(denial, (status, kept, body))


async def current_principal(request: Request) -> Principal:
    """The authenticated principal; an anonymous request gets the middleware's 401."""
    ctx = _context(request)
    if not ctx.principal.is_authenticated:
        raise _refuse(
            ctx,
            AuthenticationError(
                "Authentication is required.", error=None, reason="route requires authentication"
            ),
        )
    return ctx.principal


async def optional_principal(request: Request) -> Principal:
    """The principal, anonymous included (for routes that adapt to the caller)."""
    return _context(request).principal


def require(
    *,
    scopes: Sequence[str] = (),
    roles: Sequence[str] = (),
    acr: Sequence[str] = (),
    max_age: int | None = None,
    schemes: Sequence[SecurityBase] = (bearer_scheme,),
    mfa_amr: Sequence[str] = tuple(MFA_AMR_VALUES),
) -> Callable[..., Awaitable[Principal]]:
    """A dependency requiring scopes (all), roles (any), and an RFC 9470 step-up.

    Use it as ``Security(require(...))`` or in ``dependencies=[...]``. Missing
    scopes give 403 ``insufficient_scope`` naming them; missing roles 403; a weak or
    stale login (``acr`` not in ``acr``, no MFA ``amr``, or ``auth_time`` older than
    ``max_age``) 401 ``insufficient_user_authentication``. ``schemes`` are declared
    in OpenAPI only; credentials are always read by the middleware.
    """
    wanted_scopes = tuple(scopes)
    wanted_roles = frozenset(roles)
    step_up = bool(acr) or max_age is not None

    async def dependency(request: Request, **_declared: Any) -> Principal:
        principal = await current_principal(request)
        ctx = _context(request)
        missing = [scope for scope in wanted_scopes if scope not in principal.scopes]
        if missing:
            raise _refuse(
                ctx,
                InsufficientScope(
                    missing,
                    reason=f"route requires scope(s) {' '.join(missing)}",
                    rule_ids=["route"],
                ),
            )
        if wanted_roles and wanted_roles.isdisjoint(principal.roles):
            raise _refuse(
                ctx,
                AccessDenied(
                    "You are not allowed to perform this request.",
                    reason=f"route requires one of the roles {', '.join(sorted(wanted_roles))}",
                    rule_ids=["route"],
                ),
            )
        if step_up and step_up_needed(
            principal, acr_values=acr, max_age=max_age, now=time.time(), mfa_amr=mfa_amr
        ):
            raise _refuse(
                ctx,
                StepUpRequired(
                    acr_values=acr,
                    max_age=max_age,
                    reason="route requires step-up authentication",
                    rule_ids=["route"],
                ),
            )
        return principal

    # Declare the schemes to FastAPI (for OpenAPI) as keyword-only parameters.
    parameters = [
        inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Request)
    ]
    parameters.extend(
        inspect.Parameter(
            f"_scheme_{index}",
            inspect.Parameter.KEYWORD_ONLY,
            default=Security(cast("Callable[..., Any]", scheme), scopes=list(wanted_scopes)),
            annotation=Any,
        )
        for index, scheme in enumerate(schemes)
    )
    dependency.__signature__ = inspect.Signature(parameters, return_annotation=Principal)  # type: ignore[attr-defined]
    return dependency


async def _render(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, SecmwHTTPException):  # pragma: no cover - registered for this type only
        raise exc
    status, headers, body = exc.rendered
    response = Response(content=body, status_code=status)
    response.raw_headers = [(name, value) for name, value in headers]
    return response


async def _render_denial(request: Request, exc: Exception) -> Response:
    """A secmw refusal raised in a route (``CircuitOpen`` around an upstream call)."""
    if not isinstance(exc, Denial):  # pragma: no cover - registered for this type only
        raise exc
    ctx = _context(request)
    pipeline = ctx.state.get("pipeline")
    if pipeline is None:  # pragma: no cover - the adapter always sets it
        raise exc
    # As the adapter treats a bare app's: checked, its text redacted (body and
    # WWW-Authenticate), or, if it cannot be answered safely, the app's error.
    found = vet_app_denial(exc, pipeline.redactor)
    if found is None:
        raise exc
    if found:
        ctx.findings.extend(found)
        ctx.status = exc.status  # the answer about to go out, for the event's status
        event = redaction_event(ctx, found)
        if event is not None:
            await pipeline.emit(event)
    return await _render(request, _refuse(ctx, pipeline.scrubbed(exc)))


def install(app: FastAPI) -> None:
    """Render route-level refusals as the middleware's problem+json (or JSON-RPC) bodies.

    A :class:`~secmw.errors.Denial` a route raises itself (an open circuit breaker's
    ``CircuitOpen``) is answered and audited the same way, not as a 500.
    """
    app.add_exception_handler(SecmwHTTPException, _render)
    app.add_exception_handler(Denial, _render_denial)


__all__ = [
    "SecmwHTTPException",
    "api_key_scheme",
    "bearer_scheme",
    "current_principal",
    "install",
    "oauth2_scheme",
    "optional_principal",
    "require",
]
