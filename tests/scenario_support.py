"""The full chain for the scenario suite: one configuration with every component on.

A :class:`Service` is the :class:`ScenarioApp` behind ``SecurityMiddleware`` with
JWT authentication over a JWKS served in memory, a policy (admin area, tenant
isolation, an MCP tool allow-list, step-up for critical tools), rate-limit tiers
(per principal with plans, global, websocket messages), response redaction,
prompt-injection inspection, anomaly detection and a captured audit trail.
Requests go through the raw ASGI harness of :mod:`tests.support`, so every
message the chain sends is visible.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable
from typing import Any

from secmw import SecurityMiddleware
from secmw.auth.build import build_jwt
from secmw.config import parse_config
from secmw.context import Principal
from secmw.testing import AuditCapture, InMemoryJWKS, TokenIssuer
from tests.redact_corpus import SPECS
from tests.support import Receiver, Sender, call, http_scope

ISSUER = "https://login.scenario.test"
AUDIENCE = "https://api.scenario.test"
JWKS_URL = f"{ISSUER}/jwks"
MFA = "urn:scenario:mfa"
CLIENT = ("198.51.100.10", 50000)

# Secrets the app leaks in its answers; valid formats (checksums included).
_RNG = random.Random(9)
GITHUB_TOKEN = SPECS["github_token"].make(_RNG)[1]
OPENAI_KEY = SPECS["openai_api_key"].make(_RNG)[1]
LEAKED = (GITHUB_TOKEN, OPENAI_KEY)

POLICY: dict[str, Any] = {
    "rules": [
        {"id": "signed-in", "effect": "allow", "when": {"authenticated": True}},
        {
            "id": "admin-area",
            "effect": "deny",
            "reason": "admin area",
            "when": {"paths": ["/api/admin/**"]},
            "unless": {"roles_any": ["admin"]},
        },
        {
            "id": "tenant-isolation",
            "effect": "deny",
            "reason": "another tenant's data",
            "when": {"paths": ["/tenants/{tenant}/**"]},
            "unless": {"principal_matches_path": {"tenant": "tenant"}},
        },
        {
            "id": "mcp-allow-list",
            "effect": "deny",
            "reason": "tool not on the allow-list",
            "when": {"rpc_methods": ["tools/call"]},
            "unless": {"tools": ["search", "fetch_report", "delete_*"]},
        },
        {
            "id": "mfa-for-critical-tools",
            "effect": "step_up",
            "reason": "critical tool",
            "acr_values": [MFA],
            "max_age": 300,
            "when": {"tools": ["delete_*"]},
        },
    ]
}

TIERS: list[dict[str, Any]] = [
    {"name": "user", "key": "principal", "rate": "30/minute", "plans": {"paid": "60/minute"}},
    {"name": "all", "key": "global", "rate": "10000/minute"},
    {"name": "ws-messages", "key": "connection", "rate": "5/minute", "applies_to": "messages"},
]


def full_config(
    signer: TokenIssuer,
    *,
    tiers: list[dict[str, Any]] | None = None,
    storage: dict[str, Any] | None = None,
    audit: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Every component on; the JWT keys come from a JWKS URL (fetched in memory)."""
    ratelimit: dict[str, Any] = {"tiers": TIERS if tiers is None else tiers}
    if storage is not None:
        ratelimit["storage"] = storage
    config: dict[str, Any] = {
        "max_body_bytes": 64 * 1024,
        "auth": {
            "public_paths": ["/healthz"],
            "realm": "scenario",
            "jwt": signer.jwt_config(keys=[], jwks_url=JWKS_URL, jwks_min_ttl=0, typ="at+jwt"),
        },
        "policy": POLICY,
        "ratelimit": ratelimit,
        "redact": {"enabled": True},
        "inspect": {"action": "deny"},
        "anomaly": {"enabled": True},
        "websocket": {"max_message_bytes": 4096},
        "audit": audit or {"sink": "none"},
    }
    config.update(extra)
    return config


class Service:
    """The scenario app behind the full chain; ``audit`` holds every event it recorded."""

    def __init__(
        self,
        signer: TokenIssuer,
        jwks: InMemoryJWKS,
        *,
        revocation: Any = None,
        capture: bool = True,
        **config: Any,
    ) -> None:
        self.audit = AuditCapture()
        self.inner = ScenarioApp()
        self.config = parse_config(full_config(signer, **config))
        assert self.config.auth.jwt is not None
        authenticator = build_jwt(
            self.config.auth.jwt, revocation=revocation, fetcher=jwks.fetcher()
        )
        components: dict[str, Any] = {"authenticator": authenticator}
        if capture:
            components["audit"] = self.audit
        self.app = SecurityMiddleware(self.inner, self.config, **components)

    async def request(
        self,
        path: str,
        *,
        method: str = "GET",
        token: str | None = None,
        body: bytes = b"",
        headers: Iterable[tuple[str, str]] = (),
        client: tuple[str, int] = CLIENT,
        **scope: Any,
    ) -> Sender:
        """One HTTP request through the chain, as a server would deliver it."""
        sent: list[tuple[str, str]] = list(headers)
        if token is not None:
            sent.append(("authorization", f"Bearer {token}"))
        if body:
            sent.append(("content-type", "application/json"))
            sent.append(("content-length", str(len(body))))
        return await call(
            self.app,
            http_scope(path, method=method, headers=sent, client=client, **scope),
            Receiver.body(body),
        )

    async def tool(
        self, name: str, arguments: dict[str, Any], *, token: str | None, **options: Any
    ) -> Sender:
        """An MCP ``tools/call`` through the chain."""
        return await self.request(
            "/mcp", method="POST", token=token, body=rpc_body(name, arguments), **options
        )

    def events(self, sent: Sender) -> list[Any]:
        """The audit events of the request ``sent`` answered (by its request id)."""
        request_id = sent.header("x-request-id")
        assert request_id is not None
        return self.audit.for_request(request_id)

    def event(self, sent: Sender) -> Any:
        """The one request event (the last event carrying the request's id)."""
        return self.events(sent)[-1]


def rpc_body(name: str, arguments: dict[str, Any], request_id: int = 1) -> bytes:
    """A JSON-RPC ``tools/call`` body."""
    return json.dumps(
        {
            "jsonrpc": "2.0",
            "id": request_id,
            "method": "tools/call",
            "params": {"name": name, "arguments": arguments},
        }
    ).encode()


def assert_no_credentials(lines: Iterable[str], *secrets: str) -> None:
    """No audit line holds a JWT, a bearer value or any of ``secrets``."""
    for line in lines:
        assert "eyJ" not in line, line  # every JWT starts with a base64url JSON header
        assert "Bearer " not in line, line
        for secret in secrets:
            assert secret not in line, line


class ScenarioApp:
    """The protected service: JSON routes, an MCP endpoint, an SSE stream, a websocket echo.

    It records the scope of every call it gets, so tests can check what passed
    the chain. Malformed input is answered 400, never raised: a 5xx seen by the
    fuzzer is then secmw's.
    """

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.frames: dict[str, list[dict[str, Any]]] = {}  # websocket messages by request id

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
            return
        if scope["type"] != "http":
            return
        self.calls.append(scope)
        body = await _read(receive)
        user: Principal = scope["user"]
        path = scope["path"]
        if path == "/mcp" and scope["method"] == "POST":
            await self._rpc(body, send)
        elif path == "/api/report":
            await _json(send, 200, {"report": "q3", "billing_key": GITHUB_TOKEN})
        elif path == "/api/stream":
            await _sse(send, user.subject)
        elif path.startswith("/tenants/"):
            await _json(send, 200, {"tenant": path.split("/")[2], "subject": user.subject})
        elif path.startswith("/api/admin"):
            await _json(send, 200, {"admin": True, "subject": user.subject})
        elif path == "/healthz":
            await _json(send, 200, {"status": "ok"})
        else:
            await _json(
                send,
                200,
                {
                    "path": path,
                    "subject": user.subject,
                    "tenant": user.tenant,
                    "roles": sorted(user.roles),
                },
            )

    async def _rpc(self, body: bytes, send: Any) -> None:
        try:
            request = json.loads(body)
            if isinstance(request, list):  # a batch: answer every call with its id
                reply: Any = [_rpc_result(item) for item in request if isinstance(item, dict)]
            else:
                reply = _rpc_result(request)
        except (ValueError, RecursionError):
            reply = {"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "parse"}}
        await _json(send, 200, reply)

    async def _websocket(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        user: Principal = scope["user"]
        frames = self.frames.setdefault(scope["state"]["secmw"].request_id, [])
        await receive()  # websocket.connect, replayed by the middleware
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            frames.append(message)
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is None:
                text = (message.get("bytes") or b"").decode("utf-8", "replace")
            await send({"type": "websocket.send", "text": f"{user.subject}: {text}"})


def _rpc_result(request: Any) -> dict[str, Any]:
    if not isinstance(request, dict):
        return {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": "invalid"}}
    params = request.get("params")
    name = params.get("name") if isinstance(params, dict) else None
    arguments = params.get("arguments") if isinstance(params, dict) else None
    if request.get("method") == "tools/list":
        result: Any = {
            "tools": [
                {"name": tool, "inputSchema": {"type": "object"}}
                for tool in ("search", "fetch_report", "delete_repo", "shell_exec")
            ]
        }
    elif name == "fetch_report":
        result = {"content": [{"type": "text", "text": f"the key is {OPENAI_KEY}"}]}
    else:
        result = {"content": [{"type": "text", "text": f"{name} done"}], "arguments": arguments}
    return {"jsonrpc": "2.0", "id": request.get("id"), "result": result}


async def _read(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _json(send: Any, status: int, payload: object) -> None:
    body = json.dumps(payload).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _sse(send: Any, subject: str) -> None:
    """Three events; the second carries a secret split across two body messages."""
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")],
        }
    )
    events = [
        f"event: tick\ndata: {json.dumps({'n': 0, 'user': subject})}\n\n",
        f"event: tick\ndata: {json.dumps({'n': 1, 'key': GITHUB_TOKEN})}\n\n",
        f"event: tick\ndata: {json.dumps({'n': 2})}\n\n",
    ]
    stream = "".join(events).encode()
    cut = stream.index(GITHUB_TOKEN.encode()) + 10  # inside the secret
    for piece in (stream[:cut], stream[cut:]):
        await send({"type": "http.response.body", "body": piece, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})
