"""Hostile tokens and headers through the whole middleware: always 400/401, never 2xx/5xx."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from secmw import SecurityMiddleware
from secmw.auth import FileAPIKeyStore
from secmw.testing import AuditCapture
from tests.support import EchoApp, call, http_scope
from tests.unit.auth.test_jwt import HOSTILE, ISSUER, OTHER

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def key_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("keys") / "keys.json"
    _, key = FileAPIKeyStore(path, create=True).create("svc", scopes=["read"])
    return path, key


def app(key_file: tuple[Path, str]) -> tuple[SecurityMiddleware, AuditCapture]:
    audit = AuditCapture()
    config = {
        "auth": {
            "realm": "api",
            "resource_metadata": "https://api.example.test/.well-known/oauth-protected-resource",
            "jwt": ISSUER.jwt_config(),
            "api_key": {"file": str(key_file[0])},
        }
    }
    return SecurityMiddleware(EchoApp(), config, audit=audit), audit


def _deep_header_token() -> str:
    """A token whose JOSE header nests arrays deeper than the JSON parser recurses."""
    header = base64.urlsafe_b64encode(b"[" * 1500 + b"]" * 1500).rstrip(b"=").decode()
    return header + ".e30.AAAA"


def bearer(make: Callable[[], str]) -> Callable[[str], list[tuple[str, str]]]:
    return lambda key: [("authorization", f"Bearer {make()}")]


# A token that is not even an RFC 6750 b64token is a malformed request (400).
NOT_B64TOKEN = {"bad-alphabet"}
TOKENS = [
    pytest.param(
        bearer(param.values[0]),
        {},
        400 if param.id in NOT_B64TOKEN else 401,
        "invalid_request" if param.id in NOT_B64TOKEN else "invalid_token",
        id=f"token-{param.id}",
    )
    for param in HOSTILE
]

HEADERS: list[Any] = [
    pytest.param(
        lambda key: [("authorization", f"Bearer {ISSUER.mint()}")] * 2,
        {},
        400,
        "invalid_request",
        id="duplicate-authorization",
    ),
    pytest.param(
        lambda key: [("authorization", f"Bearer {ISSUER.mint()}"), ("authorization", "Basic x")],
        {},
        400,
        "invalid_request",
        id="bearer-and-basic",
    ),
    pytest.param(
        lambda key: [],
        {"query_string": f"access_token={ISSUER.mint()}".encode()},
        400,
        "invalid_request",
        id="query-token",
    ),
    pytest.param(
        lambda key: [("authorization", f"Bearer {ISSUER.mint()}")],
        {"query_string": b"x=1&access_token=abc"},
        400,
        "invalid_request",
        id="query-token-beside-header",
    ),
    pytest.param(
        lambda key: [("authorization", "Bearer")], {}, 400, "invalid_request", id="bearer-empty"
    ),
    pytest.param(
        lambda key: [("authorization", "Bearer a b")],
        {},
        400,
        "invalid_request",
        id="bearer-two-words",
    ),
    pytest.param(
        lambda key: [("authorization", "Bearer \ta.b.c")],
        {},
        400,
        "invalid_request",
        id="bearer-tab",
    ),
    pytest.param(
        lambda key: [("authorization", "Bearer\ta.b.c")],
        {},
        400,
        "invalid_request",
        id="bearer-tab-instead-of-space",
    ),
    pytest.param(
        lambda key: [],
        {"query_string": f"access%5Ftoken={ISSUER.mint()}".encode()},
        400,
        "invalid_request",
        id="query-token-encoded-name",
    ),
    pytest.param(
        lambda key: [("authorization", "Bearer " + _deep_header_token())],
        {},
        401,
        "invalid_token",
        id="jose-header-nested-too-deep",
    ),
    pytest.param(
        lambda key: [("authorization", f"Bearer {ISSUER.mint(claims={'exp': float('nan')})}")],
        {},
        401,
        "invalid_token",
        id="exp-nan",
    ),
    pytest.param(
        lambda key: [("authorization", f"Bearer {ISSUER.mint(claims={'exp': float('inf')})}")],
        {},
        401,
        "invalid_token",
        id="exp-infinity",
    ),
    pytest.param(
        lambda key: [("authorization", f"Bearer {ISSUER.mint(claims={'exp': 10**400})}")],
        {},
        401,
        "invalid_token",
        id="exp-beyond-float",
    ),
    pytest.param(
        lambda key: [("authorization", f"Bearer {ISSUER.mint()},Bearer x")],
        {},
        400,
        "invalid_request",
        id="bearer-list",
    ),
    pytest.param(
        lambda key: [("authorization", "Bearer caf\xe9")],
        {},
        400,
        "invalid_request",
        id="bearer-latin1",
    ),
    pytest.param(
        lambda key: [("authorization", "Bearer opaque-token")],
        {},
        401,
        "invalid_token",
        id="opaque-token",
    ),
    pytest.param(
        lambda key: [("authorization", f"Bearer {OTHER.mint(headers={'kid': 'rsa-2'})}")],
        {},
        401,
        "invalid_token",
        id="unknown-kid",
    ),
    pytest.param(
        lambda key: [("authorization", "Basic dXNlcjpwYXNz")], {}, 401, None, id="basic-only"
    ),
    pytest.param(
        lambda key: [("x-api-key", "nope")], {}, 401, "invalid_token", id="apikey-garbage"
    ),
    pytest.param(
        # The secret's last character changed (to one it surely is not).
        lambda key: [("x-api-key", key[:-1] + ("B" if key.endswith("A") else "A"))],
        {},
        401,
        "invalid_token",
        id="apikey-wrong-secret",
    ),
    pytest.param(
        lambda key: [("authorization", f"ApiKey {key}x")],
        {},
        401,
        "invalid_token",
        id="apikey-scheme-bad",
    ),
    pytest.param(
        lambda key: [("x-api-key", key)] * 2, {}, 400, "invalid_request", id="apikey-twice"
    ),
    pytest.param(
        lambda key: [("x-api-key", key), ("authorization", f"Bearer {ISSUER.mint()}")],
        {},
        400,
        "invalid_request",
        id="apikey-and-bearer",
    ),
    pytest.param(
        lambda key: [("x-api-key", key), ("authorization", f"ApiKey {key}")],
        {},
        400,
        "invalid_request",
        id="apikey-header-and-scheme",
    ),
]


@pytest.mark.parametrize(("headers", "extra", "status", "error"), TOKENS + HEADERS)
async def test_hostile_requests_are_refused(
    key_file: tuple[Path, str],
    headers: Callable[[str], list[tuple[str, str]]],
    extra: dict[str, Any],
    status: int,
    error: str | None,
) -> None:
    middleware, audit = app(key_file)
    inner: EchoApp = middleware.app  # type: ignore[assignment]
    sent_headers = headers(key_file[1])
    sent = await call(middleware, http_scope("/api", headers=sent_headers, **extra))
    assert sent.status == status
    assert not inner.scopes, "the app must never be called"
    challenge = sent.header("www-authenticate") or ""
    assert challenge.startswith('Bearer realm="api"')
    assert 'resource_metadata="https://api.example.test/' in challenge
    if error is None:
        assert "error=" not in challenge
    else:
        assert f'error="{error}"' in challenge
    problem = sent.json()
    assert problem["status"] == status and sent.header("content-type") == "application/problem+json"
    event = audit.last
    assert event.outcome == "failure" and event.status == status
    assert event.name.startswith("authn_")
    line = audit.lines()[-1]
    for _, value in sent_headers:
        if len(value) > 12:
            assert value.split()[-1][:40] not in line, "a credential leaked into the audit line"


def test_the_table_is_big_enough() -> None:
    assert len(TOKENS) + len(HEADERS) >= 40


async def test_good_credentials_pass_for_contrast(key_file: tuple[Path, str]) -> None:
    middleware, audit = app(key_file)
    for headers in (
        [("authorization", f"Bearer {ISSUER.mint('alice')}")],
        [("x-api-key", key_file[1])],
    ):
        sent = await call(middleware, http_scope("/api", headers=headers))
        assert sent.status == 200, sent.body
    assert [event.name for event in audit.events[-2:]] == ["authz_allow"] * 2
