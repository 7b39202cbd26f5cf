"""Arbitrary credentials never crash the authenticators: a Principal, None or a 400/401."""

from __future__ import annotations

import base64
import json

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secmw.auth import APIKeyAuthenticator, MemoryAPIKeyStore
from secmw.auth.jwt import JWTAuthenticator
from secmw.auth.keys import key_from_jwk
from secmw.errors import AuthenticationError
from secmw.testing import TokenIssuer
from tests.auth_support import ctx_with, ws_ctx

ISSUER = TokenIssuer(algorithm="ES256", kid="f1")
JWT = JWTAuthenticator([key_from_jwk(ISSUER.public_jwk)], issuer=ISSUER.issuer, audience="x")
KEYS = APIKeyAuthenticator(MemoryAPIKeyStore())
LATIN1 = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=300)


def segment(data: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def outcome(coroutine: object) -> int:
    async def run() -> int:
        try:
            await coroutine  # type: ignore[misc]
        except AuthenticationError as exc:
            return exc.status
        return 200

    status = anyio.run(run)
    assert status in (200, 400, 401)
    return status


@settings(max_examples=200, deadline=None)
@given(value=LATIN1)
def test_any_authorization_header(value: str) -> None:
    assert outcome(JWT.authenticate(ctx_with(("authorization", value)))) in (200, 400, 401)
    assert outcome(KEYS.authenticate(ctx_with(("x-api-key", value)))) in (400, 401)


@settings(max_examples=200, deadline=None)
@given(header=JSONISH, payload=JSONISH, signature=st.binary(max_size=80))
def test_any_structured_token(header: object, payload: object, signature: bytes) -> None:
    token = ".".join(
        [
            segment(header),
            segment(payload),
            base64.urlsafe_b64encode(signature).rstrip(b"=").decode(),
        ]
    )
    assert outcome(JWT.check(token)) == 401


@settings(max_examples=100, deadline=None)
@given(entries=st.lists(st.text(max_size=60), max_size=4), query=LATIN1)
def test_any_websocket_handshake(entries: list[str], query: str) -> None:
    prefixed = [f"base64url.bearer.authorization.k8s.io.{entry}" for entry in entries]
    ctx = ws_ctx(subprotocols=prefixed, query=query.encode("latin-1"))
    assert outcome(JWT.authenticate(ctx)) in (200, 400, 401)


@pytest.mark.parametrize("value", ["Bearer", "Bearer ", " ", "ApiKey", "Bearer =", "Bearer ===="])
def test_edge_headers(value: str) -> None:
    assert outcome(JWT.authenticate(ctx_with(("authorization", value)))) in (200, 400, 401)
