"""A FastAPI service protected end to end by secmw.

    python examples/fastapi_service/app.py [--port 8001]

Starts on 127.0.0.1 with the policy in secmw.toml next to this file and a freshly
generated development signing key, and prints tokens to try it with. The
middleware enforces the configured policy on every request; the route-level
dependencies add per-route scopes and step-up, and declare them in /docs.
"""

from __future__ import annotations

import argparse
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import Depends, FastAPI, Security

from secmw import Principal, SecurityMiddleware
from secmw.fastapi import current_principal, install, oauth2_scheme, require
from secmw.testing import TokenIssuer

HERE = Path(__file__).resolve().parent
OAUTH = oauth2_scheme(
    "https://login.example.invalid/authorize",
    "https://login.example.invalid/token",
    {"reports:read": "read reports", "transfers:write": "make transfers"},
)


def build_api() -> FastAPI:
    """The unprotected FastAPI app."""
    api = FastAPI(title="secmw example service")
    install(api)

    @api.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @api.get("/me")
    async def me(user: Principal = Depends(current_principal)) -> dict[str, Any]:
        return {"subject": user.subject, "tenant": user.tenant, "roles": sorted(user.roles)}

    @api.get("/reports", dependencies=[Security(require(scopes=["reports:read"], schemes=[OAUTH]))])
    async def reports() -> dict[str, list[str]]:
        return {"reports": ["q3", "q4"]}

    @api.post("/transfers")
    async def transfer(
        user: Principal = Security(
            require(
                scopes=["transfers:write"], acr=["urn:example:mfa"], max_age=300, schemes=[OAUTH]
            )
        ),
    ) -> dict[str, str]:
        return {"status": "sent", "by": user.subject}

    @api.get("/tenants/{tenant}/orders")
    async def orders(tenant: str) -> dict[str, Any]:
        return {"tenant": tenant, "orders": []}

    @api.get("/admin/stats")
    async def stats() -> dict[str, int]:
        return {"users": 3}

    return api


def build_app(issuer: TokenIssuer) -> SecurityMiddleware:
    """The API behind SecurityMiddleware, configured from secmw.toml plus the issuer."""
    config = tomllib.loads((HERE / "secmw.toml").read_text(encoding="utf-8"))
    config["auth"]["jwt"] = issuer.jwt_config()
    return SecurityMiddleware(build_api(), config)


def main() -> int:
    parser = argparse.ArgumentParser(description="secmw example: a protected FastAPI service")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args()
    issuer = TokenIssuer(issuer="https://login.example.invalid", audience="example-service")
    app = build_app(issuer)
    now = int(time.time())
    tokens = {
        "reader": issuer.mint("ann", tenant="acme", scopes=["reports:read"]),
        "admin": issuer.mint("ada", tenant="acme", roles=["admin"], scopes=["reports:read"]),
        "mfa": issuer.mint(
            "max",
            tenant="acme",
            scopes=["transfers:write"],
            acr="urn:example:mfa",
            claims={"auth_time": now},
        ),
    }
    for name, token in tokens.items():
        print(f"{name} token: {token}")
    print(f"listening on http://127.0.0.1:{args.port} (docs at /docs)", flush=True)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
