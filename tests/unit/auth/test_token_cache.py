"""The verified-token cache: hits, exp bound, size bound, key-removal eviction, revocation."""

from __future__ import annotations

from typing import Any

import pytest

from secmw.auth.cache import MemoryDenylist, TokenCache, token_digest
from secmw.auth.jwks import JWKSClient
from secmw.auth.jwt import JWTAuthenticator
from secmw.auth.keys import SUPPORTED_ALGORITHMS, key_from_jwk
from secmw.context import Principal
from secmw.errors import AuthenticationError
from secmw.testing import InMemoryJWKS, TokenIssuer
from tests.auth_support import FakeClock

pytestmark = pytest.mark.anyio

ISSUER = TokenIssuer(algorithm="ES256", kid="k1")
NEXT = TokenIssuer(algorithm="ES256", kid="k2", issuer=ISSUER.issuer, audience=ISSUER.audience)


class CountingJWT(JWTAuthenticator):
    """Counts real signature verifications."""

    __slots__ = ("calls",)

    def _decode(self, token: str, keys: Any) -> Any:
        self.calls: list[str]
        if not hasattr(self, "calls"):
            self.calls = []
        self.calls.append(token)
        return super()._decode(token, keys)


def counting(auth: CountingJWT) -> list[str]:
    auth.calls = []
    return auth.calls


def static_auth(clock: FakeClock, **options: object) -> CountingJWT:
    return CountingJWT(
        [key_from_jwk(ISSUER.public_jwk)],
        issuer=ISSUER.issuer,
        audience=ISSUER.audience,
        clock=clock,
        leeway=0,
        **options,  # type: ignore[arg-type]
    )


def test_cache_is_bounded_and_expires() -> None:
    cache = TokenCache(2)
    who = Principal(subject="a")
    cache.put(b"1", who, 10.0)
    cache.put(b"2", who, 10.0)
    assert cache.get(b"1", 0.0) is who  # 1 is now the most recent
    cache.put(b"3", who, 10.0)
    assert cache.get(b"2", 0.0) is None and len(cache) == 2
    assert cache.get(b"1", 10.0) is None  # at valid_until it is gone
    TokenCache(0).put(b"x", who, 10.0)


def test_digest_is_not_the_token() -> None:
    token = ISSUER.mint()
    assert token.encode() not in token_digest(token) and len(token_digest(token)) == 32


async def test_second_use_is_served_from_cache_until_exp() -> None:
    clock = FakeClock()
    auth = static_auth(clock, cache_size=100)
    calls = counting(auth)
    token = ISSUER.mint(now=clock.now, expires_in=60)
    first = await auth.check(token)
    second = await auth.check(token)
    assert first is second and len(calls) == 1
    clock.advance(60)
    with pytest.raises(AuthenticationError, match="expired") as info:
        await auth.check(token)
    assert info.value.event == "authn_token_expired"
    assert len(calls) == 2


async def test_failed_tokens_are_not_cached() -> None:
    clock = FakeClock()
    auth = static_auth(clock, cache_size=100)
    calls = counting(auth)
    token = ISSUER.mint(now=clock.now, claims={"aud": "https://elsewhere"})
    for _ in range(3):
        with pytest.raises(AuthenticationError):
            await auth.check(token)
    assert len(calls) == 3


async def test_revocation_is_asked_on_every_request_cached_or_not() -> None:
    clock = FakeClock()
    denylist = MemoryDenylist()
    auth = static_auth(clock, cache_size=100, revocation=denylist)
    token = ISSUER.mint(now=clock.now, claims={"jti": "j-7"})
    assert (await auth.check(token)).subject == "user-1"
    denylist.revoke("j-7")
    with pytest.raises(AuthenticationError) as info:
        await auth.check(token)
    assert info.value.event == "authn_token_revoked"
    assert "j-7" in denylist and len(denylist) == 1


async def test_key_removed_from_jwks_evicts_its_tokens() -> None:
    clock = FakeClock()
    jwks = InMemoryJWKS(ISSUER, NEXT, max_age=60)
    source = JWKSClient(
        "https://issuer.example.test/jwks",
        allowed=SUPPORTED_ALGORITHMS,
        fetcher=jwks.fetcher(),
        clock=clock,
    )
    auth = JWTAuthenticator(
        issuer=ISSUER.issuer, audience=ISSUER.audience, jwks=source, cache_size=100, clock=clock
    )
    old = ISSUER.mint(now=clock.now, expires_in=3600)
    new = NEXT.mint(now=clock.now, expires_in=3600)
    await auth.check(old)
    await auth.check(new)
    assert len(auth._cache or ()) == 2
    jwks.remove("k1")
    clock.advance(61)
    with pytest.raises(AuthenticationError, match="unknown kid"):
        await auth.check(old)
    assert (await auth.check(new)).subject == "user-1"
    assert len(auth._cache or ()) == 1


async def test_jws_only_leaves_opaque_tokens_alone() -> None:
    from tests.auth_support import ctx_with

    auth = static_auth(FakeClock(), jws_only=True)
    assert await auth.authenticate(ctx_with(("authorization", "Bearer opaque-token"))) is None
    strict = static_auth(FakeClock())
    with pytest.raises(AuthenticationError):
        await strict.authenticate(ctx_with(("authorization", "Bearer opaque-token")))
