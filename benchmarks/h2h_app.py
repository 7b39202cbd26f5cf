"""The app and the two security stacks compared by head_to_head.py and throughput.py.

* the app: a Starlette app whose one route returns a 1 KiB JSON document holding a
  live-looking Stripe key (so both redactors have work on every response);
* secmw: one ``SecurityMiddleware`` with RS256 JWT (verified-token cache on), a
  100-rule policy, three in-memory rate-limit tiers, redaction and a JSONL audit file;
* the peer stack a team would otherwise assemble, as Starlette middleware, outermost
  first: a structlog JSON line per request written to a file; Starlette's
  ``AuthenticationMiddleware`` with a backend verifying the RS256 token with PyJWT
  (or Authlib); the same 100 rules hand-written as tuples checked in a loop;
  slowapi's ASGI middleware with the same three limits; detect-secrets
  ``scan_line`` on every line of a textual response; pybreaker around the call
  into the app's router.

``create()`` is the uvicorn factory (``H2H_MODE=bare|secmw|peer``, ``H2H_KEY`` the
PEM of the issuer's private key, ``H2H_DIR`` where the audit and log files go).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import jwt
import pybreaker
import structlog
from detect_secrets.core.scan import scan_line
from detect_secrets.settings import default_settings
from slowapi import Limiter
from slowapi.errors import RateLimitExceeded
from slowapi.middleware import SlowAPIASGIMiddleware
from starlette.applications import Starlette
from starlette.authentication import (
    AuthCredentials,
    AuthenticationBackend,
    AuthenticationError,
    SimpleUser,
)
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from secmw import SecurityMiddleware
from secmw.testing import TokenIssuer

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

ISSUER = "https://issuer.bench.invalid"
AUDIENCE = "https://api.bench.invalid"
# A made-up key in Stripe's live format: both secmw and detect-secrets know it.
SECRET = "sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc"
# High enough never to refuse during a measurement; the checks use low ones.
RATES = ("1000000/minute", "10000000/hour", "100000000/day")
PATH = "/api/svc57/items/42"  # the measured route: service 57, needs team7 (or admin)
SERVICES = 90
TOOLS = ("search", "fetch", "summarize", "translate")


def document() -> bytes:
    """The app's 1 KiB JSON document (indented, as many APIs answer)."""
    items = [
        {"id": f"item-{n:04d}", "name": f"widget {n}", "price_cents": 1000 + n, "stock": n * 3}
        for n in range(8)
    ]
    body: dict[str, Any] = {
        "service": "inventory",
        "page": 1,
        "items": items,
        "billing": {"provider": "stripe", "api_key": SECRET},
    }
    raw = json.dumps(body, indent=1).encode()
    pad = 1024 - len(raw) - len(',\n "note": ""')
    body["note"] = "x" * max(0, pad)
    return json.dumps(body, indent=1).encode()


BODY = document()


async def endpoint(request: Request) -> Response:
    return Response(BODY, media_type="application/json")


def bare_app() -> Starlette:
    """The app every variant serves: one route, a 1 KiB JSON document."""
    return Starlette(routes=[Route("/api/{service}/items/{item}", endpoint, methods=["GET"])])


# -- the 100-rule policy, once as secmw rules, once as a team's tuples ----------------


def secmw_rules() -> list[dict[str, Any]]:
    """100 rules: admin area, 90 services by method and team role, 4 delete guards, 5 tools."""
    rules: list[dict[str, Any]] = [
        {
            "id": "admin-area",
            "effect": "deny",
            "when": {"paths": ["/admin/**"]},
            "unless": {"roles_any": ["admin"]},
        }
    ]
    for n in range(SERVICES):
        rules.append(
            {
                "id": f"svc{n}",
                "effect": "allow",
                "when": {
                    "methods": ["GET", "POST"] if n % 3 else ["GET"],
                    "paths": [f"/api/svc{n}/**"],
                    "roles_any": [f"team{n % 10}", "admin"],
                },
            }
        )
    for n in range(4):
        rules.append(
            {
                "id": f"no-delete-{n}",
                "effect": "deny",
                "when": {"methods": ["DELETE"], "paths": [f"/api/svc{n * 20}/**"]},
                "unless": {"roles_any": ["admin"]},
            }
        )
    for tool in TOOLS:
        rules.append(
            {
                "id": f"tool-{tool}",
                "effect": "allow",
                "when": {"paths": ["/mcp"], "tools": [tool], "roles_any": ["agent", "admin"]},
            }
        )
    rules.append(
        {
            "id": "tool-shell",
            "effect": "deny",
            "when": {"tools": ["shell"]},
            "unless": {"roles_any": ["admin"]},
        }
    )
    assert len(rules) == 100
    return rules


# (id, effect, methods or None, path prefix, roles needed or None, roles exempting or None,
#  tool or None): the same rules the way a team writes them by hand.
Roles = frozenset[str] | None
Rule = tuple[str, str, Roles, str, Roles, Roles, str | None]
ADMIN = frozenset({"admin"})


def team_rules() -> list[Rule]:
    rules: list[Rule] = [("admin-area", "deny", None, "/admin", None, ADMIN, None)]
    for n in range(SERVICES):
        methods = frozenset({"GET", "POST"} if n % 3 else {"GET"})
        roles = frozenset({f"team{n % 10}", "admin"})
        rules.append((f"svc{n}", "allow", methods, f"/api/svc{n}", roles, None, None))
    for n in range(4):
        prefix = f"/api/svc{n * 20}"
        rules.append((f"no-delete-{n}", "deny", frozenset({"DELETE"}), prefix, None, ADMIN, None))
    agents = frozenset({"agent", "admin"})
    for tool in TOOLS:
        rules.append((f"tool-{tool}", "allow", None, "/mcp", agents, None, tool))
    rules.append(("tool-shell", "deny", None, "", None, ADMIN, "shell"))
    assert len(rules) == 100
    return rules


class TeamPolicyMiddleware:
    """The hand-written policy: deny overrides, anonymous -> 401, no rule -> 403."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.rules = team_rules()

    def decide(self, method: str, path: str, roles: frozenset[str], tool: str | None) -> bool:
        allowed = False
        for _rid, effect, methods, prefix, need, unless, tool_name in self.rules:
            if methods is not None and method not in methods:
                continue
            if prefix and path != prefix and not path.startswith(prefix + "/"):
                continue
            if tool_name is not None and tool != tool_name:
                continue
            if need is not None and roles.isdisjoint(need):
                continue
            if unless is not None and not roles.isdisjoint(unless):
                continue
            if effect == "deny":
                return False
            allowed = True
        return allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        user = scope["user"]
        if not user.is_authenticated:
            response = JSONResponse({"error": "unauthenticated"}, 401)
            response.headers["www-authenticate"] = "Bearer"
            await response(scope, receive, send)
            return
        tool = None
        if scope["method"] == "POST" and scope["path"] == "/mcp":
            body = b""
            while True:
                message = await receive()
                body += message.get("body", b"")
                if not message.get("more_body"):
                    break
            try:
                tool = json.loads(body)["params"]["name"]
            except (ValueError, KeyError, TypeError):
                tool = None

            async def replay() -> Message:
                return {"type": "http.request", "body": body, "more_body": False}

            receive = replay
        if not self.decide(scope["method"], scope["path"], user.roles, tool):
            await JSONResponse({"error": "forbidden"}, 403)(scope, receive, send)
            return
        await self.app(scope, receive, send)


# -- the rest of the peer stack --------------------------------------------------------


class JWTUser(SimpleUser):
    def __init__(self, claims: dict[str, Any]) -> None:
        super().__init__(claims["sub"])
        self.roles = frozenset(claims.get("roles", ()))


class PyJWTBackend(AuthenticationBackend):
    """Bearer tokens verified with PyJWT: signature, iss, aud, exp, required claims."""

    def __init__(self, public_key: Any, *, cache: bool = False) -> None:
        self.key = public_key
        self.cache: dict[str, dict[str, Any]] | None = {} if cache else None

    def verify(self, token: str) -> dict[str, Any]:
        if self.cache is not None:
            claims = self.cache.get(token)
            if claims is not None and claims["exp"] > time.time():
                return claims
        claims = jwt.decode(
            token,
            self.key,
            algorithms=["RS256"],
            audience=AUDIENCE,
            issuer=ISSUER,
            options={"require": ["exp", "sub", "iss", "aud"]},
        )
        if self.cache is not None:
            if len(self.cache) >= 10000:
                self.cache.clear()
            self.cache[token] = claims
        return claims

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, JWTUser] | None:
        scheme, _, token = conn.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        try:
            claims = self.verify(token)
        except jwt.PyJWTError as exc:
            raise AuthenticationError("invalid token") from exc
        return AuthCredentials(str(claims.get("scope", "")).split()), JWTUser(claims)


class AuthlibBackend(AuthenticationBackend):
    """Bearer tokens verified with Authlib's RFC 9068 ``JWTBearerTokenValidator``."""

    def __init__(self, jwks: dict[str, Any]) -> None:
        from authlib.oauth2.rfc9068 import JWTBearerTokenValidator  # noqa: PLC0415
        from joserfc.jwk import KeySet  # noqa: PLC0415

        keys = KeySet.import_key_set(jwks)

        class Validator(JWTBearerTokenValidator):  # type: ignore[misc]
            def get_jwks(self) -> Any:
                return keys

        self.validator = Validator(issuer=ISSUER, resource_server=AUDIENCE)

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, JWTUser] | None:
        scheme, _, token = conn.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        try:
            claims = self.validator.authenticate_token(token)
            self.validator.validate_token(claims, [], None)
        except Exception as exc:  # Authlib raises several unrelated types
            raise AuthenticationError("invalid token") from exc
        return AuthCredentials(str(claims.get("scope", "")).split()), JWTUser(dict(claims))


def auth_error(conn: HTTPConnection, exc: Exception) -> Response:
    challenge = {"www-authenticate": 'Bearer error="invalid_token"'}
    return JSONResponse({"error": "invalid_token"}, 401, headers=challenge)


class StructlogMiddleware:
    """One JSON line per request (method, path, status, user, duration) via structlog."""

    def __init__(self, app: ASGIApp, log_path: str) -> None:
        self.app = app
        self.handle = open(log_path, "a", encoding="utf-8")  # noqa: SIM115 - lives with the app
        self.log = structlog.wrap_logger(
            structlog.WriteLogger(self.handle),
            processors=[
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso"),
                structlog.processors.JSONRenderer(),
            ],
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def observe(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observe)
        finally:
            user = scope.get("user")
            self.log.info(
                "request",
                method=scope["method"],
                path=scope["path"],
                status=status,
                user=user.display_name if user is not None and user.is_authenticated else None,
                duration_ms=round((time.perf_counter() - started) * 1000, 3),
            )


class DetectSecretsMiddleware:
    """Buffers textual responses and blanks what detect-secrets ``scan_line`` finds per line."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    @staticmethod
    def clean(body: bytes) -> bytes:
        lines = body.decode("utf-8", "replace").split("\n")
        with default_settings():
            for index, line in enumerate(lines):
                for found in scan_line(line):
                    if found.secret_value:
                        line = line.replace(found.secret_value, "[REDACTED]")  # noqa: PLW2901
                lines[index] = line
        return "\n".join(lines).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        chunks: list[bytes] = []

        async def hold(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
                return
            if message["type"] != "http.response.body" or start is None:
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body"):
                return
            body = self.clean(b"".join(chunks))
            headers = [(k, v) for k, v in start["headers"] if k != b"content-length"]
            headers.append((b"content-length", str(len(body)).encode()))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, hold)


class BreakerMiddleware:
    """pybreaker around the call into the router (5 failures open it for 30 s)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.breaker = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=30)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        with self.breaker.calling():
            await self.app(scope, receive, send)


def user_or_address(request: Request) -> str:
    user = request.scope.get("user")
    if user is not None and user.is_authenticated:
        return f"user:{user.display_name}"
    return f"ip:{request.client.host if request.client else '-'}"


def rate_limited(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RateLimitExceeded)
    return JSONResponse({"error": f"rate limit exceeded: {exc.detail}"}, 429)


def peer_app(
    issuer: TokenIssuer,
    directory: Path,
    *,
    backend: str = "pyjwt",
    rates: tuple[str, ...] = RATES,
    scan: bool = True,
) -> Starlette:
    """The peer stack around the same route (``scan=False`` leaves detect-secrets out)."""
    if backend == "authlib":
        auth: AuthenticationBackend = AuthlibBackend(issuer.jwks())
    else:
        key = jwt.PyJWK(issuer.public_jwk).key
        auth = PyJWTBackend(key, cache=backend == "pyjwt+cache")
    app = Starlette(
        routes=[Route("/api/{service}/items/{item}", endpoint, methods=["GET"])],
        middleware=[
            Middleware(StructlogMiddleware, log_path=str(directory / f"peer-{backend}.log")),
            Middleware(AuthenticationMiddleware, backend=auth, on_error=auth_error),
            Middleware(TeamPolicyMiddleware),
            Middleware(SlowAPIASGIMiddleware),
            *([Middleware(DetectSecretsMiddleware)] if scan else []),
            Middleware(BreakerMiddleware),
        ],
        exception_handlers={RateLimitExceeded: rate_limited},
    )
    app.state.limiter = Limiter(
        key_func=user_or_address, default_limits=[";".join(rates)], headers_enabled=True
    )
    return app


STAGES = ("auth", "policy", "ratelimit", "redact", "audit")


def secmw_config(
    issuer: TokenIssuer,
    directory: Path,
    rates: tuple[str, ...] = RATES,
    stages: tuple[str, ...] = STAGES,
    audit_batch_ms: int | None = None,
) -> dict[str, Any]:
    """The full secmw chain as one configuration (``stages`` picks a prefix, to break it down).

    ``audit_batch_ms`` sets ``audit.file.batch_interval_ms`` (else the default).
    """
    names = ("per-minute", "per-hour", "per-day")
    config: dict[str, Any] = {
        "auth": {"jwt": issuer.jwt_config()},  # verified-token cache: on by default
        "audit": {"sink": "none"},
    }
    if "policy" in stages:
        config["policy"] = {"rules": secmw_rules()}
    if "ratelimit" in stages:
        config["ratelimit"] = {
            "tiers": [
                {"name": name, "key": "principal", "rate": rate}
                for name, rate in zip(names, rates, strict=True)
            ]
        }
    if "redact" in stages:
        config["redact"] = {"enabled": True}
    if "audit" in stages:
        config["audit"] = {"sink": "file", "file": {"path": str(directory / "audit.jsonl")}}
        if audit_batch_ms is not None:
            config["audit"]["file"]["batch_interval_ms"] = audit_batch_ms
    return config


def secmw_app(
    issuer: TokenIssuer,
    directory: Path,
    rates: tuple[str, ...] = RATES,
    stages: tuple[str, ...] = STAGES,
    audit_batch_ms: int | None = None,
) -> Any:
    """The secmw chain around the same route."""
    config = secmw_config(issuer, directory, rates, stages, audit_batch_ms)
    return SecurityMiddleware(bare_app(), config)


def make_issuer(pem: str | None = None) -> TokenIssuer:
    if pem is not None:
        return TokenIssuer.from_pem(pem, issuer=ISSUER, audience=AUDIENCE, kid="h2h")
    return TokenIssuer(issuer=ISSUER, audience=AUDIENCE, algorithm="RS256", kid="h2h")


def create() -> Any:
    """The app uvicorn serves (``--factory``), chosen by ``H2H_MODE``."""
    mode = os.environ.get("H2H_MODE", "bare")
    if mode == "bare":
        return bare_app()
    issuer = make_issuer(Path(os.environ["H2H_KEY"]).read_text(encoding="utf-8"))
    directory = Path(os.environ["H2H_DIR"])
    if mode == "secmw":
        batch = os.environ.get("H2H_AUDIT_BATCH_MS")
        return secmw_app(issuer, directory, audit_batch_ms=int(batch) if batch else None)
    if mode.startswith("secmw:"):  # the first stages only, e.g. "secmw:auth+policy"
        stages = tuple(mode.removeprefix("secmw:").split("+"))
        if stages != STAGES[: len(stages)]:
            raise ValueError(f"stages must be a prefix of {STAGES}")
        return secmw_app(issuer, directory, stages=stages)
    return peer_app(issuer, directory, backend=mode.removeprefix("peer-"))


def mint(issuer: TokenIssuer, roles: tuple[str, ...] = ("team7",), expires_in: float = 3600) -> str:
    """A token both stacks accept (``client_id`` for Authlib's RFC 9068 validator)."""
    return issuer.mint(
        "bench-user", roles=roles, expires_in=expires_in, claims={"client_id": "bench"}
    )
