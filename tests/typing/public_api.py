"""Type-checked by ``make test`` (mypy --strict), never run: the public API as users type it.

Each ``type: ignore[...]`` marks a misuse mypy must catch; with ``strict`` an
ignore that is no longer needed is itself an error, so a loosened type fails here.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from starlette.applications import Starlette

from secmw import Principal, SecurityMiddleware
from secmw.audit import AuditEvent, MemoryAuditSink
from secmw.context import RequestContext
from secmw.testing import AuditCapture, TokenIssuer


class HeaderAuthenticator:
    """A custom authenticator, as docs/authentication.md describes the protocol."""

    async def authenticate(self, ctx: RequestContext) -> Principal | None:
        return None


class PrintSink:
    """A custom audit sink."""

    async def emit(self, event: AuditEvent) -> None:
        print(event.to_json())

    async def aclose(self) -> None:
        return None


async def plain_asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A hand-written ASGI app whose scope is a plain dict."""


issuer = TokenIssuer()
config: dict[str, Any] = {"auth": {"jwt": issuer.jwt_config()}}
apps = [
    SecurityMiddleware(FastAPI(), config),
    SecurityMiddleware(Starlette(), "secmw.toml"),
    SecurityMiddleware(plain_asgi, config, audit=AuditCapture()),
    SecurityMiddleware(FastAPI(), config, authenticator=HeaderAuthenticator(), audit=PrintSink()),
    SecurityMiddleware(FastAPI(), config, audit=MemoryAuditSink()),
]
wrong_component = SecurityMiddleware(FastAPI(), config, authenticator=5)  # type: ignore[arg-type]
unknown_component = SecurityMiddleware(FastAPI(), config, auditor=PrintSink())  # type: ignore[call-arg]
