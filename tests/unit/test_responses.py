"""Rendering denials: challenges, problem documents, Retry-After."""

from __future__ import annotations

import json

import pytest

from secmw._responses import ChallengeSettings, bearer_challenge, render_denial
from secmw.errors import (
    AccessDenied,
    AuthenticationError,
    BadRequest,
    InsufficientScope,
    PayloadTooLarge,
    RateLimited,
    ServiceUnavailable,
    StepUpRequired,
)

META = ChallengeSettings(
    realm="api", resource_metadata="https://r.example/.well-known/oauth-protected-resource"
)


def headers_of(result: tuple[int, list[tuple[bytes, bytes]], bytes]) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in result[1]}


def test_missing_credentials_challenge_has_no_error() -> None:
    value = bearer_challenge(ChallengeSettings())
    assert value == b'Bearer realm="secmw"'


def test_challenge_values_cannot_inject_quotes_or_lines() -> None:
    value = bearer_challenge(
        ChallengeSettings(realm='a"b'), error="invalid_token", description='x"\r\ny\\z\u00e9'
    )
    assert value == b'Bearer realm="ab", error="invalid_token", error_description="xyz"'


@pytest.mark.parametrize(
    ("denial", "status", "challenge"),
    [
        pytest.param(
            AuthenticationError("Authentication is required.", error=None),
            401,
            'Bearer realm="api", resource_metadata="https://r.example/.well-known/oauth-protected-resource"',
            id="missing",
        ),
        pytest.param(
            AuthenticationError("The access token expired."),
            401,
            'Bearer realm="api", error="invalid_token", error_description="The access token expired.", '
            'resource_metadata="https://r.example/.well-known/oauth-protected-resource"',
            id="invalid-token",
        ),
        pytest.param(
            AuthenticationError("Two headers.", error="invalid_request"),
            400,
            'Bearer realm="api", error="invalid_request", error_description="Two headers.", '
            'resource_metadata="https://r.example/.well-known/oauth-protected-resource"',
            id="invalid-request",
        ),
        pytest.param(
            InsufficientScope(["files:write", "admin"]),
            403,
            'Bearer realm="api", error="insufficient_scope", error_description="The access token lacks a '
            'required scope.", scope="files:write admin", '
            'resource_metadata="https://r.example/.well-known/oauth-protected-resource"',
            id="insufficient-scope",
        ),
        pytest.param(
            StepUpRequired(acr_values=["urn:mfa"], max_age=300),
            401,
            'Bearer realm="api", error="insufficient_user_authentication", error_description="A stronger or '
            'more recent authentication is required.", acr_values="urn:mfa", max_age=300, '
            'resource_metadata="https://r.example/.well-known/oauth-protected-resource"',
            id="step-up",
        ),
    ],
)
def test_auth_denials_carry_rfc6750_challenges(
    denial: AuthenticationError, status: int, challenge: str
) -> None:
    result = render_denial(denial, META, "rid")
    assert result[0] == status
    assert headers_of(result)["www-authenticate"] == challenge


@pytest.mark.parametrize(
    ("denial", "status", "retry_after"),
    [
        pytest.param(RateLimited(0.2), 429, "1", id="rounds-up-to-one"),
        pytest.param(RateLimited(30.01), 429, "31", id="ceil"),
        pytest.param(ServiceUnavailable(retry_after=5), 503, "5", id="unavailable"),
        pytest.param(ServiceUnavailable(), 503, None, id="unavailable-no-hint"),
        pytest.param(AccessDenied(), 403, None, id="forbidden"),
        pytest.param(BadRequest(), 400, None, id="bad-request"),
        pytest.param(PayloadTooLarge(), 413, None, id="too-large"),
    ],
)
def test_status_and_retry_after(denial: object, status: int, retry_after: str | None) -> None:
    result = render_denial(denial, ChallengeSettings(), None)  # type: ignore[arg-type]
    headers = headers_of(result)
    assert result[0] == status
    assert headers.get("retry-after") == retry_after
    assert "www-authenticate" not in headers


def test_problem_document_shape() -> None:
    denial = RateLimited(
        3,
        "Slow down.",
        policies=["burst", "daily"],
        problem_type="https://iana.org/assignments/http-problem-types#quota-exceeded",
        reason="internal: key user-1 over burst",
    )
    status, headers, body = render_denial(denial, ChallengeSettings(), "rid-7")
    header_map = dict(headers)
    assert header_map[b"content-type"] == b"application/problem+json"
    assert header_map[b"content-length"] == str(len(body)).encode()
    assert header_map[b"cache-control"] == b"no-store"
    assert json.loads(body) == {
        "type": "https://iana.org/assignments/http-problem-types#quota-exceeded",
        "title": "Too Many Requests",
        "status": 429,
        "detail": "Slow down.",
        "violated-policies": ["burst", "daily"],
        "request_id": "rid-7",
    }
    assert b"internal" not in body
