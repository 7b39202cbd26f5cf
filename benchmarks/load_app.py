"""The demo app for the load test, protected or bare, as a uvicorn factory.

``SECMW_LOAD_MODE=protected|bare`` picks the variant; ``SECMW_LOAD_JWK`` (a path)
holds the public JWK the protected variant trusts, written by benchmarks/load.py.
"""

from __future__ import annotations

import json
import os
from typing import Any

from secmw import SecurityMiddleware
from secmw._demo import demo_app


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
    config = {
        "max_body_bytes": 64 * 1024,
        "auth": {"public_paths": ["/", "/healthz"], "realm": "secmw-demo", "jwt": section},
        "audit": {"sink": "none"},
    }
    return SecurityMiddleware(demo_app, config)
