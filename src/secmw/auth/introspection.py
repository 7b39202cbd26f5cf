"""Opaque bearer tokens checked by OAuth 2.0 token introspection (RFC 7662).

The resource server POSTs ``token=...&token_type_hint=access_token`` to the
authorization server's introspection endpoint, authenticated as a client (HTTP
Basic, RFC 7662 section 2.1), and trusts the ``active`` member (section 2.2).

Answers are cached by the token's SHA-256 digest: an active token until its
``exp`` (and at most ``cache_ttl``), an inactive one for ``negative_cache_ttl``.
A revoked token may thus be accepted for up to ``cache_ttl`` seconds; lower it
(or set it to 0) when revocation must bite at once. Inactive answers are kept
apart, so made-up tokens cannot push active ones out. Requests carrying the same
token while it is being introspected wait for that one call, and at most
``max_concurrent`` calls are out at once (waiting for a turn counts against the
timeout): a flood of made-up tokens costs the authorization server a bounded
number of calls in flight. An endpoint that fails,
times out or answers garbage is a :class:`~secmw.errors.ComponentError` (503),
never anonymous access. ``timeout`` bounds the whole exchange, and an answer over
:data:`MAX_ANSWER_BYTES` is garbage. The client id and secret are form-encoded
before the Basic encoding (RFC 6749 section 2.3.1). httpx is needed
(``pip install 'secmw[gateway]'``).
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote_plus

import anyio

from secmw.auth.bearer import DEFAULT_SETTINGS, CredentialSettings, bearer_token
from secmw.auth.cache import TokenCache, token_digest
from secmw.auth.config import ClaimNames
from secmw.auth.jwt import invalid_token, is_numeric_date, principal_from_claims
from secmw.context import ANONYMOUS, Principal, RequestContext
from secmw.errors import AuthenticationError, ComponentError, ConfigError

if TYPE_CHECKING:
    import httpx


# The largest introspection answer read (a few hundred bytes is usual).
MAX_ANSWER_BYTES = 1024 * 1024


class IntrospectionError(ComponentError):
    """The introspection endpoint failed or answered something unusable."""


def _httpx() -> Any:
    try:
        import httpx  # noqa: PLC0415 - optional dependency, imported when configured
    except ImportError:
        raise ConfigError("token introspection needs httpx: pip install 'secmw[gateway]'") from None
    return httpx


class _Flight:
    """One introspection call that requests with the same token share."""

    __slots__ = ("done", "error", "principal")

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.principal: Principal | None = None
        self.error: AuthenticationError | ComponentError | None = None


class IntrospectionAuthenticator:
    """Authenticates opaque bearer tokens through an RFC 7662 endpoint.

    ``audience`` (the resource the tokens must name) is required, unless
    ``verify_audience=False`` turns the check off.
    """

    __slots__ = (
        "_audience",
        "_auth",
        "_cache",
        "_cache_ttl",
        "_claims",
        "_client",
        "_clock",
        "_endpoint",
        "_inflight",
        "_issuer",
        "_limiter",
        "_max_bytes",
        "_negative",
        "_negative_ttl",
        "_own_client",
        "_timeout",
        "credential",
        "credential_settings",
        "fail_open_settings",
        "requests",
    )

    def __init__(
        self,
        endpoint: str,
        *,
        client_id: str,
        client_secret: str,
        audience: str | Sequence[str] | None = None,
        issuer: str | None = None,
        timeout: float = 5.0,
        cache_size: int = 10_000,
        cache_ttl: float = 300.0,
        negative_cache_ttl: float = 30.0,
        max_token_bytes: int = 8192,
        claims: ClaimNames | None = None,
        credentials: CredentialSettings = DEFAULT_SETTINGS,
        client: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.time,
        max_concurrent: int = 50,
        verify_audience: bool = True,
    ) -> None:
        if audience is None and verify_audience:
            # An authorization server answers "active" for a token it issued to any
            # of its resources: without the check, theirs would be accepted here.
            raise ConfigError(
                "introspection needs the audience the tokens must name "
                "(or verify_audience=False, a fail-open)"
            )
        if audience is not None and not verify_audience:
            raise ConfigError("verify_audience=False with an audience")
        # Listed in sys_startup however the authenticator was built (config or code).
        self.fail_open_settings: tuple[str, ...] = (
            *(() if verify_audience else ("auth.introspection.verify_audience",)),
            *(("auth.websocket.query_token",) if credentials.ws_query_token else ()),
        )
        lib = _httpx()
        self._endpoint = endpoint
        # RFC 6749 section 2.3.1: both are form-encoded before the Basic encoding.
        self._auth = lib.BasicAuth(quote_plus(client_id), quote_plus(client_secret))
        self._client: httpx.AsyncClient = client or lib.AsyncClient(timeout=timeout)
        self._own_client = client is None
        self._timeout = timeout
        self._audience = (
            None
            if audience is None
            else frozenset([audience] if isinstance(audience, str) else audience)
        )
        self._issuer = issuer
        self._cache = TokenCache(cache_size) if cache_size > 0 else None
        self._negative = TokenCache(cache_size) if cache_size > 0 else None
        self._inflight: dict[bytes, _Flight] = {}
        self._limiter = anyio.CapacityLimiter(max_concurrent)
        self._cache_ttl = cache_ttl
        self._negative_ttl = negative_cache_ttl
        self._max_bytes = max_token_bytes
        self._claims = claims or ClaimNames()
        # Public: compared with ``auth.websocket``, which the scope filters follow.
        self.credential_settings = credentials
        self._clock = clock
        self.credential = "bearer"
        self.requests = 0

    def presented(self, ctx: RequestContext) -> bool:
        """True when the request carries a bearer credential (for composition checks)."""
        return bearer_token(ctx, self.credential_settings) is not None

    async def authenticate(self, ctx: RequestContext) -> Principal | None:
        """Introspect the request's bearer token, if it has one."""
        token = bearer_token(ctx, self.credential_settings)
        if token is None:
            return None
        return await self.check(token)

    async def check(self, token: str) -> Principal:
        """The principal of an active token; 401 for an inactive or foreign one."""
        if len(token) > self._max_bytes:
            raise invalid_token("The access token is too large.", "token over max_token_bytes")
        digest = token_digest(token)
        cache, negative = self._cache, self._negative
        now = self._clock()
        if cache is not None and negative is not None:
            found = cache.get(digest, now)
            if found is not None:
                return found
            if negative.get(digest, now) is not None:
                raise invalid_token("The access token is not active.", "token inactive (cached)")
        deadline = anyio.current_time() + self._timeout
        while (running := self._inflight.get(digest)) is not None:
            # The same token is being introspected: its outcome is this one's too
            # (an outage included: N requests must not wait N timeouts in turn).
            with anyio.move_on_after(deadline - anyio.current_time()):
                await running.done.wait()
            if running.principal is not None:
                return running.principal
            if running.error is not None:
                raise copy.copy(running.error)
            if not running.done.is_set():
                raise IntrospectionError("introspection of this token took longer than the timeout")
            # Its caller was cancelled before an outcome: the first waiter to run
            # asks again, the others wait for that call (the loop) within the deadline.
        flight = self._inflight[digest] = _Flight()
        try:
            principal = await self._fresh(token, digest, now)
        except (AuthenticationError, ComponentError) as exc:
            flight.error = exc
            raise
        else:
            flight.principal = principal
            return principal
        finally:
            if self._inflight.get(digest) is flight:
                del self._inflight[digest]
            flight.done.set()

    async def _fresh(self, token: str, digest: bytes, now: float) -> Principal:
        """Ask the authorization server, and cache its answer."""
        answer = await self._introspect(token)
        try:
            principal = self._principal(answer, token, now)
        except AuthenticationError:
            if self._negative is not None and self._negative_ttl > 0:
                self._negative.put(digest, ANONYMOUS, now + self._negative_ttl)
            raise
        if self._cache is not None and self._cache_ttl > 0:
            until = now + self._cache_ttl
            if principal.expires_at is not None:
                until = min(until, principal.expires_at)
            self._cache.put(digest, principal, until)
        return principal

    async def _introspect(self, token: str) -> Mapping[str, Any]:
        lib = _httpx()
        self.requests += 1
        try:
            # httpx's timeout bounds each read, not the exchange: an endpoint sending a
            # byte a second would hold the request forever. The whole call is bounded.
            with anyio.fail_after(self._timeout):
                async with self._limiter:
                    status, body = await self._post(token)
        except (lib.HTTPError, TimeoutError) as exc:
            raise IntrospectionError(f"introspection failed: {type(exc).__name__}") from None
        if status != 200:
            raise IntrospectionError(f"introspection answered HTTP {status}")
        if body is None:
            raise IntrospectionError(f"introspection answer over {MAX_ANSWER_BYTES} bytes")
        try:
            answer = json.loads(body)
        except (ValueError, RecursionError):
            raise IntrospectionError("introspection answered non-JSON") from None
        if not isinstance(answer, dict) or not isinstance(answer.get("active"), bool):
            raise IntrospectionError("introspection answer has no boolean 'active'")
        return answer

    async def _post(self, token: str) -> tuple[int, bytes | None]:
        """(status, body) of the introspection call; body ``None`` when over the cap."""
        if self._own_client and self._client.is_closed:
            # Closed with the pipeline, which has been started again (a lifespan restart).
            self._client = _httpx().AsyncClient(timeout=self._timeout)
        request = self._client.build_request(
            "POST",
            self._endpoint,
            data={"token": token, "token_type_hint": "access_token"},
            headers={"Accept": "application/json"},
            timeout=self._timeout,
        )
        response = await self._client.send(
            request, auth=self._auth, stream=True, follow_redirects=False
        )
        try:
            if response.status_code != 200:
                return response.status_code, b""
            body = bytearray()
            over = False
            # Drained to the end (within the timeout) rather than left: breaking out
            # would leave httpx's stream generators unfinished (trio warns about them).
            async for chunk in response.aiter_bytes():
                if not over:
                    body += chunk
                    over = len(body) > MAX_ANSWER_BYTES
            return response.status_code, None if over else bytes(body)
        finally:
            await response.aclose()

    def _principal(self, answer: Mapping[str, Any], token: str, now: float) -> Principal:
        if answer["active"] is not True:
            raise invalid_token("The access token is not active.", "token inactive")
        exp = answer.get("exp")
        if exp is not None:
            if not is_numeric_date(exp):
                raise invalid_token("The access token is invalid.", "exp is not a number")
            if exp <= now:
                raise invalid_token(
                    "The access token expired.", "token expired", event="authn_token_expired"
                )
        if self._issuer is not None and answer.get("iss") != self._issuer:
            raise invalid_token("The access token comes from an unknown issuer.", "issuer mismatch")
        if self._audience is not None:
            aud = answer.get("aud")
            audiences = (
                {aud}
                if isinstance(aud, str)
                else {a for a in aud if isinstance(a, str)}
                if isinstance(aud, list)
                else set()
            )
            if not audiences & self._audience:
                raise invalid_token(
                    "The access token is not meant for this resource.", "audience mismatch"
                )
        subject = answer.get(self._claims.subject)
        if not isinstance(subject, str) or not subject:
            raise invalid_token("The access token has no subject.", "missing or empty subject")
        jti = answer.get("jti")
        credential_id = (
            f"jti:{jti}"
            if isinstance(jti, str) and jti
            else "sha256:" + token_digest(token).hex()[:16]
        )
        return principal_from_claims(
            answer, self._claims, auth_method="introspection", credential_id=credential_id
        )

    async def aclose(self) -> None:
        """Close the HTTP client secmw made; one passed in is its owner's to close."""
        if self._own_client:
            await self._client.aclose()


__all__ = ["IntrospectionAuthenticator", "IntrospectionError"]
