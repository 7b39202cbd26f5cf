"""Helpers for testing apps protected by secmw: a token issuer and an audit capture.

``TokenIssuer`` generates a signing key, publishes it as a JWKS or as an
``auth.jwt`` config section, and mints tokens with any claims, so tests obtain
real, verifiable tokens without an authorization server. ``AuditCapture`` is an
in-memory audit sink with look-up helpers. ``InMemoryJWKS`` serves keys (with
outage modes) and ``MockAuthorizationServer`` runs the OAuth 2.1 code flow with
PKCE, refresh and revocation (both from :mod:`secmw._testing_oauth`).
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from secmw.audit.base import AuditEvent, MemoryAuditSink

Algorithm = Literal["RS256", "ES256", "EdDSA"]


class TokenIssuer:
    """A local JWT issuer with a fresh key pair (RS256, ES256 or EdDSA)."""

    def __init__(
        self,
        *,
        issuer: str = "https://issuer.example.test",
        audience: str = "https://api.example.test",
        algorithm: Algorithm = "ES256",
        kid: str | None = None,
    ) -> None:
        self.issuer = issuer
        self.audience = audience
        self.algorithm = algorithm
        self.kid = kid or f"test-{secrets.token_hex(4)}"
        if algorithm == "RS256":
            self._private: Any = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        elif algorithm == "ES256":
            self._private = ec.generate_private_key(ec.SECP256R1())
        elif algorithm == "EdDSA":
            self._private = ed25519.Ed25519PrivateKey.generate()
        else:
            raise ValueError(f"unsupported algorithm {algorithm!r}")

    @classmethod
    def from_pem(cls, pem: str | bytes, **options: Any) -> TokenIssuer:
        """An issuer signing with an existing private key (RS256, ES256 or EdDSA by type)."""
        raw = pem.encode() if isinstance(pem, str) else pem
        private: Any = serialization.load_pem_private_key(raw, password=None)
        algorithm: Algorithm
        if isinstance(private, rsa.RSAPrivateKey):
            algorithm = "RS256"
        elif isinstance(private, ec.EllipticCurvePrivateKey) and isinstance(
            private.curve, ec.SECP256R1
        ):
            algorithm = "ES256"
        elif isinstance(private, ed25519.Ed25519PrivateKey):
            algorithm = "EdDSA"
        else:
            raise TypeError("not an RSA, P-256 or Ed25519 private key (RS256, ES256 or EdDSA)")
        issuer = cls(algorithm=algorithm, **options)
        issuer._private = private
        return issuer

    @property
    def public_jwk(self) -> dict[str, Any]:
        """The public key as a JWK with ``kid``, ``alg`` and ``use``."""
        algorithm = jwt.algorithms.get_default_algorithms()[self.algorithm]
        jwk: dict[str, Any] = json.loads(algorithm.to_jwk(self._private.public_key()))
        jwk.update({"kid": self.kid, "alg": self.algorithm, "use": "sig"})
        return jwk

    def jwks(self) -> dict[str, Any]:
        """A JWKS document holding the public key."""
        return {"keys": [self.public_jwk]}

    def private_pem(self) -> str:
        """The private key in PKCS#8 PEM (for tools that sign outside this class)."""
        pem: bytes = self._private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return pem.decode()

    def jwt_config(self, **overrides: Any) -> dict[str, Any]:
        """An ``auth.jwt`` configuration section that trusts this issuer."""
        section: dict[str, Any] = {
            "issuer": self.issuer,
            "audience": self.audience,
            "keys": [{"jwk": self.public_jwk}],
        }
        section.update(overrides)
        return section

    def mint(
        self,
        subject: str = "user-1",
        *,
        scopes: Iterable[str] = (),
        roles: Iterable[str] = (),
        tenant: str | None = None,
        tier: str | None = None,
        acr: str | None = None,
        amr: Iterable[str] = (),
        expires_in: float = 300,
        claims: Mapping[str, Any] | None = None,
        headers: Mapping[str, Any] | None = None,
        now: float | None = None,
    ) -> str:
        """Sign a token; ``claims`` and ``headers`` override anything set here.

        A claim or header set to ``None`` is removed, to mint tokens that lack it.
        """
        issued = time.time() if now is None else now
        payload: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": subject,
            "iat": int(issued),
            "exp": int(issued + expires_in),
            "jti": secrets.token_hex(8),
        }
        if scopes:
            payload["scope"] = " ".join(scopes)
        if roles:
            payload["roles"] = list(roles)
        optional = {"tenant": tenant, "tier": tier, "acr": acr}
        payload.update({name: value for name, value in optional.items() if value is not None})
        if amr:
            payload["amr"] = list(amr)
        for name, value in (claims or {}).items():
            if value is None:
                payload.pop(name, None)
            else:
                payload[name] = value
        header: dict[str, Any] = {"kid": self.kid, "typ": "at+jwt"}
        for name, value in (headers or {}).items():
            if value is None:
                header.pop(name, None)
            else:
                header[name] = value
        return jwt.encode(payload, self._private, algorithm=self.algorithm, headers=header)


class AuditCapture(MemoryAuditSink):
    """An in-memory audit sink with helpers for assertions."""

    __slots__ = ()

    bounded_emit = True  # MemoryAuditSink's emit, unchanged

    def named(self, name: str) -> list[AuditEvent]:
        """Every event called ``name``."""
        return [event for event in self.events if event.name == name]

    def for_request(self, request_id: str) -> list[AuditEvent]:
        """Every event of one request."""
        return [event for event in self.events if event.request_id == request_id]

    @property
    def last(self) -> AuditEvent:
        """The most recent event (``IndexError`` when there is none)."""
        return self.events[-1]

    def lines(self) -> list[str]:
        """Every event rendered as its JSON line."""
        return [event.to_json() for event in self.events]


from secmw._testing_oauth import InMemoryJWKS, MockAuthorizationServer  # noqa: E402 - re-export

__all__ = ["AuditCapture", "InMemoryJWKS", "MockAuthorizationServer", "TokenIssuer"]
