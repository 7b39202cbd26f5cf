"""The reverse-proxy ASGI app: routes, upstream pools, breakers, streaming both ways.

Run it behind :class:`~secmw.SecurityMiddleware` (the gateway does): the
middleware authenticates, authorizes, throttles, redacts the response and writes
the audit line; this app forwards the admitted request. Request bodies stream
upstream as they arrive (a body a stage already buffered is sent from memory, so
it can be retried); response bodies stream back chunk by chunk (SSE and chunked
replies are never buffered here). Upstream failures become RFC 9457 answers:
502 (connection refused or reset, malformed reply, refused by the egress guard),
504 (a connect/read/total timeout) and 503 with ``Retry-After`` when every
target's circuit is open. After the response started, a failure can only cut
the connection; it is audited all the same.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
import httpx

from secmw._responses import ChallengeSettings, render_denial
from secmw.breaker.state import CircuitOpen
from secmw.errors import BadRequest, Denial
from secmw.proxy.config import PROBE_PATH
from secmw.proxy.egress import EgressDenied, EgressGuard
from secmw.proxy.exchange import (
    MAX_REQUEST_HEAD,
    Exchange,
    HeadersTooLarge,
    RequestBody,
    head_size,
)
from secmw.proxy.h1 import H1Client
from secmw.proxy.headers import HeaderFilter
from secmw.proxy.pool import IDEMPOTENT, Target, UpstreamPool
from secmw.proxy.target import judged_path
from secmw.proxy.transport import EgressTransport, HttpxUpstream, Upstream

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_CHALLENGE = ChallengeSettings()


@dataclass(frozen=True, slots=True)
class Route:
    """Requests whose path is ``prefix`` or below go to ``pool``.

    With ``strip_prefix`` the prefix is removed before the target's own path is
    prepended (``/api/x`` -> ``<target>/x``).
    """

    prefix: str
    pool: UpstreamPool
    strip_prefix: bool = False

    def matches(self, path: str) -> bool:
        """True when ``path`` is the prefix or below it."""
        prefix = self.prefix.rstrip("/")
        return not prefix or path == prefix or path.startswith(prefix + "/")


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Upstream timeouts in seconds; ``total`` bounds a whole exchange but event streams."""

    connect: float = 5.0
    read: float = 30.0
    write: float = 30.0
    pool: float = 5.0
    total: float | None = 60.0

    def for_httpx(self) -> httpx.Timeout:
        """The per-phase timeouts as an ``httpx.Timeout``."""
        return httpx.Timeout(connect=self.connect, read=self.read, write=self.write, pool=self.pool)


class _NoRoute(Denial):
    status = 404
    title = "Not Found"
    event = "upstream_no_route"


class ReverseProxy:
    """Forward ``http`` requests (and, with :mod:`secmw.proxy.websocket`, websockets).

    Requests go out on :class:`~secmw.proxy.h1.H1Client` (HTTP/1.1, connected
    only where ``guard`` allows; a default guard refuses every non-public
    address), or on ``client`` when one is given: an ``httpx.AsyncClient``, whose
    transport should then be an :class:`~secmw.proxy.transport.EgressTransport`
    (see :func:`httpx_client`). ``ssl_context`` (default: httpx's trust store)
    verifies upstream certificates, for HTTP and websockets alike.
    """

    def __init__(
        self,
        routes: Sequence[Route],
        *,
        guard: EgressGuard | None = None,
        headers: HeaderFilter | None = None,
        timeouts: Timeouts | None = None,
        client: httpx.AsyncClient | None = None,
        forward_client_ip: bool = True,
        follow_redirects: bool = False,
        max_connections: int = 100,
        health_interval: float | None = None,
        health_path: str = "/",
        websockets: Any = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if not PROBE_PATH.fullmatch(health_path):
            # It could never be requested: the probe task would die at start-up.
            raise ValueError(f"health_path {health_path!r} must be a path of visible ASCII")
        self.routes = tuple(sorted(routes, key=lambda route: len(route.prefix), reverse=True))
        self.guard = guard or EgressGuard()
        self.headers = headers or HeaderFilter()
        self.timeouts = timeouts or Timeouts()
        self.client = client
        self.upstream: Upstream
        if client is not None:
            self.upstream = HttpxUpstream(client)
        else:
            timeouts = self.timeouts
            self.upstream = H1Client(
                self.guard,
                connect=timeouts.connect,
                read=timeouts.read,
                write=timeouts.write,
                pool=timeouts.pool,
                max_connections=max_connections,
                ssl_context=ssl_context,
            )
        self.forward_client_ip = forward_client_ip
        self.follow_redirects = follow_redirects
        self.health_interval = health_interval
        self.health_path = health_path
        self.websockets = websockets
        self.ssl_context = ssl_context

    @property
    def pools(self) -> tuple[UpstreamPool, ...]:
        """Every upstream pool, once each."""
        return tuple({id(route.pool): route.pool for route in self.routes}.values())

    def route(self, path: str) -> Route | None:
        """The longest-prefix route for ``path``."""
        for route in self.routes:
            if route.matches(path):
                return route
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Dispatch on the scope type."""
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "websocket" and self.websockets is not None:
            await self.websockets(self, scope, receive, send)
        elif kind == "websocket":
            await receive()
            await send({"type": "websocket.close", "code": 1008, "reason": "not forwarded"})
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    # -- lifespan and active health checks ------------------------------------

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        async with anyio.create_task_group() as tasks:
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    if self.health_interval:
                        tasks.start_soon(self._probe_forever, self.health_interval)
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    tasks.cancel_scope.cancel()
                    with anyio.CancelScope(shield=True):
                        await self.upstream.aclose()
                    await send({"type": "lifespan.shutdown.complete"})
                    return

    async def _probe_forever(self, interval: float) -> None:
        while True:
            await self.probe()
            await anyio.sleep(interval)

    async def probe(self) -> None:
        """One round of active health checks: GET ``health_path`` on every target.

        A target is marked down after two failed probes in a row (a 5xx, an error
        or a timeout) and up again after one good probe.
        """
        for pool in self.pools:
            for target in pool.targets:
                url = target.url.copy_with(raw_path=self.health_path.encode())
                try:
                    with anyio.fail_after(self.timeouts.connect + self.timeouts.read):
                        good = await self.upstream.get(url) < 500
                except (httpx.HTTPError, EgressDenied, TimeoutError):
                    good = False
                if good:
                    target.healthy, target.probe_failures = True, 0
                else:
                    target.probe_failures += 1
                    if target.probe_failures >= 2:
                        target.healthy = False

    # -- http -------------------------------------------------------------------

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        ctx = (scope.get("state") or {}).get("secmw")
        try:
            # Route on the canonical path the policy judged (or would have).
            route = self.route(judged_path(scope))
        except BadRequest as refused:
            await self._fail(ctx, send, refused)
            return
        if route is None:
            await self._fail(ctx, send, _NoRoute("No upstream serves this path."))
            return
        pool = route.pool
        method: str = scope["method"]
        raw_headers: list[tuple[bytes, bytes]] = list(scope.get("headers") or ())
        if head_size(raw_headers) > MAX_REQUEST_HEAD:
            # Refused before any permit is taken: an upstream that echoes the headers
            # would answer with a head too large for the gateway, counted against it.
            if ctx is not None:
                ctx.state["audit_details"] = {"upstream": pool.name, "outcome": "bad_request"}
            too_large = HeadersTooLarge(
                "The request headers are too large to forward.",
                reason="request headers over 32 KiB",
            )
            await self._fail(ctx, send, too_large)
            return
        length = next((v for k, v in raw_headers if k.lower() == b"content-length"), None)
        chunked = any(k.lower() == b"transfer-encoding" for k, _ in raw_headers)
        has_body = chunked or (length is not None and length != b"0")
        buffered: bytes | None = ctx.body if ctx is not None else None
        content: bytes | RequestBody | None
        if buffered is not None:
            content, length = buffered, None
        elif has_body:
            content = RequestBody(receive)
        else:
            content, length = None, None
        retryable = method in IDEMPOTENT and (buffered is not None or not has_body)
        attempts = pool.retry.attempts + 1 if retryable else 1
        headers = self.headers.request(
            raw_headers,
            client=ctx.client if ctx is not None and self.forward_client_ip else None,
            content_length=length,
            inject=pool.inject,
        )
        if isinstance(content, RequestBody) and length is None:
            headers.append((b"transfer-encoding", b"chunked"))
        details: dict[str, Any] = {"upstream": pool.name}
        if ctx is not None:
            ctx.state["audit_details"] = details
        total = self.timeouts.total
        exchange = Exchange(
            proxy=self,
            scope=scope,
            route=route,
            method=method,
            headers=headers,
            content=content,
            send=send,
            receive=receive,
            ctx=ctx,
            details=details,
            deadline=anyio.current_time() + total if total is not None else float("inf"),
            total=total,
        )
        exclude: Target | None = None
        for attempt in range(1, attempts + 1):
            details["attempts"] = attempt
            failure = await exchange.attempt(exclude, can_retry=attempt < attempts)
            if failure is None:
                return
            target, denial = failure
            if attempt == attempts or isinstance(denial, (CircuitOpen, EgressDenied, BadRequest)):
                await self._fail(ctx, send, denial)
                return
            exclude = target
            wait = max(0.0, exchange.deadline - anyio.current_time())
            await anyio.sleep(min(pool.retry.delay(attempt), wait))

    async def _fail(self, ctx: Any, send: Send, denial: Denial) -> None:
        request_id = ctx.request_id if ctx is not None else None
        status, headers, body = render_denial(denial, _CHALLENGE, request_id)
        if ctx is not None:
            ctx.state["denial"] = denial
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})

    async def aclose(self) -> None:
        """Close the HTTP client (the lifespan shutdown does this for the gateway)."""
        await self.upstream.aclose()


def httpx_client(
    guard: EgressGuard,
    timeouts: Timeouts,
    *,
    max_connections: int = 100,
    ssl_context: ssl.SSLContext | None = None,
) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` on an :class:`EgressTransport`, as the proxy would use it.

    No environment proxies, no redirects of its own (the proxy decides), the
    given timeouts and pool size.
    """
    return httpx.AsyncClient(
        transport=EgressTransport(
            guard,
            limits=httpx.Limits(max_connections=max_connections),
            verify=ssl_context if ssl_context is not None else True,
        ),
        timeout=timeouts.for_httpx(),
        trust_env=False,
        follow_redirects=False,
    )


__all__ = ["ReverseProxy", "Route", "Timeouts", "httpx_client"]
