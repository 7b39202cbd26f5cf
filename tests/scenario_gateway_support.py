"""The full chain as a gateway: every stage of the scenario configuration, then the proxy.

Used by the upstream scenarios and the gateway fuzzer. The upstreams are: ``app``
(the real server on 127.0.0.1 the caller starts), ``internal`` (a private address
the egress guard refuses) and ``metadata`` (a name that resolves to the cloud
metadata address).
"""

from __future__ import annotations

import time
from typing import Any

import anyio

from secmw.auth.build import build_jwt
from secmw.config import load_config
from secmw.proxy.build import Gateway, build_gateway
from secmw.testing import AuditCapture, InMemoryJWKS, TokenIssuer
from tests.gateway_support import (
    EchoUpstream,
    HeldReceiver,
    assert_no_client_secrets,
    client_headers,
    static_resolver,
)
from tests.scenario_support import AUDIENCE, CLIENT, ISSUER, full_config
from tests.support import Sender, http_scope

BREAKER = {
    "minimum_calls": 3,
    "window_size": 5,
    "failure_rate_threshold": 50,
    "open_duration": 0.5,
    "half_open_calls": 2,
}
TIMEOUTS = {"connect": 0.5, "read": 1.0, "write": 0.5, "total": 2.0}


class Front:
    """The gateway with every stage on, in front of the echo upstream."""

    def __init__(
        self, echo: EchoUpstream, url: str, *, clock: Any = time.monotonic, **config: Any
    ) -> None:
        self.echo = echo
        self.clock = clock
        self.signer = TokenIssuer(issuer=ISSUER, audience=AUDIENCE)
        self.audit = AuditCapture()
        gateway: dict[str, Any] = {
            "upstreams": {
                "app": {"targets": [url]},
                "internal": {"targets": ["http://10.20.30.40:8080"]},
                "metadata": {"targets": ["http://metadata.scenario.test"]},
            },
            "routes": [
                {"prefix": "/", "upstream": "app"},
                {"prefix": "/internal", "upstream": "internal"},
                {"prefix": "/metadata", "upstream": "metadata"},
            ],
            "egress": {"allow_networks": ["127.0.0.0/8"]},  # the echo upstream only
            "breaker": BREAKER,
            "timeouts": TIMEOUTS,
            "strip_headers": ["x-tenant-secret"],
        }
        config = load_config(full_config(self.signer, gateway=gateway, **config))
        assert config.auth.jwt is not None
        jwt = build_jwt(config.auth.jwt, fetcher=InMemoryJWKS(self.signer).fetcher())
        self.gateway: Gateway = build_gateway(
            config,
            authenticator=jwt,
            audit=self.audit,
            resolver=static_resolver({"metadata.scenario.test": ["169.254.169.254"]}),
            clock=clock,  # the breakers' clock
        )
        self.token = self.signer.mint("nora", tenant="acme")

    async def get(self, path: str, query: bytes = b"") -> tuple[Sender, float]:
        sender = Sender()
        started = time.perf_counter()
        scope = http_scope(
            path, headers=client_headers(self.token), client=CLIENT, query_string=query
        )
        with anyio.fail_after(5):
            await self.gateway(scope, HeldReceiver(), sender)
        elapsed = time.perf_counter() - started
        assert_no_client_secrets(self.echo, self.token)  # checked after every request
        return sender, elapsed

    def event(self, sent: Sender) -> Any:
        return self.audit.for_request(sent.header("x-request-id") or "")[-1]
