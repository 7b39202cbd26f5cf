"""Test doubles for the OAuth side: a JWKS served in memory and a mock authorization server.

Both are plain ASGI apps, so tests can call them in memory (through
``fetcher()`` or ``httpx.ASGITransport``) or serve them with uvicorn. They sign
real tokens with real keys; nothing here is meant for production use. Re-exported
from :mod:`secmw.testing`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote_plus, urlencode

from secmw.auth.cache import MemoryDenylist, token_digest
from secmw.auth.jwks import Fetcher, FetchResult

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
_VERIFIER = re.compile(r"[A-Za-z0-9\-._~]{43,128}")


async def _body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks)
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _reply(
    send: Send,
    status: int,
    document: Any = None,
    *,
    headers: Iterable[tuple[bytes, bytes]] = (),
    cache: bytes = b"no-store",
) -> None:
    body = b"" if document is None else json.dumps(document).encode()
    head = [(b"content-length", str(len(body)).encode()), (b"cache-control", cache), *headers]
    if document is not None:
        head.append((b"content-type", b"application/json"))
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body, "more_body": False})


class InMemoryJWKS:
    """A JWKS document served by an ASGI app or an in-memory fetcher, with failure modes.

    ``issuers`` publish their keys; :meth:`add` and :meth:`remove` rotate them;
    ``mode`` makes the endpoint misbehave: ``"down"`` (503), ``"garbage"`` (not
    JSON), ``"empty"`` (no keys). ``requests`` counts the fetches it answered.
    """

    def __init__(self, *issuers: Any, max_age: int | None = 300) -> None:
        self.issuers: list[Any] = list(issuers)
        self.max_age = max_age
        self.mode = "ok"
        self.requests = 0

    def add(self, issuer: Any) -> None:
        """Publish another issuer's key."""
        self.issuers.append(issuer)

    def remove(self, kid: str) -> None:
        """Stop publishing the key named ``kid``."""
        self.issuers = [issuer for issuer in self.issuers if issuer.kid != kid]

    def document(self) -> bytes:
        """The current response body."""
        if self.mode == "garbage":
            return b"<html>oops</html>"
        keys = [] if self.mode == "empty" else [issuer.public_jwk for issuer in self.issuers]
        return json.dumps({"keys": keys}).encode()

    def _cache_control(self) -> str | None:
        return None if self.max_age is None else f"public, max-age={self.max_age}"

    def fetcher(self) -> Fetcher:
        """An async fetcher for :class:`~secmw.auth.jwks.JWKSClient` (no socket)."""

        async def fetch(url: str) -> FetchResult:
            self.requests += 1
            if self.mode == "down":
                return FetchResult(503, b"")
            return FetchResult(200, self.document(), self._cache_control())

        return fetch

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        """Serve the document on every path (GET)."""
        if scope["type"] != "http":
            return
        self.requests += 1
        if self.mode == "down":
            await _reply(send, 503, {"error": "unavailable"})
            return
        body = self.document()
        cache = (self._cache_control() or "no-cache").encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"cache-control", cache),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body, "more_body": False})


@dataclass
class _Grant:
    client_id: str
    subject: str
    scope: str
    resource: str
    auth_time: float
    redirect_uri: str = ""
    challenge: str = ""
    expires_at: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


class MockAuthorizationServer:
    """A mock OAuth 2.1 authorization server (ASGI) that issues real, verifiable JWTs.

    Endpoints (RFC 8414 metadata points at them): ``/authorize`` (code flow,
    PKCE S256 required, auto-approves as ``login_hint`` or ``subject``),
    ``/token`` (``authorization_code`` and ``refresh_token`` grants, refresh
    tokens rotate), ``/revoke`` (RFC 7009: the access token's ``jti`` goes on
    :attr:`denylist`, a refresh token dies), ``/introspect`` (RFC 7662, HTTP
    Basic as one of ``introspection_clients``, the id and secret form-encoded
    first as RFC 6749 section 2.3.1 asks), ``/jwks``. Access tokens carry
    ``acr``, ``amr`` and ``auth_time`` from the server's settings.
    """

    def __init__(
        self,
        *,
        issuer: str = "https://auth.example.test",
        resource: str = "https://api.example.test",
        algorithm: str = "ES256",
        subject: str = "user-1",
        access_ttl: int = 300,
        refresh_ttl: int = 86400,
        acr: str | None = None,
        amr: Iterable[str] = ("pwd",),
        introspection_clients: dict[str, str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        from secmw.testing import TokenIssuer  # noqa: PLC0415 - testing re-exports this module

        self.issuer = issuer
        self.resource = resource
        self.signer = TokenIssuer(issuer=issuer, audience=resource, algorithm=algorithm)  # type: ignore[arg-type]
        self.jwks = InMemoryJWKS(self.signer)
        self.subject = subject
        self.access_ttl = access_ttl
        self.refresh_ttl = refresh_ttl
        self.acr = acr
        self.amr = tuple(amr)
        self.introspection_clients = introspection_clients or {"resource-server": "rs-secret"}
        self.denylist = MemoryDenylist()
        self.clock = clock
        self._codes: dict[str, _Grant] = {}
        self._refresh: dict[str, _Grant] = {}
        self._access: dict[bytes, dict[str, Any]] = {}

    # -- helpers for tests ---------------------------------------------------

    def metadata(self) -> dict[str, Any]:
        """The RFC 8414 authorization-server metadata document."""
        base = self.issuer.rstrip("/")
        return {
            "issuer": self.issuer,
            "authorization_endpoint": f"{base}/authorize",
            "token_endpoint": f"{base}/token",
            "revocation_endpoint": f"{base}/revoke",
            "introspection_endpoint": f"{base}/introspect",
            "jwks_uri": f"{base}/jwks",
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["none"],
        }

    def jwt_config(self, **overrides: Any) -> dict[str, Any]:
        """An ``auth.jwt`` section trusting this server's current keys."""
        section: dict[str, Any] = {
            "issuer": self.issuer,
            "audience": self.resource,
            "keys": [{"jwk": issuer.public_jwk} for issuer in self.jwks.issuers],
        }
        section.update(overrides)
        return section

    @staticmethod
    def pkce_pair() -> tuple[str, str]:
        """A fresh ``(code_verifier, code_challenge)`` for S256 (RFC 7636)."""
        verifier = secrets.token_urlsafe(48)
        digest = hashlib.sha256(verifier.encode("ascii")).digest()
        return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    # -- the ASGI app --------------------------------------------------------

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        """Route one request."""
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        if method == "GET" and path == "/.well-known/oauth-authorization-server":
            await _reply(send, 200, self.metadata(), cache=b"public, max-age=300")
        elif method == "GET" and path == "/jwks":
            await self.jwks(scope, receive, send)
        elif method == "GET" and path == "/authorize":
            query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
            await self._authorize(query, send)
        elif method == "POST" and path in ("/token", "/revoke", "/introspect"):
            form = dict(parse_qsl((await _body(receive)).decode("latin-1")))
            if path == "/token":
                status, document = self._token(form)
                await _reply(send, status, document)
            elif path == "/revoke":
                self._revoke(form)
                await _reply(send, 200)
            else:
                headers = dict(scope.get("headers") or ())
                status, document = self._introspect(form, headers.get(b"authorization", b""))
                await _reply(send, status, document)
        else:
            await _reply(send, 404, {"error": "not_found"})

    async def _authorize(self, query: dict[str, str], send: Send) -> None:
        redirect = query.get("redirect_uri", "")
        if not query.get("client_id") or not redirect.startswith(("http://", "https://")):
            await _reply(send, 400, {"error": "invalid_request"})
            return
        if (
            query.get("response_type") != "code"
            or query.get("code_challenge_method") != "S256"
            or not query.get("code_challenge")
        ):
            error = {"error": "invalid_request", "state": query.get("state", "")}
            location = f"{redirect}?{urlencode(error)}"
            await _reply(send, 302, headers=[(b"location", location.encode())])
            return
        code = secrets.token_urlsafe(24)
        now = self.clock()
        self._codes[code] = _Grant(
            client_id=query["client_id"],
            subject=query.get("login_hint") or self.subject,
            scope=query.get("scope", ""),
            resource=query.get("resource", self.resource),
            auth_time=now,
            redirect_uri=redirect,
            challenge=query.get("code_challenge", ""),
            expires_at=now + 60,
        )
        params = {"code": code, "iss": self.issuer}
        if "state" in query:
            params["state"] = query["state"]
        location = f"{redirect}?{urlencode(params)}"
        await _reply(send, 302, headers=[(b"location", location.encode())])

    def _token(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        grant_type = form.get("grant_type")
        now = self.clock()
        if grant_type == "authorization_code":
            grant = self._codes.pop(form.get("code", ""), None)
            verifier = form.get("code_verifier", "")
            if (
                grant is None
                or grant.expires_at < now
                or grant.client_id != form.get("client_id")
                or grant.redirect_uri != form.get("redirect_uri")
                or not _VERIFIER.fullmatch(verifier)
            ):
                return 400, {"error": "invalid_grant"}
            digest = hashlib.sha256(verifier.encode("ascii")).digest()
            if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != grant.challenge:
                return 400, {"error": "invalid_grant", "error_description": "PKCE failed"}
        elif grant_type == "refresh_token":
            grant = self._refresh.pop(form.get("refresh_token", ""), None)
            if grant is None or grant.expires_at < now or grant.client_id != form.get("client_id"):
                return 400, {"error": "invalid_grant"}
        else:
            return 400, {"error": "unsupported_grant_type"}
        return 200, self._issue(grant, now)

    def _issue(self, grant: _Grant, now: float) -> dict[str, Any]:
        claims: dict[str, Any] = {
            "aud": grant.resource,
            "client_id": grant.client_id,
            "auth_time": int(grant.auth_time),
            "acr": self.acr,
            "amr": list(self.amr) or None,
        }
        token = self.signer.mint(
            grant.subject,
            scopes=grant.scope.split(),
            expires_in=self.access_ttl,
            claims=claims,
            now=now,
        )
        payload = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
        self._access[token_digest(token)] = payload
        refresh = secrets.token_urlsafe(32)
        self._refresh[refresh] = _Grant(
            client_id=grant.client_id,
            subject=grant.subject,
            scope=grant.scope,
            resource=grant.resource,
            auth_time=grant.auth_time,
            expires_at=now + self.refresh_ttl,
        )
        return {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": self.access_ttl,
            "refresh_token": refresh,
            "scope": grant.scope,
        }

    def _revoke(self, form: dict[str, str]) -> None:
        token = form.get("token", "")
        if self._refresh.pop(token, None) is not None:
            return
        claims = self._access.get(token_digest(token))
        if claims is not None:
            self.denylist.revoke(claims["jti"])

    def _introspect(self, form: dict[str, str], authorization: bytes) -> tuple[int, dict[str, Any]]:
        scheme, _, encoded = authorization.decode("latin-1").partition(" ")
        try:
            client, _, secret = base64.b64decode(encoded).decode().partition(":")
        except ValueError:
            client = secret = ""
        # RFC 6749 section 2.3.1: both are form-encoded before the Basic encoding.
        client, secret = unquote_plus(client), unquote_plus(secret)
        expected = self.introspection_clients.get(client)
        if (
            scheme.lower() != "basic"
            or expected is None
            or not hmac.compare_digest(expected.encode(), secret.encode())
        ):
            return 401, {"error": "invalid_client"}
        claims = self._access.get(token_digest(form.get("token", "")))
        if claims is None or claims["jti"] in self.denylist or claims["exp"] <= self.clock():
            return 200, {"active": False}
        return 200, {"active": True, "token_type": "Bearer", **claims}


__all__ = ["InMemoryJWKS", "MockAuthorizationServer"]
