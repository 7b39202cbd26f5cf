"""A worker process for the Redis tests: hammers the middleware and prints what it admitted.

Usage: ``python -m tests.ratelimit_worker URL USER REQUESTS`` prints ``{"admitted": n}``.
"""

from __future__ import annotations

import json
import sys

import anyio

from secmw import SecurityMiddleware
from tests.ratelimit_support import HeaderAuthenticator
from tests.support import EchoApp, call, http_scope


def config(url: str) -> dict[str, object]:
    return {
        "auth": {"allow_anonymous": True},
        "audit": {"sink": "none"},
        "ratelimit": {
            "storage": {"url": url, "timeout": 5, "connect_timeout": 5},
            "tiers": [
                {"name": "all", "key": "global", "rate": "30/hour"},
                {"name": "user", "key": "principal", "rate": "10/hour"},
                {
                    "name": "slide",
                    "key": "principal",
                    "rate": "12/hour",
                    "algorithm": "sliding-window-counter",
                },
                {"name": "gcra", "key": "principal", "rate": "11/hour", "algorithm": "gcra"},
            ],
        },
    }


async def main(url: str, user: str, requests: int) -> None:
    app = SecurityMiddleware(EchoApp(), config(url), authenticator=HeaderAuthenticator())
    admitted = 0
    for _ in range(requests):
        sent = await call(app, http_scope("/api", headers=[("x-user", user)]))
        assert sent.status in (200, 429), sent.status
        admitted += sent.status == 200
    print(json.dumps({"admitted": admitted}))


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2], int(sys.argv[3]))
