"""Optional liveness and readiness endpoints, answered before the security chain.

Probes come from the orchestrator, without credentials, so they are answered
outside the pipeline and not audited. The readiness body names states only
(``open``, ``closed``, ``ok``), never a URL, header or credential.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from secmw.pipeline import Pipeline
    from secmw.proxy.app import ReverseProxy

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_COMPONENTS = ("authenticator", "inspector", "policy", "rate_limiter", "redactor", "audit")


async def readiness(pipeline: Pipeline, proxy: ReverseProxy) -> tuple[bool, dict[str, Any]]:
    """Whether the gateway can serve, and why: upstreams, breakers, components.

    An upstream is ready while one of its targets admits calls. A component with
    a ``ready()`` method (sync or async, returning a bool) or a ``healthy``
    attribute is asked; an audit sink that reports ``closed`` is not ready.
    """
    ready = True
    upstreams: dict[str, Any] = {}
    for pool in proxy.pools:
        usable = [t for t in pool.targets if t.healthy and t.breaker.available()]
        upstreams[pool.name] = {
            "status": "ok" if usable else "unavailable",
            "breakers": [str(t.breaker.state) for t in pool.targets],
        }
        ready = ready and bool(usable)
    components: dict[str, str] = {}
    for name in _COMPONENTS:
        component = getattr(pipeline, name, None)
        if component is None:
            continue
        ok = True
        probe = getattr(component, "ready", None)
        if callable(probe):
            try:
                result = probe()
                if inspect.isawaitable(result):
                    result = await result
                ok = bool(result)
            except Exception:
                ok = False
        elif getattr(component, "healthy", True) is False or getattr(component, "closed", False):
            ok = False
        components[name] = "ok" if ok else "unavailable"
        ready = ready and ok
    return ready, {
        "status": "ready" if ready else "not_ready",
        "upstreams": upstreams,
        "components": components,
    }


class HealthEndpoints:
    """Answer ``GET``/``HEAD`` on the liveness and readiness paths; pass the rest on."""

    __slots__ = ("_live", "_ready", "app", "pipeline", "proxy")

    def __init__(
        self,
        app: ASGIApp,
        *,
        pipeline: Pipeline,
        proxy: ReverseProxy,
        liveness_path: str | None = None,
        readiness_path: str | None = None,
    ) -> None:
        self.app = app
        self.pipeline = pipeline
        self.proxy = proxy
        self._live = liveness_path
        self._ready = readiness_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer a probe, or call the wrapped app."""
        if scope["type"] == "http" and scope.get("method") in ("GET", "HEAD"):
            path = scope["path"]
            if path == self._live:
                await _answer(send, 200, {"status": "ok"}, scope["method"])
                return
            if path == self._ready:
                ok, body = await readiness(self.pipeline, self.proxy)
                await _answer(send, 200 if ok else 503, body, scope["method"])
                return
        await self.app(scope, receive, send)


async def _answer(send: Send, status: int, payload: dict[str, Any], method: str) -> None:
    body = json.dumps(payload, separators=(",", ":")).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})


__all__ = ["HealthEndpoints", "readiness"]
