"""JWT bearer authentication on PyJWT, following RFC 8725 (JWT BCP).

The trade-offs, each deliberate:

* The key decides the algorithm: an RSA key verifies only RS*/PS*, a P-256 key
  only ES256, an Ed25519 key only EdDSA, a symmetric key only HS*; a JWK's own
  ``alg`` or the configured ``alg`` pins it further. ``none`` is never accepted.
* ``kid`` is only ever an exact dictionary key; ``jku``, ``x5u``, ``jwk`` and
  ``x5c`` headers are ignored, and any ``crit`` header is refused (we implement no
  extension).
* The token size is checked before any parsing; ``iss`` must equal the issuer
  exactly; ``exp``/``nbf``/``iat`` must be JSON numbers (a numeric string is
  refused, though PyJWT alone would accept it).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key

from secmw.auth.bearer import bearer_token
from secmw.auth.config import ClaimNames
from secmw.context import Principal, RequestContext
from secmw.errors import AuthenticationError, ConfigError, ConfigIssue

if TYPE_CHECKING:
    from secmw.auth.config import JWTConfig

_RSA_ALGS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
_HMAC_ALGS = frozenset({"HS256", "HS384", "HS512"})
_EC_ALGS = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512", "secp256k1": "ES256K"}
SUPPORTED_ALGORITHMS = _RSA_ALGS | _HMAC_ALGS | frozenset(_EC_ALGS.values()) | {"EdDSA"}
_SHAPE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
_MIN_HMAC_BYTES = 32
_MIN_RSA_BITS = 2048


@dataclass(frozen=True, slots=True)
class VerificationKey:
    """A public (or shared) key with the algorithms it may verify."""

    kid: str | None
    key: Any
    algorithms: frozenset[str]


def _algorithms_for(key: Any, pinned: str | None) -> frozenset[str]:
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < _MIN_RSA_BITS:
            raise ValueError(f"RSA key of {key.key_size} bits is too small (2048 minimum)")
        allowed = _RSA_ALGS
    elif isinstance(key, ec.EllipticCurvePublicKey):
        curve = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}.get(
            key.curve.name, key.curve.name
        )
        if curve not in _EC_ALGS:
            raise ValueError(f"unsupported elliptic curve {key.curve.name}")
        allowed = frozenset({_EC_ALGS[curve]})
    elif isinstance(key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
        allowed = frozenset({"EdDSA"})
    elif isinstance(key, bytes):
        if len(key) < _MIN_HMAC_BYTES:
            raise ValueError("symmetric key shorter than 32 bytes")
        allowed = _HMAC_ALGS
    else:
        raise ValueError(f"unsupported key type {type(key).__name__}")  # noqa: TRY004 - config error
    if pinned is not None:
        if pinned not in allowed:
            raise ValueError(f"alg {pinned!r} does not fit this key type")
        return frozenset({pinned})
    return allowed


def key_from_jwk(
    jwk: Mapping[str, Any], *, kid: str | None = None, alg: str | None = None
) -> VerificationKey:
    """A :class:`VerificationKey` from a JWK dict; private parts are ignored."""
    data = dict(jwk)
    if data.get("alg") == "none":
        raise ValueError("alg 'none' is never accepted")
    try:
        parsed = jwt.PyJWK(data)
    except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"unusable JWK: {exc}") from None
    key = parsed.key
    if hasattr(key, "public_key") and not isinstance(key, bytes):
        key = key.public_key()
    pinned = alg or data.get("alg")
    return VerificationKey(kid or data.get("kid"), key, _algorithms_for(key, pinned))


def key_from_pem(
    pem: str | bytes, *, kid: str | None = None, alg: str | None = None
) -> VerificationKey:
    """A :class:`VerificationKey` from a PEM public key (a private key's public half)."""
    raw = pem.encode() if isinstance(pem, str) else pem
    try:
        key: Any = load_pem_public_key(raw)
    except ValueError:
        try:
            key = load_pem_private_key(raw, password=None).public_key()
        except (ValueError, TypeError) as exc:
            raise ValueError(f"unusable PEM key: {exc}") from None
    return VerificationKey(kid, key, _algorithms_for(key, alg))


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _string_set(value: object) -> frozenset[str]:
    if isinstance(value, str):
        return frozenset(value.split())
    if isinstance(value, list):
        return frozenset(item for item in value if isinstance(item, str) and item)
    return frozenset()


class JWTAuthenticator:
    """Authenticates ``Authorization: Bearer <JWT>`` against configured keys.

    Returns ``None`` when the request has no bearer token; raises
    :class:`~secmw.errors.AuthenticationError` (401 ``invalid_token``) for any token
    that fails, with a short reason for the audit line.
    """

    def __init__(
        self,
        keys: Iterable[VerificationKey],
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
    ) -> None:
        allowed = frozenset(algorithms) if algorithms is not None else SUPPORTED_ALGORITHMS
        unknown = allowed - SUPPORTED_ALGORITHMS
        if unknown:
            raise ConfigError([ConfigIssue("algorithms", f"unsupported: {sorted(unknown)}")])
        self._by_kid: dict[str, VerificationKey] = {}
        self._unnamed: list[VerificationKey] = []
        for key in keys:
            usable = VerificationKey(key.kid, key.key, key.algorithms & allowed)
            if not usable.algorithms:
                continue
            if key.kid is None:
                self._unnamed.append(usable)
            else:
                self._by_kid[key.kid] = usable
        if not self._by_kid and not self._unnamed:
            raise ConfigError([ConfigIssue("keys", "no key can verify any allowed algorithm")])
        self._issuer = issuer
        self._audience = [audience] if isinstance(audience, str) else list(audience)
        self._leeway = leeway
        self._max_bytes = max_token_bytes
        self._required = sorted(set(required_claims))
        self._typ = typ.lower() if typ else None
        self._claims = claims or ClaimNames()
        self._clock = clock

    @classmethod
    def from_config(cls, config: JWTConfig) -> JWTAuthenticator:
        """Build from the ``auth.jwt`` section; key problems name the key index."""
        keys: list[VerificationKey] = []
        issues: list[ConfigIssue] = []
        for index, entry in enumerate(config.keys):
            try:
                if entry.jwk is not None:
                    keys.append(key_from_jwk(entry.jwk, kid=entry.kid, alg=entry.alg))
                else:
                    pem = entry.pem if entry.pem is not None else _read(entry.pem_file)
                    keys.append(key_from_pem(pem, kid=entry.kid, alg=entry.alg))
            except (ValueError, OSError) as exc:
                issues.append(ConfigIssue(f"keys[{index}]", str(exc)))
        if config.jwks_file is not None:
            try:
                document = json.loads(_read(config.jwks_file))
                entries = document["keys"]
                if not isinstance(entries, list):
                    raise TypeError("'keys' is not a list")
            except (OSError, ValueError, KeyError, TypeError) as exc:
                issues.append(ConfigIssue("jwks_file", f"not a JWKS document: {exc}"))
            else:
                for index, jwk in enumerate(entries):
                    try:
                        keys.append(key_from_jwk(jwk))
                    except ValueError as exc:
                        issues.append(ConfigIssue(f"jwks_file.keys[{index}]", str(exc)))
        if issues:
            raise ConfigError(issues)
        return cls(
            keys,
            issuer=config.issuer,
            audience=config.audience,
            algorithms=config.algorithms,
            leeway=config.leeway,
            max_token_bytes=config.max_token_bytes,
            required_claims=config.required_claims,
            typ=config.typ,
            claims=config.claims,
        )

    async def authenticate(self, ctx: RequestContext) -> Principal | None:
        """Verify the request's bearer token, if it has one."""
        token = bearer_token(ctx)
        if token is None:
            return None
        return self.verify(token)

    def verify(self, token: str) -> Principal:
        """Verify ``token`` and map its claims to a :class:`Principal`."""
        if len(token) > self._max_bytes:
            raise _invalid("The access token is too large.", "token over max_token_bytes")
        if not _SHAPE.fullmatch(token):
            raise _invalid("The access token is malformed.", "not a compact JWS")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise _invalid("The access token is malformed.", "unreadable JOSE header") from None
        key, alg = self._select_key(header)
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
            raise _invalid(
                "The access token is not meant for this resource.", "audience mismatch"
            ) from None
        except jwt.MissingRequiredClaimError as exc:
            raise _invalid(
                "The access token lacks a required claim.", f"missing claim {exc.claim}"
            ) from None
        except jwt.InvalidSignatureError:
            raise _invalid("The access token signature is invalid.", "bad signature") from None
        except jwt.PyJWTError as exc:
            raise _invalid(
                "The access token is invalid.", f"invalid token: {type(exc).__name__}"
            ) from None
        return self._principal(token, claims)

    def _select_key(self, header: Mapping[str, Any]) -> tuple[VerificationKey, str]:
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in SUPPORTED_ALGORITHMS:
            raise _invalid(
                "The access token uses an unacceptable algorithm.", f"alg {alg!r} refused"
            )
        if "crit" in header:
            raise _invalid("The access token uses an unsupported extension.", "crit header present")
        if self._typ is not None:
            typ = header.get("typ")
            if not isinstance(typ, str) or typ.lower().removeprefix("application/") != self._typ:
                raise _invalid("The access token has the wrong type.", f"typ {typ!r} refused")
        kid = header.get("kid")
        if kid is not None:
            if not isinstance(kid, str):
                raise _invalid("The access token is malformed.", "kid is not a string")
            key = self._by_kid.get(kid)
            if key is None:
                raise _invalid("The access token was signed by an unknown key.", "unknown kid")
            if alg not in key.algorithms:
                raise _invalid(
                    "The access token uses an unacceptable algorithm.",
                    f"alg {alg} not allowed for key",
                )
            return key, alg
        candidates = [key for key in self._unnamed if alg in key.algorithms]
        if not candidates and len(self._by_kid) == 1:
            only = next(iter(self._by_kid.values()))
            if alg in only.algorithms:
                candidates = [only]
        if len(candidates) != 1:
            raise _invalid("The access token does not name its key.", "no kid and no unique key")
        return candidates[0], alg

    def _principal(self, token: str, claims: Mapping[str, Any]) -> Principal:
        names = self._claims
        if claims.get("iss") != self._issuer:
            raise _invalid("The access token comes from an unknown issuer.", "issuer mismatch")
        self._check_times(claims)
        subject = claims.get(names.subject)
        if not isinstance(subject, str) or not subject:
            raise _invalid("The access token has no subject.", "missing or empty subject")
        scopes = _string_set(claims.get(names.scope)) | _string_set(claims.get(names.scp))
        tenant = claims.get(names.tenant)
        tier = claims.get(names.tier)
        acr = claims.get(names.acr)
        auth_time = claims.get(names.auth_time)
        jti = claims.get("jti")
        credential_id = (
            f"jti:{jti}"
            if isinstance(jti, str) and jti
            else "sha256:" + hashlib.sha256(token.encode()).hexdigest()[:16]
        )
        return Principal(
            subject=subject,
            tenant=tenant if isinstance(tenant, str) else None,
            roles=_string_set(claims.get(names.roles)),
            scopes=scopes,
            claims=MappingProxyType(dict(claims)),
            tier=tier if isinstance(tier, str) else None,
            auth_method="jwt",
            acr=acr if isinstance(acr, str) else None,
            amr=tuple(sorted(_string_set(claims.get(names.amr)))),
            auth_time=float(auth_time)
            if isinstance(auth_time, (int, float)) and not isinstance(auth_time, bool)
            else None,
            expires_at=float(claims["exp"]) if _is_number(claims.get("exp")) else None,
            credential_id=credential_id,
        )

    def _check_times(self, claims: Mapping[str, Any]) -> None:
        """``exp``, ``nbf`` and ``iat`` must be JSON numbers and fit the clock."""
        for claim in ("exp", "nbf", "iat"):
            if claim in claims and not _is_number(claims[claim]):
                raise _invalid("The access token is invalid.", f"{claim} is not a number")
        now = self._clock()
        if "exp" in claims and claims["exp"] <= now - self._leeway:
            raise _invalid(
                "The access token expired.", "token expired", event="authn_token_expired"
            )
        if "nbf" in claims and claims["nbf"] > now + self._leeway:
            raise _invalid("The access token is not valid yet.", "token not yet valid")
        if "iat" in claims and claims["iat"] > now + self._leeway:
            raise _invalid("The access token is not valid yet.", "token issued in the future")


def _read(path: Path | None) -> str:
    if path is None:
        raise ValueError("no file given")
    return Path(path).read_text(encoding="utf-8")


def _invalid(
    detail: str, reason: str, *, event: str = "authn_token_invalid"
) -> AuthenticationError:
    return AuthenticationError(detail, error="invalid_token", reason=reason, event=event)


__all__ = [
    "SUPPORTED_ALGORITHMS",
    "JWTAuthenticator",
    "VerificationKey",
    "key_from_jwk",
    "key_from_pem",
]
