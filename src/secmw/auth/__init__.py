"""Authentication: turn request credentials into a Principal."""

from secmw.auth.base import Authenticator, NoAuthenticator
from secmw.auth.bearer import bearer_token
from secmw.auth.jwt import JWTAuthenticator, VerificationKey, key_from_jwk, key_from_pem

__all__ = [
    "Authenticator",
    "JWTAuthenticator",
    "NoAuthenticator",
    "VerificationKey",
    "bearer_token",
    "key_from_jwk",
    "key_from_pem",
]
