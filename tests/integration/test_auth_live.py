"""Over real sockets: uvicorn serves the mock authorization server and a protected app;
the app fetches the JWKS over HTTP; an httpx client runs the PKCE flow."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from secmw import SecurityMiddleware
from secmw.auth.build import build_jwt, credential_settings
from secmw.config import parse_config
from secmw.testing import AuditCapture, MockAuthorizationServer
from tests.support import EchoApp

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Served:
    """An ASGI app under uvicorn in a thread, stopped by ``close``."""

    def __init__(self, app: Any, port: int) -> None:
        import uvicorn

        config = uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture
def live() -> Iterator[tuple[MockAuthorizationServer, str, AuditCapture]]:
    auth_port, api_port = free_port(), free_port()
    mock = MockAuthorizationServer(
        issuer=f"http://127.0.0.1:{auth_port}", resource=f"http://127.0.0.1:{api_port}/mcp"
    )
    config = parse_config(
        {
            "auth": {
                "jwt": mock.jwt_config(keys=[], jwks_url=f"{mock.issuer}/jwks", jwks_timeout=3),
                "protected_resource": {
                    "resource": mock.resource,
                    "authorization_servers": [mock.issuer],
                },
            }
        }
    )
    assert config.auth.jwt is not None
    audit = AuditCapture()
    app = SecurityMiddleware(
        EchoApp(),
        config,
        authenticator=build_jwt(
            config.auth.jwt,
            credentials=credential_settings(config.auth),
            revocation=mock.denylist,
        ),
        audit=audit,
    )
    servers = [Served(mock, auth_port), Served(app, api_port)]
    try:
        yield mock, f"http://127.0.0.1:{api_port}", audit
    finally:
        for server in servers:
            server.close()


def test_pkce_token_jwks_over_http_and_revocation(
    live: tuple[MockAuthorizationServer, str, AuditCapture],
) -> None:
    mock, api, audit = live
    with httpx.Client(timeout=5) as client:
        first = client.get(f"{api}/mcp")
        assert first.status_code == 401
        metadata_url = first.headers["www-authenticate"].split('resource_metadata="')[1][:-1]
        metadata = client.get(metadata_url).json()
        authorization_server = metadata["authorization_servers"][0]
        discovered = client.get(f"{authorization_server}/.well-known/oauth-authorization-server")
        endpoints = discovered.json()

        verifier, challenge = mock.pkce_pair()
        redirect = "http://127.0.0.1:9/callback"
        answer = client.get(
            endpoints["authorization_endpoint"],
            params={
                "response_type": "code",
                "client_id": "live-client",
                "redirect_uri": redirect,
                "code_challenge": challenge,
                "code_challenge_method": "S256",
                "scope": "tools:call",
                "resource": metadata["resource"],
            },
        )
        assert answer.status_code == 302
        code = parse_qs(urlsplit(answer.headers["location"]).query)["code"][0]
        tokens = client.post(
            endpoints["token_endpoint"],
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": redirect,
                "client_id": "live-client",
                "code_verifier": verifier,
            },
        ).json()
        bearer = {"authorization": f"Bearer {tokens['access_token']}"}
        ok = client.get(f"{api}/mcp", headers=bearer)
        assert ok.status_code == 200 and ok.json()["subject"] == "user-1"
        assert mock.jwks.requests == 1  # fetched over HTTP once, then cached

        client.post(endpoints["revocation_endpoint"], data={"token": tokens["access_token"]})
        revoked = client.get(f"{api}/mcp", headers=bearer)
        assert revoked.status_code == 401
    # The server records the event after sending the response: wait for it, bounded.
    deadline = time.monotonic() + 5
    while not audit.named("authn_token_revoked") and time.monotonic() < deadline:
        time.sleep(0.01)
    assert audit.named("authn_token_revoked")
