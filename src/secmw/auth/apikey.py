"""API-key authentication: ``X-API-Key: <key>`` or ``Authorization: ApiKey <key>``.

The key's public id selects the record; the SHA-256 hash of the presented key is
compared with the stored one in constant time (``hmac.compare_digest``), and an
unknown id is compared against a dummy hash so both paths cost the same.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable

from secmw.auth.apikey_store import KEY_FORMAT, APIKeyRecord, APIKeyStore, hash_key
from secmw.context import Principal, RequestContext
from secmw.errors import AuthenticationError

_DUMMY_HASH = hash_key("smw_000000000000_" + "0" * 43)


def _bad(detail: str, reason: str) -> AuthenticationError:
    return AuthenticationError(detail, error="invalid_request", reason=reason)


def _invalid(detail: str, reason: str, event: str = "authn_token_invalid") -> AuthenticationError:
    return AuthenticationError(detail, error="invalid_token", reason=reason, event=event)


class APIKeyAuthenticator:
    """Authenticates API keys from a header or the ``Authorization`` ``ApiKey`` scheme.

    A request with the API-key header *and* an ``Authorization`` header is
    refused (400): two credentials that could name two principals. A presented
    key that is malformed, unknown, revoked or expired is a 401.
    """

    __slots__ = ("_clock", "_header", "_principals", "_scheme", "_store", "credential")

    def __init__(
        self,
        store: APIKeyStore,
        *,
        header: str = "x-api-key",
        authorization_scheme: str | None = "ApiKey",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._header = header.lower()
        self._scheme = authorization_scheme.lower() if authorization_scheme else None
        self._clock = clock
        # One principal per record object: a changed record (revoked, reloaded)
        # is a new object, so a stale principal is never reused.
        self._principals: dict[str, tuple[APIKeyRecord, Principal]] = {}
        self.credential = "api_key"

    @property
    def header(self) -> str:
        """The header the key is read from (lower-case)."""
        return self._header

    def _credential(self, ctx: RequestContext) -> str | None:
        # Every spelling with "_" for "-": WSGI bridges and Django hand X_API_Key to
        # the app as X-API-Key, so it is this credential (and a second one) too.
        values = ctx.headers.get_merged(self._header)
        authorization = ctx.headers.get_all("authorization")
        if len(values) > 1 or len(authorization) > 1:
            raise _bad("A credential header is sent more than once.", "duplicate credential header")
        if values and authorization:
            raise _bad(
                "The request carries more than one credential.",
                f"both {self._header} and Authorization",
            )
        if values:
            return values[0].strip()
        if authorization and self._scheme is not None:
            scheme, _, credential = authorization[0].strip().partition(" ")
            if scheme.lower() == self._scheme:
                return credential.strip()
        return None

    def presented(self, ctx: RequestContext) -> bool:
        """True when the request carries an API key (for composition checks)."""
        return self._credential(ctx) is not None

    async def authenticate(self, ctx: RequestContext) -> Principal | None:
        """Check the request's API key, if it has one."""
        key = self._credential(ctx)
        if key is None:
            return None
        return await self.check(key)

    async def check(self, key: str) -> Principal:
        """Verify one presented key and return the principal it stands for."""
        match = KEY_FORMAT.fullmatch(key)
        if match is None:
            raise _invalid("The API key is invalid.", "malformed api key")
        key_id = match.group(1)
        record = await self._store.get(key_id)
        presented = hash_key(key)
        expected = record.key_hash if record is not None else _DUMMY_HASH
        if not hmac.compare_digest(presented, expected) or record is None:
            raise _invalid("The API key is invalid.", "unknown api key")
        if record.revoked_at is not None:
            raise _invalid(
                "The API key is invalid.", "api key revoked", event="authn_token_revoked"
            )
        if record.expires_at is not None and self._clock() >= record.expires_at:
            raise _invalid("The API key expired.", "api key expired", event="authn_token_expired")
        known = self._principals.get(key_id)
        if known is not None and known[0] is record:
            return known[1]
        principal = Principal(
            subject=record.subject,
            tenant=record.tenant,
            roles=frozenset(record.roles),
            scopes=frozenset(record.scopes),
            tier=record.tier,
            auth_method="api_key",
            expires_at=record.expires_at,
            credential_id=f"apikey:{key_id}",
        )
        self._principals[key_id] = (record, principal)
        return principal


__all__ = ["APIKeyAuthenticator"]
