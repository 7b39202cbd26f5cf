"""Authentication: turn request credentials into a Principal."""

from secmw.auth.apikey import APIKeyAuthenticator
from secmw.auth.apikey_store import (
    APIKeyRecord,
    APIKeyStore,
    FileAPIKeyStore,
    MemoryAPIKeyStore,
)
from secmw.auth.base import Authenticator, NoAuthenticator
from secmw.auth.bearer import CredentialSettings, bearer_token, encode_subprotocol
from secmw.auth.build import build_authenticator
from secmw.auth.cache import MemoryDenylist, RevocationCheck, TokenCache
from secmw.auth.composite import CompositeAuthenticator
from secmw.auth.introspection import IntrospectionAuthenticator, IntrospectionError
from secmw.auth.jwks import FetchResult, JWKSClient, JWKSFetchError
from secmw.auth.jwt import JWTAuthenticator, VerificationKey, key_from_jwk, key_from_pem
from secmw.auth.stepup import MFA_AMR_VALUES, step_up_needed

__all__ = [
    "MFA_AMR_VALUES",
    "APIKeyAuthenticator",
    "APIKeyRecord",
    "APIKeyStore",
    "Authenticator",
    "CompositeAuthenticator",
    "CredentialSettings",
    "FetchResult",
    "FileAPIKeyStore",
    "IntrospectionAuthenticator",
    "IntrospectionError",
    "JWKSClient",
    "JWKSFetchError",
    "JWTAuthenticator",
    "MemoryAPIKeyStore",
    "MemoryDenylist",
    "NoAuthenticator",
    "RevocationCheck",
    "TokenCache",
    "VerificationKey",
    "bearer_token",
    "build_authenticator",
    "encode_subprotocol",
    "key_from_jwk",
    "key_from_pem",
    "step_up_needed",
]
