"""The demo app for the load test, protected (every component on) or bare.

``SECMW_LOAD_MODE=protected|bare`` picks the variant; ``SECMW_LOAD_JWK`` (a path)
holds the JWT section the protected variant trusts and ``SECMW_LOAD_AUDIT`` the
audit file to write, both set by benchmarks/load.py.
"""

from __future__ import annotations

import json
import os
from typing import Any

from secmw import SecurityMiddleware
from secmw._demo import demo_app, demo_config


class _Anonymous:
    subject = "anonymous"
    roles: frozenset[str] = frozenset()
    scopes: frozenset[str] = frozenset()
    tenant = None
    is_authenticated = False


async def _bare(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The demo app without secmw: it still needs the keys secmw would have set."""
    if scope["type"] != "lifespan":
        scope["user"] = _Anonymous()

        class _Ctx:
            request_id = "-"

        scope.setdefault("state", {})["secmw"] = _Ctx()
    await demo_app(scope, receive, send)


def create() -> Any:
    """The app uvicorn serves (``--factory``)."""
    if os.environ.get("SECMW_LOAD_MODE", "protected") == "bare":
        return _bare
    with open(os.environ["SECMW_LOAD_JWK"], encoding="utf-8") as handle:
        section = json.load(handle)
    # The demo's own configuration (every component on), with the issuer the load
    # client signs with, rate limits sized for the load, and the audit trail in a
    # JSONL file (stdout would measure the terminal).
    config = demo_config(_Issuer(section))
    config["ratelimit"]["tiers"] = [
        {"name": "per-user", "key": "principal", "rate": "100000/minute"},
        {"name": "global", "key": "global", "rate": "5000/second"},
    ]
    config["audit"] = {"sink": "file", "file": {"path": os.environ["SECMW_LOAD_AUDIT"]}}
    return SecurityMiddleware(demo_app, config)


class _Issuer:
    """Stands in for the demo's TokenIssuer: only its ``jwt_config`` is needed."""

    def __init__(self, section: dict[str, Any]) -> None:
        self.section = section

    def jwt_config(self, **overrides: Any) -> dict[str, Any]:
        return {**self.section, **overrides}
