"""The Prometheus scrape endpoint, with its own access check.

The pipeline serves endpoints before any stage runs (see
``Pipeline.endpoints``), so this one checks access itself: the client address
against ``allow_networks`` and/or a bearer token. Metrics are operational data
(failure rates, tiers, detector names) that help an attacker tune an attack, so
an open endpoint is an explicit, audited fail-open (``metrics.public``).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
from collections.abc import Callable, Sequence

from secmw._responses import Header
from secmw.context import IPNetwork, RequestContext
from secmw.metrics.registry import CONTENT_TYPE


def _problem(
    ctx: RequestContext, status: int, title: str, detail: str, extra: list[Header]
) -> tuple[int, list[Header], bytes]:
    # The same members as every other body secmw sends (docs/request-flow.md).
    problem = {
        "type": "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
        "request_id": ctx.request_id,
    }
    body = json.dumps(problem).encode()
    headers = [
        *extra,
        (b"content-type", b"application/problem+json"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
    ]
    return status, headers, body


class MetricsEndpoint:
    """Answers a scrape with ``render()``; refuses addresses and tokens it does not know.

    With ``allow_networks`` the client address (after the trusted-proxy rule)
    must be inside one of them (else 403). With a ``token`` the request must send
    ``Authorization: Bearer <token>`` (else 401); the token is kept only as a
    SHA-256 digest and compared in constant time. With both, both must hold.
    """

    __slots__ = ("_digest", "_networks", "_render")

    def __init__(
        self,
        render: Callable[[], str],
        *,
        token: str | None = None,
        allow_networks: Sequence[IPNetwork] = (),
    ) -> None:
        self._render = render
        self._digest = hashlib.sha256(token.encode()).digest() if token else None
        self._networks = tuple(allow_networks)

    def _address_allowed(self, client: str | None) -> bool:
        if client is None:
            return False
        try:
            address = ipaddress.ip_address(client)
        except ValueError:
            return False
        return any(address in network for network in self._networks)

    def _token_ok(self, ctx: RequestContext) -> bool:
        assert self._digest is not None
        values = ctx.headers.get_all("authorization")
        if len(values) != 1:
            return False
        scheme, _, credential = values[0].partition(" ")
        if scheme.lower() != "bearer" or not credential.strip():
            return False
        given = hashlib.sha256(credential.strip().encode()).digest()
        return hmac.compare_digest(given, self._digest)

    def __call__(self, ctx: RequestContext) -> tuple[int, list[Header], bytes]:
        """Status, headers and body for one scrape."""
        if self._networks and not self._address_allowed(ctx.client):
            return _problem(ctx, 403, "Forbidden", "This address may not read metrics.", [])
        if self._digest is not None and not self._token_ok(ctx):
            challenge = (b"www-authenticate", b'Bearer realm="metrics"')
            detail = "The metrics token is missing or wrong."
            return _problem(ctx, 401, "Unauthorized", detail, [challenge])
        if ctx.method not in ("GET", "HEAD"):
            detail = "Only GET and HEAD are answered."
            allow = [(b"allow", b"GET, HEAD")]
            return _problem(ctx, 405, "Method Not Allowed", detail, allow)
        body = self._render().encode()
        headers = [
            (b"content-type", CONTENT_TYPE.encode()),
            (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store"),
        ]
        return 200, headers, b"" if ctx.method == "HEAD" else body
