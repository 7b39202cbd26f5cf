"""Composition: first recogniser wins, invalid never falls through, mixed kinds are 400."""

from __future__ import annotations

import pytest

from secmw.auth import APIKeyAuthenticator, CompositeAuthenticator, MemoryAPIKeyStore
from secmw.auth.bearer import encode_subprotocol
from secmw.auth.jwt import JWTAuthenticator
from secmw.auth.keys import key_from_jwk
from secmw.errors import AuthenticationError
from secmw.testing import TokenIssuer
from tests.auth_support import ctx_with, ws_ctx

pytestmark = pytest.mark.anyio

ISSUER = TokenIssuer(algorithm="ES256", kid="c1")


def composite() -> tuple[CompositeAuthenticator, str]:
    store = MemoryAPIKeyStore()
    _, key = store.create("svc")
    jwt_auth = JWTAuthenticator(
        [key_from_jwk(ISSUER.public_jwk)], issuer=ISSUER.issuer, audience=ISSUER.audience
    )
    return CompositeAuthenticator([jwt_auth, APIKeyAuthenticator(store)]), key


async def test_each_credential_finds_its_authenticator() -> None:
    auth, key = composite()
    by_jwt = await auth.authenticate(ctx_with(("authorization", f"Bearer {ISSUER.mint('u')}")))
    by_key = await auth.authenticate(ctx_with(("x-api-key", key)))
    assert by_jwt is not None and by_jwt.auth_method == "jwt"
    assert by_key is not None and by_key.auth_method == "api_key"
    assert await auth.authenticate(ctx_with()) is None


async def test_recognised_but_invalid_never_tries_the_next() -> None:
    auth, key = composite()
    with pytest.raises(AuthenticationError) as info:
        await auth.authenticate(ctx_with(("authorization", "Bearer a.b.c")))
    assert info.value.status == 401


async def test_two_kinds_of_credential_are_400() -> None:
    auth, key = composite()
    with pytest.raises(AuthenticationError) as info:
        await auth.authenticate(
            ctx_with(("authorization", f"Bearer {ISSUER.mint()}"), ("x-api-key", key))
        )
    assert info.value.status == 400 and info.value.error == "invalid_request"
    # A websocket bearer subprotocol and an API key header: the composite sees both kinds.
    with pytest.raises(AuthenticationError, match="several kinds") as info:
        await auth.authenticate(
            ws_ctx(("x-api-key", key), subprotocols=[encode_subprotocol(ISSUER.mint())])
        )
    assert info.value.status == 400


def test_empty_composite_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one"):
        CompositeAuthenticator([])
