"""Building the gateway from a configuration: proxy, breakers, pipeline, health."""

from __future__ import annotations

import os
import ssl
import time
from collections.abc import Callable, Iterable, MutableMapping
from typing import TYPE_CHECKING, Any

import httpx
from pydantic import ValidationError

from secmw._config_base import header_value_problem
from secmw.breaker.build import build_registry
from secmw.breaker.config import BreakerConfig
from secmw.breaker.registry import BreakerRegistry
from secmw.errors import ConfigError, ConfigIssue
from secmw.proxy.app import ReverseProxy, Route, Timeouts, httpx_client
from secmw.proxy.egress import EgressDenied, EgressGuard, Resolver
from secmw.proxy.headers import HeaderFilter, encode_headers
from secmw.proxy.health import HealthEndpoints
from secmw.proxy.pool import RetryPolicy, Target, UpstreamPool

if TYPE_CHECKING:
    from secmw.config import Config
    from secmw.pipeline import Pipeline
    from secmw.proxy.config import GatewayConfig


class Gateway:
    """The built gateway: an ASGI app, plus its parts for tests and health checks.

    Order, outermost first: health endpoints, :class:`~secmw.SecurityMiddleware`
    (the whole pipeline), :class:`~secmw.proxy.app.ReverseProxy`.
    """

    __slots__ = ("app", "pipeline", "proxy", "registry")

    def __init__(
        self, app: Any, pipeline: Pipeline, proxy: ReverseProxy, registry: BreakerRegistry
    ) -> None:
        self.app = app
        self.pipeline = pipeline
        self.proxy = proxy
        self.registry = registry

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        """Serve one ASGI connection."""
        await self.app(scope, receive, send)


def build_proxy(
    config: GatewayConfig,
    *,
    emit: Any = None,
    resolver: Resolver | None = None,
    clock: Callable[[], float] = time.monotonic,
    client: httpx.AsyncClient | None = None,
    credential_headers: Iterable[str] = (),
) -> tuple[ReverseProxy, BreakerRegistry]:
    """The reverse proxy and its breaker registry for a ``gateway`` section.

    ``credential_headers`` are more client header names never sent upstream (the
    gateway passes the configured API-key header).
    """
    issues: list[ConfigIssue] = []
    registry = build_registry(config.breaker, emit=emit, clock=clock)
    guard = EgressGuard(
        allow=config.egress.allow,
        allow_networks=config.egress.allow_networks,
        block_networks=config.egress.block_networks,
        resolver=resolver,
        cache_seconds=config.egress.dns_cache_seconds,
    )
    pools: dict[str, UpstreamPool] = {}
    for name, upstream in config.upstreams.items():
        injected: dict[str, str] = {}
        targets = []
        try:
            breaker = _breaker_settings(config.breaker, upstream.breaker)
        except ValidationError as exc:
            problems = (e["msg"].removeprefix("Value error, ") for e in exc.errors())
            issues.append(ConfigIssue(f"upstreams.{name}.breaker", "; ".join(problems)))
            breaker = config.breaker
        for index, text in enumerate(upstream.targets):
            url = httpx.URL(text)
            try:
                guard.check_url(url.scheme, url.host, url.port)
            except EgressDenied as exc:
                issues.append(ConfigIssue(f"upstreams.{name}.targets[{index}]", exc.reason))
                continue
            key = f"{name}:{url.copy_with(path='/', query=None).__str__().rstrip('/')}"
            targets.append(Target(url, registry.get(key, breaker)))
        for header, variable in upstream.headers_from_env.items():
            value = os.environ.get(variable)
            if value is None:
                issues.append(
                    ConfigIssue(
                        f"upstreams.{name}.headers_from_env.{header}",
                        f"environment variable {variable} is not set",
                    )
                )
            elif (problem := header_value_problem(value)) is not None:
                issues.append(
                    ConfigIssue(
                        f"upstreams.{name}.headers_from_env.{header}",
                        f"environment variable {variable} {problem}",
                    )
                )
            else:
                injected[header] = value
        injected.update({k: v.get_secret_value() for k, v in upstream.headers.items()})
        if targets:
            retry = upstream.retry
            pools[name] = UpstreamPool(
                name,
                targets,
                balance=upstream.balance,
                retry=RetryPolicy(
                    attempts=retry.attempts,
                    backoff=retry.backoff,
                    max_backoff=retry.max_backoff,
                    statuses=frozenset(retry.statuses),
                ),
                inject=encode_headers(injected),
            )
    context: ssl.SSLContext | None = None
    if config.ca_file is not None:
        try:
            context = ssl.create_default_context(cafile=config.ca_file)
        except (OSError, ssl.SSLError) as exc:
            issues.append(ConfigIssue("ca_file", f"cannot load the CA file: {type(exc).__name__}"))
    if issues:
        raise ConfigError(issues)
    timeouts = config.timeouts
    proxy_timeouts = Timeouts(
        connect=timeouts.connect,
        read=timeouts.read,
        write=timeouts.write,
        pool=timeouts.pool,
        total=timeouts.total,
    )
    if client is None and config.client == "httpx":
        client = httpx_client(
            guard, proxy_timeouts, max_connections=config.max_connections, ssl_context=context
        )
    proxy = ReverseProxy(
        [Route(r.prefix, pools[r.upstream], r.strip_prefix) for r in config.routes],
        guard=guard,
        headers=HeaderFilter(
            strip=[*config.strip_headers, *credential_headers],
            strip_response=config.strip_response_headers,
        ),
        timeouts=proxy_timeouts,
        client=client,
        forward_client_ip=config.forward_client_ip,
        follow_redirects=config.follow_redirects,
        max_connections=config.max_connections,
        health_interval=config.health_checks.interval,
        health_path=config.health_checks.path,
        ssl_context=context,
    )
    if config.websockets:
        from secmw.proxy.websocket import forward_websocket  # noqa: PLC0415 - optional

        proxy.websockets = forward_websocket
    return proxy, registry


def _breaker_settings(default: BreakerConfig, own: BreakerConfig | None) -> BreakerConfig:
    """An upstream's breaker: the keys it sets over ``gateway.breaker`` (``ValidationError``).

    A table of its own used to replace ``gateway.breaker`` whole: the keys it left
    out took the built-in defaults, so ``failure_statuses`` or ``minimum_calls`` set
    for every upstream silently did nothing for this one.
    """
    if own is None:
        return default
    merged = {**default.model_dump(), **own.model_dump(exclude_unset=True)}
    return BreakerConfig.model_validate(merged)


def build_gateway(
    config: Config,
    *,
    resolver: Resolver | None = None,
    clock: Callable[[], float] = time.monotonic,
    client: httpx.AsyncClient | None = None,
    **components: Any,
) -> Gateway:
    """Build the whole gateway a configuration describes; raises :class:`ConfigError`.

    ``components`` replace pipeline stages as in :func:`~secmw.config.build_pipeline`.
    """
    from secmw.asgi import SecurityMiddleware  # noqa: PLC0415 - import cycle
    from secmw.config import build_pipeline  # noqa: PLC0415 - import cycle

    if config.gateway is None:
        raise ConfigError([ConfigIssue("gateway", "the gateway section is required")])
    pipeline = build_pipeline(config, **components)
    try:
        # A client credential must never reach an upstream, whatever header carries it.
        api_key = config.auth.api_key
        proxy, registry = build_proxy(
            config.gateway,
            emit=pipeline.emit,
            resolver=resolver,
            clock=clock,
            client=client,
            credential_headers=[api_key.header] if api_key is not None else [],
        )
    except ConfigError as exc:
        raise ConfigError(
            [ConfigIssue(f"gateway.{issue.key}", issue.message) for issue in exc.issues]
        ) from None
    app: Any = SecurityMiddleware(proxy, pipeline=pipeline)
    health = config.gateway.health
    if health.liveness_path or health.readiness_path:
        app = HealthEndpoints(
            app,
            pipeline=pipeline,
            proxy=proxy,
            liveness_path=health.liveness_path,
            readiness_path=health.readiness_path,
        )
    return Gateway(app, pipeline, proxy, registry)


__all__ = ["Gateway", "build_gateway", "build_proxy"]
