"""Upstream safety for proxies: credential stripping, egress guard, pools, the gateway.

The parts that need ``httpx`` (the ``gateway`` extra) load on first use, so
``import secmw.proxy`` works with the core dependencies alone.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from secmw.proxy.config import GatewayConfig
from secmw.proxy.egress import EgressDenied, EgressGuard, canonical_host
from secmw.proxy.headers import CREDENTIAL_HEADERS, HOP_BY_HOP, HeaderFilter

if TYPE_CHECKING:  # the real types for checkers; at run time they load on first use
    from secmw.proxy.app import ReverseProxy, Route, Timeouts, httpx_client
    from secmw.proxy.build import Gateway, build_gateway
    from secmw.proxy.h1 import H1Client
    from secmw.proxy.pool import RetryPolicy, Target, UpstreamPool
    from secmw.proxy.transport import EgressTransport

_LAZY = {
    "EgressTransport": "secmw.proxy.transport",
    "Gateway": "secmw.proxy.build",
    "H1Client": "secmw.proxy.h1",
    "ReverseProxy": "secmw.proxy.app",
    "RetryPolicy": "secmw.proxy.pool",
    "Route": "secmw.proxy.app",
    "Target": "secmw.proxy.pool",
    "Timeouts": "secmw.proxy.app",
    "UpstreamPool": "secmw.proxy.pool",
    "build_gateway": "secmw.proxy.build",
    "httpx_client": "secmw.proxy.app",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'secmw.proxy' has no attribute {name!r}")
    try:
        loaded = import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.startswith("secmw"):
            raise
        raise ModuleNotFoundError(
            f"secmw.proxy.{name} needs {exc.name}: pip install 'secmw[gateway]'", name=exc.name
        ) from exc
    return getattr(loaded, name)


__all__ = [
    "CREDENTIAL_HEADERS",
    "HOP_BY_HOP",
    "EgressDenied",
    "EgressGuard",
    "EgressTransport",
    "Gateway",
    "GatewayConfig",
    "H1Client",
    "HeaderFilter",
    "ReverseProxy",
    "RetryPolicy",
    "Route",
    "Target",
    "Timeouts",
    "UpstreamPool",
    "build_gateway",
    "canonical_host",
    "httpx_client",
]
