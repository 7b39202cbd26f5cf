"""Verification keys: JWK/PEM parsing, the key-decides-the-algorithm rule, key sets.

RFC 8725 section 3.1: an RSA key verifies only RS*/PS*, a P-256 key only ES256,
an Ed25519 key only EdDSA, a symmetric key only HS*; a JWK's own ``alg`` or the
configured ``alg`` pins it further. ``none`` is never accepted, RSA keys under
2048 bits and symmetric keys under 32 bytes are refused.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key

_RSA_ALGS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
_HMAC_ALGS = frozenset({"HS256", "HS384", "HS512"})
_EC_ALGS = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512", "secp256k1": "ES256K"}
SUPPORTED_ALGORITHMS = _RSA_ALGS | _HMAC_ALGS | frozenset(_EC_ALGS.values()) | {"EdDSA"}
_MIN_HMAC_BYTES = 32
_MIN_RSA_BITS = 2048
_STRING_MEMBERS = ("kty", "use", "alg", "kid", "crv")


@dataclass(frozen=True, slots=True, eq=False)
class VerificationKey:
    """A public (or shared) key with the algorithms it may verify.

    Compared by identity: two keys are the same only if they are the same object,
    which is what the token cache needs to evict tokens of a removed key.
    """

    kid: str | None
    key: Any
    algorithms: frozenset[str]


def is_signature_jwk(entry: Mapping[str, Any]) -> bool:
    """Whether a JWK of a published set is one to verify signatures with.

    Not an encryption key (``use``), not one whose ``key_ops`` leave out
    ``verify`` (RFC 7517 sections 4.2 and 4.3), and not a symmetric key: a
    shared secret in a published document would let anyone who reads it sign.
    A ``use`` or ``key_ops`` of the wrong JSON type says nothing either way: such
    a key is left for :func:`key_from_jwk` to refuse as malformed.
    """
    use = entry.get("use", "sig")
    if (isinstance(use, str) and use != "sig") or entry.get("kty") == "oct":
        return False
    operations = entry.get("key_ops")
    return not isinstance(operations, list) or "verify" in operations


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
    if not isinstance(jwk, Mapping):  # a JWKS document is untyped JSON
        raise ValueError("a JWK must be a JSON object")  # noqa: TRY004 - one error for all bad JWKs
    data = dict(jwk)
    # RFC 7517 section 4: checked before use, or a member of another JSON type
    # (an object as alg) fails later as a TypeError instead of an unusable key.
    for member in _STRING_MEMBERS:
        if member in data and not isinstance(data[member], str):
            raise ValueError(f"{member} is not a string")
    operations = data.get("key_ops")
    if operations is not None and (
        not isinstance(operations, list) or not all(isinstance(op, str) for op in operations)
    ):
        raise ValueError("key_ops is not a list of strings")
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
    named = kid or data.get("kid")
    return VerificationKey(named, key, _algorithms_for(key, pinned))


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


class KeySet:
    """Keys by exact ``kid``, plus keys without one, restricted to allowed algorithms.

    ``sole`` maps each algorithm that exactly one key (named or not) can verify
    to that key: the only key a token without ``kid`` may be checked with.
    """

    __slots__ = ("_restricted", "by_kid", "members", "sole", "unnamed")

    def __init__(
        self,
        keys: Iterable[VerificationKey],
        allowed: frozenset[str],
        previous: KeySet | None = None,
    ) -> None:
        self.by_kid: dict[str, VerificationKey] = {}
        self.unnamed: list[VerificationKey] = []
        # A key narrowed to the allowed algorithms keeps the narrowed object of the
        # ``previous`` set: the token cache evicts by identity, and an unchanged
        # key must not look like a new one after every JWKS refresh.
        self._restricted: dict[VerificationKey, VerificationKey] = {}
        before = previous._restricted if previous is not None else {}
        for given in keys:
            usable = given.algorithms & allowed
            if not usable:
                continue
            key = given
            if usable != given.algorithms:
                known = before.get(given)
                key = (
                    known
                    if known is not None and known.algorithms == usable
                    else VerificationKey(given.kid, given.key, usable)
                )
                self._restricted[given] = key
            if key.kid is None:
                self.unnamed.append(key)
            else:
                self.by_kid[key.kid] = key
        usable_keys = (*self.by_kid.values(), *self.unnamed)
        self.members: frozenset[int] = frozenset(id(key) for key in usable_keys)
        fitting: dict[str, list[VerificationKey]] = {}
        for key in usable_keys:
            for algorithm in key.algorithms:
                fitting.setdefault(algorithm, []).append(key)
        self.sole: dict[str, VerificationKey] = {
            algorithm: found[0] for algorithm, found in fitting.items() if len(found) == 1
        }

    def __bool__(self) -> bool:
        return bool(self.by_kid or self.unnamed)

    def __len__(self) -> int:
        return len(self.by_kid) + len(self.unnamed)

    def __contains__(self, key: object) -> bool:
        return id(key) in self.members


__all__ = [
    "SUPPORTED_ALGORITHMS",
    "KeySet",
    "VerificationKey",
    "is_signature_jwk",
    "key_from_jwk",
    "key_from_pem",
]
