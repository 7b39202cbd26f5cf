"""JWT bearer authentication on PyJWT, following RFC 8725 (JWT BCP).

The trade-offs, each deliberate:

* The key decides the algorithm (see :mod:`secmw.auth.keys`); ``none`` is never
  accepted.
* ``kid`` is only ever an exact dictionary key; ``jku``, ``x5u``, ``jwk`` and
  ``x5c`` headers are ignored, and any ``crit`` header is refused (we implement no
  extension).
* Keys come from configuration, a JWKS file or a JWKS URL (:mod:`secmw.auth.jwks`);
  a token naming an unknown ``kid`` triggers at most one refresh per cooldown.
* Verified tokens are cached by SHA-256 digest until their ``exp`` at the latest;
  a key that leaves the JWKS takes its cached tokens with it, and the revocation
  hook is asked on every request, cached or not.
* The token size is checked before any parsing; ``iss`` must equal the issuer
  exactly; ``exp``/``nbf``/``iat`` must be JSON numbers (a numeric string is
  refused, though PyJWT alone would accept it).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeGuard

import jwt

from secmw.audit.base import AuditEvent
from secmw.auth.bearer import DEFAULT_SETTINGS, CredentialSettings, bearer_token
from secmw.auth.cache import RevocationCheck, TokenCache, token_digest
from secmw.auth.config import ClaimNames
from secmw.auth.keys import (
    SUPPORTED_ALGORITHMS,
    KeySet,
    VerificationKey,
    key_from_jwk,
    key_from_pem,
)
from secmw.context import Principal, RequestContext
from secmw.errors import AuthenticationError, ConfigError, ConfigIssue

if TYPE_CHECKING:
    from secmw.auth.config import JWTConfig
    from secmw.auth.jwks import JWKSClient

_SHAPE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")


# Far beyond any real time (year 33658), yet inside what a float holds exactly enough.
_MAX_TIME = 1e12


def is_numeric_date(value: object) -> TypeGuard[int | float]:
    """A usable NumericDate: a finite int or float, not a bool, not absurdly large.

    ``NaN`` would make every comparison false (a token that never expires),
    ``Infinity`` likewise, and ``10**400`` does not convert to a float at all.
    """
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return -_MAX_TIME <= value <= _MAX_TIME
    return isinstance(value, float) and -_MAX_TIME <= value <= _MAX_TIME


def string_set(value: object) -> frozenset[str]:
    """A claim holding a space-separated string or a list of strings, as a set."""
    if isinstance(value, str):
        return frozenset(value.split())
    if isinstance(value, list):
        return frozenset(item for item in value if isinstance(item, str) and item)
    return frozenset()


class _UnknownKid(AuthenticationError):
    """The token names a key we do not have (a JWKS refresh may find it)."""


def invalid_token(
    detail: str, reason: str, *, event: str = "authn_token_invalid"
) -> AuthenticationError:
    """A 401 ``invalid_token`` denial with a client sentence and an audit reason."""
    return AuthenticationError(detail, error="invalid_token", reason=reason, event=event)


class JWTAuthenticator:
    """Authenticates ``Authorization: Bearer <JWT>`` against configured keys or a JWKS.

    Returns ``None`` when the request has no bearer token (or, with
    ``jws_only``, a token that is not a compact JWS, left for an introspection
    authenticator); raises :class:`~secmw.errors.AuthenticationError` (401
    ``invalid_token``) for any token that fails, with a short reason for the
    audit line.
    """

    __slots__ = (
        "_audience",
        "_cache",
        "_claims",
        "_clock",
        "_issuer",
        "_jwks",
        "_jws_only",
        "_keys",
        "_leeway",
        "_max_bytes",
        "_required",
        "_revocation",
        "_typ",
        "credential",
        "credential_settings",
        "fail_open_settings",
    )

    def __init__(
        self,
        keys: Iterable[VerificationKey] = (),
        *,
        issuer: str,
        audience: str | Sequence[str],
        algorithms: Iterable[str] | None = None,
        leeway: float = 30.0,
        max_token_bytes: int = 8192,
        required_claims: Iterable[str] = ("exp", "sub"),
        typ: str | None = None,
        claims: ClaimNames | None = None,
        clock: Callable[[], float] = time.time,
        jwks: JWKSClient | None = None,
        cache_size: int = 0,
        revocation: RevocationCheck | None = None,
        credentials: CredentialSettings = DEFAULT_SETTINGS,
        jws_only: bool = False,
    ) -> None:
        allowed = frozenset(algorithms) if algorithms is not None else SUPPORTED_ALGORITHMS
        unknown = allowed - SUPPORTED_ALGORITHMS
        if unknown:
            raise ConfigError([ConfigIssue("algorithms", f"unsupported: {sorted(unknown)}")])
        self._keys = KeySet(keys, allowed)
        if not self._keys and jwks is None:
            raise ConfigError([ConfigIssue("keys", "no key can verify any allowed algorithm")])
        self._jwks = jwks
        self._issuer = issuer
        self._audience = [audience] if isinstance(audience, str) else list(audience)
        self._leeway = leeway
        self._max_bytes = max_token_bytes
        self._required = sorted(set(required_claims))
        # "at+jwt" and "application/at+jwt" name one type (RFC 7515 section 4.1.9).
        self._typ = typ.lower().removeprefix("application/") if typ else None
        self._claims = claims or ClaimNames()
        self._clock = clock
        self._cache = TokenCache(cache_size) if cache_size > 0 else None
        self._revocation = revocation
        # Public: compared with ``auth.websocket``, which the scope filters follow.
        self.credential_settings = credentials
        self._jws_only = jws_only
        self.credential = "bearer"
        # Listed in sys_startup however the authenticator was built (config or code).
        self.fail_open_settings: tuple[str, ...] = (
            *(() if "exp" in self._required else ("auth.jwt.required_claims",)),
            *(("auth.websocket.query_token",) if credentials.ws_query_token else ()),
        )

    async def startup(self) -> None:
        """Fetch the JWKS keys now, so the first request does not wait for them."""
        if self._jwks is not None:
            self._adopt(await self._jwks.current())

    def bind_emitter(self, emit: Callable[[AuditEvent], Awaitable[None]]) -> None:
        """Let the JWKS client record outages and recoveries in the audit trail."""
        if self._jwks is not None:
            self._jwks.bind_emitter(emit)

    @classmethod
    def from_config(cls, config: JWTConfig, **options: Any) -> JWTAuthenticator:
        """Build from the ``auth.jwt`` section; key problems name the key index."""
        from secmw.auth.build import build_jwt  # noqa: PLC0415 - build imports this module

        return build_jwt(config, **options)

    # -- per request ---------------------------------------------------------

    def presented(self, ctx: RequestContext) -> bool:
        """True when the request carries a bearer credential (for composition checks)."""
        return bearer_token(ctx, self.credential_settings) is not None

    async def authenticate(self, ctx: RequestContext) -> Principal | None:
        """Verify the request's bearer token, if it has one."""
        token = bearer_token(ctx, self.credential_settings)
        if token is None:
            return None
        if self._jws_only and not _SHAPE.fullmatch(token):
            return None
        return await self.check(token)

    async def check(self, token: str) -> Principal:
        """Verify ``token`` (cache, JWKS refresh, revocation) and return its principal."""
        if len(token) > self._max_bytes:
            raise invalid_token("The access token is too large.", "token over max_token_bytes")
        jwks = self._jwks
        if jwks is not None and (not jwks.loaded or jwks.stale()):
            await self._reload()
        cache = self._cache
        if cache is None:
            principal = await self._verify_fresh(token)
        else:
            digest = token_digest(token)
            found = cache.get(digest, self._clock())
            if found is None:
                principal = await self._verify_fresh(token, cache, digest)
            else:
                principal = found
        if self._revocation is not None and await self._revocation.is_revoked(principal):
            raise invalid_token(
                "The access token was revoked.", "token revoked", event="authn_token_revoked"
            )
        return principal

    def verify(self, token: str) -> Principal:
        """Verify ``token`` against the keys loaded now (no cache, no refresh, no hook)."""
        if len(token) > self._max_bytes:
            raise invalid_token("The access token is too large.", "token over max_token_bytes")
        return self._decode(token, self._keys)[0]

    # -- internals -----------------------------------------------------------

    async def _reload(self) -> None:
        assert self._jwks is not None
        keys = await self._jwks.current()
        self._adopt(keys)

    def _adopt(self, keys: KeySet) -> None:
        if keys is not self._keys:
            self._keys = keys
            if self._cache is not None:
                # A key gone from the JWKS takes its verified tokens with it.
                self._cache.evict(lambda key: key in keys)

    async def _verify_fresh(
        self, token: str, cache: TokenCache | None = None, digest: bytes = b""
    ) -> Principal:
        try:
            principal, key = self._decode(token, self._keys)
        except _UnknownKid:
            if self._jwks is None:
                raise
            self._adopt(await self._jwks.refresh_for_unknown_kid())
            principal, key = self._decode(token, self._keys)
        if cache is not None and principal.expires_at is not None:
            cache.put(digest, principal, principal.expires_at, key)
        return principal

    def _decode(self, token: str, keys: KeySet) -> tuple[Principal, VerificationKey]:
        if not _SHAPE.fullmatch(token):
            raise invalid_token("The access token is malformed.", "not a compact JWS")
        header = _jose_header(token)
        key, alg = self._select_key(header, keys)
        # Time claims are checked below against our clock (PyJWT reads the real one).
        options: Any = {
            "require": self._required,
            "verify_iss": False,
            "verify_exp": False,
            "verify_nbf": False,
            "verify_iat": False,
        }
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[alg],
                audience=self._audience,
                leeway=self._leeway,
                options=options,
            )
        except jwt.InvalidAudienceError:
            raise invalid_token(
                "The access token is not meant for this resource.", "audience mismatch"
            ) from None
        except jwt.MissingRequiredClaimError as exc:
            raise invalid_token(
                "The access token lacks a required claim.", f"missing claim {exc.claim}"
            ) from None
        except jwt.InvalidSignatureError:
            raise invalid_token("The access token signature is invalid.", "bad signature") from None
        except jwt.PyJWTError as exc:
            raise invalid_token(
                "The access token is invalid.", f"invalid token: {type(exc).__name__}"
            ) from None
        return self._principal(token, claims), key

    def _select_key(self, header: Mapping[str, Any], keys: KeySet) -> tuple[VerificationKey, str]:
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in SUPPORTED_ALGORITHMS:
            raise invalid_token(
                "The access token uses an unacceptable algorithm.", f"alg {alg!r} refused"
            )
        if "crit" in header:
            raise invalid_token(
                "The access token uses an unsupported extension.", "crit header present"
            )
        if self._typ is not None:
            typ = header.get("typ")
            if not isinstance(typ, str) or typ.lower().removeprefix("application/") != self._typ:
                raise invalid_token("The access token has the wrong type.", f"typ {typ!r} refused")
        kid = header.get("kid")
        if kid is not None:
            if not isinstance(kid, str):
                raise invalid_token("The access token is malformed.", "kid is not a string")
            key = keys.by_kid.get(kid)
            if key is None:
                raise _UnknownKid(
                    "The access token was signed by an unknown key.",
                    error="invalid_token",
                    reason="unknown kid",
                    event="authn_token_invalid",
                )
            if alg not in key.algorithms:
                raise invalid_token(
                    "The access token uses an unacceptable algorithm.",
                    f"alg {alg} not allowed for key",
                )
            return key, alg
        # Without a kid: the one key that fits alg, named or not. Keys are never
        # tried in turn, so two fitting keys refuse the token (fail closed).
        key = keys.sole.get(alg)
        if key is None:
            raise invalid_token(
                "The access token does not name its key.", "no kid and no unique key"
            )
        return key, alg

    def _principal(self, token: str, claims: Mapping[str, Any]) -> Principal:
        names = self._claims
        if claims.get("iss") != self._issuer:
            raise invalid_token("The access token comes from an unknown issuer.", "issuer mismatch")
        self._check_times(claims)
        subject = claims.get(names.subject)
        if not isinstance(subject, str) or not subject:
            raise invalid_token("The access token has no subject.", "missing or empty subject")
        jti = claims.get("jti")
        credential_id = (
            f"jti:{jti}"
            if isinstance(jti, str) and jti
            # The signed part only: an ECDSA signature has a second valid form
            # (s -> n - s), which must not make the same token a second credential.
            else "sha256:" + hashlib.sha256(token.rpartition(".")[0].encode()).hexdigest()[:16]
        )
        return principal_from_claims(claims, names, auth_method="jwt", credential_id=credential_id)

    def _check_times(self, claims: Mapping[str, Any]) -> None:
        """``exp``, ``nbf`` and ``iat`` must be JSON numbers and fit the clock."""
        for claim in ("exp", "nbf", "iat"):
            if claim in claims and not is_numeric_date(claims[claim]):
                raise invalid_token("The access token is invalid.", f"{claim} is not a number")
        now = self._clock()
        if "exp" in claims and claims["exp"] <= now - self._leeway:
            raise invalid_token(
                "The access token expired.", "token expired", event="authn_token_expired"
            )
        if "nbf" in claims and claims["nbf"] > now + self._leeway:
            raise invalid_token("The access token is not valid yet.", "token not yet valid")
        if "iat" in claims and claims["iat"] > now + self._leeway:
            raise invalid_token("The access token is not valid yet.", "token issued in the future")


def _jose_header(token: str) -> Mapping[str, Any]:
    """The JOSE header of a token whose shape was checked.

    Parsed here rather than with ``jwt.get_unverified_header``, which re-checks
    every character of every segment in Python and costs a third of a verification.
    """
    segment = token[: token.index(".")]
    try:
        header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (ValueError, binascii.Error, RecursionError):
        raise invalid_token("The access token is malformed.", "unreadable JOSE header") from None
    if not isinstance(header, dict):
        raise invalid_token("The access token is malformed.", "unreadable JOSE header")
    return header


def principal_from_claims(
    claims: Mapping[str, Any],
    names: ClaimNames,
    *,
    auth_method: str,
    credential_id: str | None,
) -> Principal:
    """Map verified claims to a :class:`Principal` (JWT and introspection share this)."""
    tenant = claims.get(names.tenant)
    tier = claims.get(names.tier)
    acr = claims.get(names.acr)
    auth_time = claims.get(names.auth_time)
    exp = claims.get("exp")
    return Principal(
        subject=str(claims.get(names.subject) or ""),
        tenant=tenant if isinstance(tenant, str) else None,
        roles=string_set(claims.get(names.roles)),
        scopes=string_set(claims.get(names.scope)) | string_set(claims.get(names.scp)),
        claims=MappingProxyType(dict(claims)),
        tier=tier if isinstance(tier, str) else None,
        auth_method=auth_method,
        acr=acr if isinstance(acr, str) else None,
        amr=tuple(sorted(string_set(claims.get(names.amr)))),
        auth_time=float(auth_time) if is_numeric_date(auth_time) else None,
        expires_at=float(exp) if is_numeric_date(exp) else None,
        credential_id=credential_id,
    )


__all__ = [
    "SUPPORTED_ALGORITHMS",
    "JWTAuthenticator",
    "VerificationKey",
    "invalid_token",
    "is_numeric_date",
    "key_from_jwk",
    "key_from_pem",
    "principal_from_claims",
    "string_set",
]
