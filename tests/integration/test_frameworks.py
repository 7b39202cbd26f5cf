"""Starlette and FastAPI apps behind the middleware, through httpx."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from starlette.applications import Starlette
from starlette.authentication import requires
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from secmw import SecurityMiddleware
from secmw.testing import AuditCapture, TokenIssuer

pytestmark = pytest.mark.anyio


def client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")


async def test_starlette_requires_and_request_user_work_unchanged() -> None:
    @requires("write")
    async def write(request: Any) -> JSONResponse:
        return JSONResponse(
            {"user": request.user.display_name, "scopes": list(request.auth.scopes)}
        )

    async def stream(request: Any) -> StreamingResponse:
        async def parts() -> Any:
            for index in range(3):
                yield f"part{index}\n"

        return StreamingResponse(parts(), media_type="text/plain")

    issuer = TokenIssuer()
    audit = AuditCapture()
    app = SecurityMiddleware(
        Starlette(routes=[Route("/write", write), Route("/stream", stream)]),
        {"auth": {"jwt": issuer.jwt_config()}},
        audit=audit,
    )
    async with client(app) as http:
        reader = {"authorization": f"Bearer {issuer.mint('r', scopes=['read'])}"}
        writer = {"authorization": f"Bearer {issuer.mint('w', scopes=['read', 'write'])}"}
        assert (await http.get("/write", headers=reader)).status_code == 403
        response = await http.get("/write", headers=writer)
        assert response.json() == {"user": "w", "scopes": ["read", "write"]}
        assert (await http.get("/stream", headers=writer)).text == "part0\npart1\npart2\n"
        assert (await http.get("/write")).status_code == 401
    statuses = [event.status for event in audit.events if event.name != "sys_startup"]
    assert statuses == [403, 200, 200, 401]


async def test_fastapi_sees_principal_in_request_state() -> None:
    api = FastAPI()

    @api.get("/me")
    async def me(request: Request) -> dict[str, Any]:
        ctx = request.state.secmw
        return {
            "sub": request.scope["user"].subject,
            "request_id": ctx.request_id,
            "tier": ctx.principal.tier,
        }

    issuer = TokenIssuer(algorithm="EdDSA")
    app = SecurityMiddleware(
        api,
        {
            "auth": {"jwt": issuer.jwt_config(), "public_paths": ["/docs", "/openapi.json"]},
            "audit": {"sink": "none"},
        },
    )
    async with client(app) as http:
        token = issuer.mint("bob", tier="paid")
        response = await http.get(
            "/me", headers={"authorization": f"Bearer {token}", "x-request-id": "r-1"}
        )
        assert response.json() == {"sub": "bob", "request_id": "r-1", "tier": "paid"}
        assert response.headers["x-request-id"] == "r-1"
        assert (await http.get("/openapi.json")).status_code == 200
        assert (await http.get("/me")).status_code == 401
