"""Turning a :class:`~secmw.errors.Denial` into status, headers and body.

Bodies are RFC 9457 ``application/problem+json``; authentication failures carry
an RFC 6750 ``WWW-Authenticate: Bearer`` challenge (with RFC 9728's
``resource_metadata`` and RFC 9470's ``acr_values``/``max_age`` when they apply);
429 and 503 carry ``Retry-After`` (RFC 9110 section 10.2.3) in whole seconds.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from secmw.errors import (
    AuthenticationError,
    Denial,
    InsufficientScope,
    RateLimited,
    ServiceUnavailable,
    StepUpRequired,
)

Header = tuple[bytes, bytes]

# RFC 6750 section 3: error_description and scope use a restricted character set.
_UNSAFE_PARAM = re.compile(r"[^\x20\x21\x23-\x5b\x5d-\x7e]")


@dataclass(frozen=True, slots=True)
class ChallengeSettings:
    """The static parts of every ``WWW-Authenticate`` challenge."""

    realm: str = "secmw"
    resource_metadata: str | None = None


def _param(name: str, value: str) -> str:
    return f'{name}="{_UNSAFE_PARAM.sub("", value)}"'


def bearer_challenge(
    settings: ChallengeSettings,
    *,
    error: str | None = None,
    description: str | None = None,
    scope: Sequence[str] = (),
    acr_values: Sequence[str] = (),
    max_age: int | None = None,
) -> bytes:
    """Build an RFC 6750 Bearer challenge value.

    With no ``error`` the challenge only names the realm (and metadata): RFC 6750
    section 3.1 says a request without credentials gets no error code.
    """
    params = [_param("realm", settings.realm)]
    if error is not None:
        params.append(_param("error", error))
        if description:
            params.append(_param("error_description", description))
    if scope:
        params.append(_param("scope", " ".join(scope)))
    if acr_values:
        params.append(_param("acr_values", " ".join(acr_values)))
    if max_age is not None:
        params.append(f"max_age={int(max_age)}")
    if settings.resource_metadata:
        params.append(_param("resource_metadata", settings.resource_metadata))
    return ("Bearer " + ", ".join(params)).encode("latin-1")


# A year: a longer Retry-After is no advice at all.
_LONGEST_RETRY = 31_536_000


def _retry_after(seconds: float) -> bytes:
    # A custom component may hand over inf, NaN or a string-like number: the answer
    # must still go out (math.ceil(inf) raises).
    try:
        whole = math.ceil(min(float(seconds), _LONGEST_RETRY))
    except (TypeError, ValueError, OverflowError):
        whole = 1
    return str(max(1, whole)).encode()


# JSON-RPC error codes for refusals (the -32000..-32099 range is for servers).
_RPC_CODES = {400: -32600, 401: -32001, 403: -32003, 413: -32600, 429: -32029}


def render_denial(
    denial: Denial,
    settings: ChallengeSettings,
    request_id: str | None,
    *,
    rpc_ids: Sequence[str | int] = (),
    rpc_batch: bool = False,
) -> tuple[int, list[Header], bytes]:
    """Status, headers and body for a denial: problem+json, or JSON-RPC errors.

    With ``rpc_ids`` (the ids of the JSON-RPC requests refused) the body is one
    JSON-RPC error object per id, an array for a batch, carrying the problem
    document as ``error.data``; status and headers are the same either way.
    """
    headers: list[Header] = []
    if isinstance(denial, StepUpRequired):
        headers.append(
            (
                b"www-authenticate",
                bearer_challenge(
                    settings,
                    error="insufficient_user_authentication",
                    description=denial.detail,
                    acr_values=denial.acr_values,
                    max_age=denial.max_age,
                ),
            )
        )
    elif isinstance(denial, InsufficientScope):
        headers.append(
            (
                b"www-authenticate",
                bearer_challenge(
                    settings,
                    error="insufficient_scope",
                    description=denial.detail,
                    scope=denial.scopes,
                ),
            )
        )
    elif isinstance(denial, AuthenticationError):
        headers.append(
            (
                b"www-authenticate",
                bearer_challenge(settings, error=denial.error, description=denial.detail),
            )
        )
    retry_after = (
        denial.retry_after if isinstance(denial, (RateLimited, ServiceUnavailable)) else None
    )
    if retry_after is not None:
        headers.append((b"retry-after", _retry_after(retry_after)))
    problem: dict[str, object] = {
        "type": denial.problem_type,
        "title": denial.title,
        "status": denial.status,
        "detail": denial.detail,
    }
    if isinstance(denial, RateLimited) and denial.policies:
        problem["violated-policies"] = list(denial.policies)
    if request_id is not None:
        problem["request_id"] = request_id
    media = b"application/problem+json"
    document: object = problem
    if rpc_ids:
        code = _RPC_CODES.get(denial.status, -32000)
        errors = [
            {
                "jsonrpc": "2.0",
                "id": ident,
                "error": {"code": code, "message": denial.detail, "data": problem},
            }
            for ident in rpc_ids
        ]
        document = errors if rpc_batch else errors[0]
        media = b"application/json"
    body = json.dumps(document, ensure_ascii=True, separators=(",", ":")).encode()
    headers.extend(denial.headers)
    headers.append((b"content-type", media))
    headers.append((b"content-length", str(len(body)).encode()))
    headers.append((b"cache-control", b"no-store"))
    return denial.status, headers, body
