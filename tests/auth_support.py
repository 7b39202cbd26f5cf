"""Helpers shared by the authentication tests: a fake clock and request contexts."""

from __future__ import annotations

from typing import Any

from secmw.context import RequestContext
from tests.support import http_scope, ws_scope


class FakeClock:
    """A settable clock; ``advance`` moves it forward."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def ctx_with(*headers: tuple[str, str], query: bytes = b"", **extra: Any) -> RequestContext:
    """An HTTP request context carrying ``headers``."""
    return RequestContext.from_scope(http_scope("/", headers=headers, query_string=query, **extra))


def ws_ctx(
    *headers: tuple[str, str], subprotocols: list[str] | None = None, query: bytes = b""
) -> RequestContext:
    """A websocket handshake context."""
    scope = ws_scope("/ws", headers=headers)
    scope["subprotocols"] = subprotocols or []
    scope["query_string"] = query
    return RequestContext.from_scope(scope)


async def pkce_tokens(
    server: Any,
    http: Any,
    *,
    scope: str = "read",
    login_hint: str | None = None,
    resource: str | None = None,
) -> dict[str, Any]:
    """Run authorization code + PKCE S256 against ``server`` through ``http`` (httpx)."""
    from urllib.parse import parse_qs, urlsplit

    verifier, challenge = server.pkce_pair()
    params = {
        "response_type": "code",
        "client_id": "test-client",
        "redirect_uri": "http://127.0.0.1:9/callback",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "scope": scope,
        "state": "st-1",
    }
    if login_hint:
        params["login_hint"] = login_hint
    if resource:
        params["resource"] = resource
    answer = await http.get("/authorize", params=params)
    assert answer.status_code == 302, answer.text
    query = parse_qs(urlsplit(answer.headers["location"]).query)
    assert query["state"] == ["st-1"]
    tokens = await http.post(
        "/token",
        data={
            "grant_type": "authorization_code",
            "code": query["code"][0],
            "redirect_uri": params["redirect_uri"],
            "client_id": "test-client",
            "code_verifier": verifier,
        },
    )
    assert tokens.status_code == 200, tokens.text
    document: dict[str, Any] = tokens.json()
    return document
