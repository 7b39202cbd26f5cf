"""JWKS from a real HTTP server on 127.0.0.1: rotation, outage, garbage, unknown-kid floods."""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import anyio
import pytest

from secmw import SecurityMiddleware
from secmw.testing import AuditCapture, TokenIssuer
from tests.support import EchoApp, call, http_scope

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

A = TokenIssuer(algorithm="ES256", kid="key-a")
B = TokenIssuer(algorithm="ES256", kid="key-b", issuer=A.issuer, audience=A.audience)
STRANGER = TokenIssuer(algorithm="ES256", issuer=A.issuer, audience=A.audience)


class JWKSState:
    """What the server answers; changed by the tests."""

    def __init__(self) -> None:
        self.issuers = [A]
        self.mode = "ok"
        self.max_age = 1
        self.hits = 0
        self.lock = threading.Lock()


def handler_for(state: JWKSState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            with state.lock:
                state.hits += 1
                mode, issuers = state.mode, list(state.issuers)
            if mode in ("down", "redirect"):
                self.send_response(500 if mode == "down" else 302)
                self.send_header("Location", "/jwks")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = (
                b"<html>maintenance</html>"
                if mode == "garbage"
                else json.dumps({"keys": [issuer.public_jwk for issuer in issuers]}).encode()
            )
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Cache-Control", f"public, max-age={state.max_age}")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler


@pytest.fixture
def jwks_server() -> Iterator[tuple[str, JWKSState]]:
    state = JWKSState()
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(state))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/jwks", state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def protected(url: str, **jwt: Any) -> tuple[SecurityMiddleware, AuditCapture]:
    audit = AuditCapture()
    section = {
        "issuer": A.issuer,
        "audience": A.audience,
        "jwks_url": url,
        "jwks_cooldown": 0.3,
        "jwks_min_ttl": 0,
        "jwks_timeout": 2,
        **jwt,
    }
    return SecurityMiddleware(EchoApp(), {"auth": {"jwt": section}}, audit=audit), audit


async def status(app: SecurityMiddleware, token: str) -> int:
    sent = await call(app, http_scope("/api", headers=[("authorization", f"Bearer {token}")]))
    return sent.status


async def test_rotation_new_key_is_found_old_key_goes(jwks_server: tuple[str, JWKSState]) -> None:
    url, state = jwks_server
    app, audit = protected(url)
    old = A.mint(expires_in=600)
    assert await status(app, old) == 200
    assert await status(app, old) == 200  # cached keys and cached token
    assert state.hits == 1
    state.issuers = [A, B]
    await anyio.sleep(0.35)  # past the unknown-kid cooldown
    new = B.mint(expires_in=600)
    assert await status(app, new) == 200
    assert state.hits == 2
    state.issuers = [B]
    await anyio.sleep(1.1)  # past max-age: the next request refreshes
    assert await status(app, old) == 401
    assert audit.last.reason == "unknown kid"
    assert await status(app, new) == 200


@pytest.mark.parametrize("mode", ["down", "garbage", "redirect"])
async def test_outage_keeps_last_good_keys(
    jwks_server: tuple[str, JWKSState], mode: str, capsys: pytest.CaptureFixture[str]
) -> None:
    url, state = jwks_server
    state.max_age = 0  # stale at once: the next request refreshes
    app, _ = protected(url, cache_size=0)
    token = A.mint(expires_in=600)
    assert await status(app, token) == 200
    loaded = state.hits  # the startup fetch (stale at once, refreshed once per cooldown)
    state.mode = mode
    await anyio.sleep(0.35)  # past the cooldown: the next request refreshes
    for _ in range(20):
        assert await status(app, token) == 200
    # One failed refresh, then nothing until the cooldown has passed.
    assert state.hits == loaded + 1
    assert "JWKS refresh failed" in capsys.readouterr().err
    state.mode = "ok"
    await anyio.sleep(0.35)
    assert await status(app, token) == 200
    assert state.hits == loaded + 2


async def test_first_load_failing_is_503_not_anonymous(jwks_server: tuple[str, JWKSState]) -> None:
    url, state = jwks_server
    state.mode = "down"
    app, audit = protected(url)
    for _ in range(3):  # also within the cooldown, when no fetch is attempted
        assert await status(app, A.mint()) == 503
        assert audit.last.name == "sys_monitor_disabled"
    assert state.hits == 1
    state.mode = "ok"
    await anyio.sleep(0.35)
    assert await status(app, A.mint()) == 200


async def test_unknown_kid_flood_costs_one_fetch_per_cooldown(
    jwks_server: tuple[str, JWKSState],
) -> None:
    url, state = jwks_server
    app, _ = protected(url, jwks_cooldown=30)
    assert await status(app, A.mint()) == 200
    with anyio.fail_after(20):
        for _ in range(200):
            forged = STRANGER.mint(headers={"kid": secrets.token_hex(8)})
            assert await status(app, forged) == 401
    assert state.hits == 1  # the cooldown started with the initial load


async def test_unreachable_endpoint_times_out_into_503() -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    app, _ = protected(f"http://127.0.0.1:{port}/jwks", jwks_timeout=1)
    with anyio.fail_after(10):
        assert await status(app, A.mint()) == 503
