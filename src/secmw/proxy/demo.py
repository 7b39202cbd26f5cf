"""``secmw demo --gateway``: the gateway in front of an embedded upstream on loopback.

The upstream echoes the headers it received, so the demo shows credential
stripping: the client's token, cookies and API key never arrive there.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import anyio

from secmw._serving import UVICORN_OPTIONS
from secmw._serving import serve as serve_until_stopped
from secmw.errors import ConfigError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


async def echo_upstream(scope: Scope, receive: Receive, send: Send) -> None:
    """The embedded upstream: echoes headers (``/echo``) and streams SSE (``/stream``)."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            kind = message["type"].rsplit(".", 1)[-1]
            await send({"type": f"lifespan.{kind}.complete"})
            if kind == "shutdown":
                return
    if scope["type"] != "http":
        return
    if scope["path"] == "/stream":
        start = {"type": "http.response.start", "status": 200}
        await send({**start, "headers": [(b"content-type", b"text/event-stream")]})
        for number in range(3):
            chunk = f"data: {json.dumps({'tick': number})}\n\n".encode()
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await anyio.sleep(0.2)
        await send({"type": "http.response.body", "body": b""})
        return
    received = {
        "path": scope["path"],
        "method": scope["method"],
        "headers": {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]},
    }
    body = json.dumps(received, indent=2).encode() + b"\n"
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def demo_gateway_config(issuer: Any, upstream_port: int, port: int) -> dict[str, Any]:
    """The demo's configuration: JWT auth, the upstream on loopback, probes on."""
    return {
        "auth": {"realm": "secmw-gateway-demo", "jwt": issuer.jwt_config(typ="at+jwt")},
        "audit": {"sink": "stdout"},
        "gateway": {
            "listen": f"127.0.0.1:{port}",
            "upstreams": {"demo": {"targets": [f"http://127.0.0.1:{upstream_port}"]}},
            "routes": [{"prefix": "/", "upstream": "demo"}],
            "egress": {"allow_networks": ["127.0.0.0/8"]},
            "health": {"liveness_path": "/healthz", "readiness_path": "/readyz"},
            "breaker": {"minimum_calls": 5, "window_size": 20, "open_duration": 10},
        },
    }


def run_demo(args: argparse.Namespace) -> int:
    """Serve the embedded upstream on ``port + 1`` and the gateway on ``port``."""
    import uvicorn  # noqa: PLC0415 - optional dependency

    from secmw._demo import DEMO_AUDIENCE, DEMO_ISSUER  # noqa: PLC0415
    from secmw.config import load_config  # noqa: PLC0415
    from secmw.proxy.build import build_gateway  # noqa: PLC0415
    from secmw.testing import TokenIssuer  # noqa: PLC0415

    issuer = TokenIssuer(issuer=DEMO_ISSUER, audience=DEMO_AUDIENCE, algorithm="ES256", kid="demo")
    upstream_port = args.upstream_port or args.port + 1
    if upstream_port > 65535:
        print("secmw demo: give --upstream-port (--port + 1 is not a port)", file=sys.stderr)
        return 2
    try:
        gateway = build_gateway(load_config(demo_gateway_config(issuer, upstream_port, args.port)))
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    token = issuer.mint("demo-user", scopes=["read"], expires_in=args.token_ttl)
    base = f"http://{args.host}:{args.port}"
    print(
        f"secmw demo --gateway: the gateway on {base}, its upstream on 127.0.0.1:{upstream_port}"
        " (Ctrl-C stops both)\n\n"
        f"token (valid {args.token_ttl}s):\n{token}\n\n"
        "try:\n"
        f"  curl -i {base}/readyz\n"
        f"  curl -i {base}/echo\n"
        f"  curl -i -H 'Authorization: Bearer {token}' -H 'Cookie: s=1' {base}/echo"
        "   # the upstream never sees the token or the cookie\n"
        f"  curl -N -H 'Authorization: Bearer {token}' {base}/stream\n\n"
        "audit events follow as JSON lines:",
        flush=True,
    )
    servers = [
        uvicorn.Server(
            uvicorn.Config(echo_upstream, host="127.0.0.1", port=upstream_port, log_level="warning")
        ),
        uvicorn.Server(uvicorn.Config(gateway, host=args.host, port=args.port, **UVICORN_OPTIONS)),
    ]

    failed: list[uvicorn.Server] = []

    async def run_one(server: uvicorn.Server) -> None:
        try:
            await server.serve()
        except SystemExit:  # could not start (a port in use): stop the other one cleanly
            failed.append(server)
        finally:
            for other in servers:
                other.should_exit = True

    async def run_both() -> None:
        async with anyio.create_task_group() as tasks:
            for server in servers:
                tasks.start_soon(run_one, server)
        if failed:
            raise SystemExit(1)

    def run() -> None:
        try:
            anyio.run(run_both)
        except* KeyboardInterrupt:
            # uvicorn re-raises the Ctrl-C it caught once its server has shut down;
            # with two servers that reaches here: both have stopped cleanly by now.
            pass

    code = serve_until_stopped(run, f"{args.host}:{args.port} and 127.0.0.1:{upstream_port}")
    if code == 0:
        print("secmw demo: stopped", flush=True)
    return code


__all__ = ["demo_gateway_config", "echo_upstream", "run_demo"]
