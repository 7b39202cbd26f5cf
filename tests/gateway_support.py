"""Real upstreams on 127.0.0.1 for the gateway tests: uvicorn apps and raw sockets.

Every server runs in its own thread with its own event loop, so the code under
test can run on asyncio or trio. The echo upstream records the headers of every
request it receives; :func:`assert_no_client_secrets` checks them.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import socket
import struct
import threading
import time
from collections.abc import Iterator
from typing import Any

import anyio
import uvicorn

TOKEN_MARK = "client-token-XYZ"
API_KEY = "client-api-key-123"
COOKIE = "session=client-cookie-456"
SECRET = "s3cr3t-value"
CLIENT_SECRETS = (TOKEN_MARK, API_KEY, "client-cookie-456")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def serve(
    app: Any, *, lifespan: str = "off", port: int | None = None, **options: Any
) -> Iterator[str]:
    """Run ``app`` under uvicorn on 127.0.0.1 in a thread; yields the base URL."""
    port = port or free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="critical",
        lifespan=lifespan,
        ws="websockets-sansio",
        timeout_graceful_shutdown=1,
        **options,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    scheme = "https" if "ssl_certfile" in options else "http"
    try:
        yield f"{scheme}://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


class EchoUpstream:
    """An upstream that answers by path and records every request's headers."""

    def __init__(self) -> None:
        self.seen: list[dict[str, str]] = []
        self.closes: list[int | None] = []  # websocket close codes, as the server reported them
        self.fail = False
        self.delay = 0.0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
            return
        if scope["type"] != "http":
            return
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
        self.seen.append(dict(headers) | {":all": json.dumps(headers)})
        path = scope["path"]
        chunks = 0
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            chunks += 1
            if not message.get("more_body"):
                break
        if self.delay:
            await anyio.sleep(self.delay)
        if self.fail or path.startswith("/status/"):
            code = int(path.rsplit("/", 1)[-1]) if path.startswith("/status/") else 500
            await _json(send, code, {"status": code})
        elif path == "/sse":
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")],
                }
            )
            for number in range(3):
                event = f"data: {json.dumps({'n': number, 'key': SECRET})}\n\n".encode()
                await send({"type": "http.response.body", "body": event, "more_body": True})
                await anyio.sleep(0.05)
            await send({"type": "http.response.body", "body": b""})
        elif path == "/sse-stall":
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")],
                }
            )
            await send({"type": "http.response.body", "body": b"data: 1\n\n", "more_body": True})
            await anyio.sleep(2)
            await send({"type": "http.response.body", "body": b""})
        elif path == "/secret":
            await _json(send, 200, {"token": SECRET})
        elif path == "/redirect":
            host = dict(headers).get("host", "")
            await send(
                {
                    "type": "http.response.start",
                    "status": 307,
                    "headers": [
                        (b"location", f"http://{host}/echo".encode()),
                        (b"content-length", b"0"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": b""})
        else:
            await _json(
                send,
                200,
                {
                    "path": path,
                    "query": scope["query_string"].decode(),
                    "method": scope["method"],
                    "headers": dict(headers),
                    "body_size": size,
                    "body_chunks": chunks,
                },
            )

    async def _websocket(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
        self.seen.append(dict(headers) | {":all": json.dumps(headers)})
        await receive()
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                self.closes.append(message.get("code"))
                return
            await send({"type": "websocket.send", "text": "echo:" + (message.get("text") or "")})


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


def assert_no_client_secrets(upstream: EchoUpstream, *tokens: str) -> None:
    """No request the upstream saw carried a client credential."""
    for seen in upstream.seen:
        everything = seen[":all"].lower()
        for secret in (*CLIENT_SECRETS, *tokens):
            assert secret.lower() not in everything, f"client secret leaked upstream: {seen}"
        assert "authorization" not in seen or TOKEN_MARK not in seen["authorization"]
        assert "cookie" not in seen
        assert "x-api-key" not in seen


class FaultServer:
    """A raw TCP server that misbehaves in one chosen way per connection.

    ``mode``: ``reset`` (RST right after the request), ``hang`` (never answers),
    ``truncate`` (declares 100 bytes, sends 10, closes), ``garbage`` (not HTTP),
    ``forbid`` (a 403 whose body ends with the connection), ``badutf8`` (a websocket
    that sends a text message that is not UTF-8), ``vanish`` (a websocket reset after
    the first message), ``echoproto`` (a websocket accepted with the first subprotocol
    offered, as servers on wsproto let an app do whatever it is), ``ok`` (a valid 200).
    """

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.connections = 0
        self.received = b""
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self._sock.settimeout(0.1)
        self.port: int = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._open: list[socket.socket] = []
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> FaultServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        for conn in self._open:
            conn.close()
        self._sock.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            self.connections += 1
            conn.settimeout(2)
            with contextlib.suppress(OSError):
                request = conn.recv(65536)
                self._answer(conn, request)

    def _answer(self, conn: socket.socket, request: bytes = b"") -> None:
        mode = self.mode
        if mode == "badutf8":
            # Accept a websocket upgrade, then send a text message that is not UTF-8.
            conn.sendall(_upgraded(request) + b"\x81\x02\xff\xfe")
            self.received = conn.recv(65536)  # the gateway's close frame
            conn.close()
            return
        if mode == "vanish":
            # Accept a websocket upgrade, read the first message, then reset the
            # connection: no closing handshake.
            conn.sendall(_upgraded(request))
            self.received = conn.recv(65536)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()
            return
        if mode == "echoproto":
            offered = next(
                (
                    line.split(b":", 1)[1].split(b",")[0].strip()
                    for line in request.split(b"\r\n")
                    if line.lower().startswith(b"sec-websocket-protocol:")
                ),
                b"",
            )
            answer = _upgraded(request)
            if offered:
                answer = answer[:-2] + b"sec-websocket-protocol: " + offered + b"\r\n\r\n"
            conn.sendall(answer)
            self._open.append(conn)
            return
        if mode == "hang":
            self._open.append(conn)
            return
        if mode == "reset":
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        elif mode == "truncate":
            conn.sendall(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\n"
                b"content-length: 100\r\n\r\n0123456789"
            )
        elif mode == "garbage":
            conn.sendall(b"SSH-2.0-not-http\r\n\r\n")
        elif mode == "forbid":
            conn.sendall(
                b"HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain\r\n"
                b"connection: close\r\n\r\nno websockets here"
            )
        else:
            conn.sendall(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n"
                b"connection: close\r\n\r\nok"
            )
        conn.close()


def _upgraded(request: bytes) -> bytes:
    """The 101 answer to a websocket upgrade request."""
    key = next(
        line.split(b":", 1)[1].strip()
        for line in request.split(b"\r\n")
        if line.lower().startswith(b"sec-websocket-key:")
    )
    digest = hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()
    return (
        b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n"
        b"connection: Upgrade\r\nsec-websocket-accept: " + base64.b64encode(digest) + b"\r\n\r\n"
    )


def static_resolver(table: dict[str, list[str]]) -> Any:
    """A resolver double: ``host -> [addresses]``; unknown hosts fail like DNS."""

    async def resolve(host: str, port: int) -> list[str]:
        if host not in table:
            raise OSError("unknown host")
        return table[host]

    return resolve


class HeldReceiver:
    """A ``receive`` that yields the body, then blocks like a client that stays connected."""

    def __init__(self, *chunks: bytes) -> None:
        self.messages = [
            {"type": "http.request", "body": chunk, "more_body": index < len(chunks) - 1}
            for index, chunk in enumerate(chunks or (b"",))
        ]

    async def __call__(self) -> dict[str, Any]:
        if self.messages:
            return self.messages.pop(0)
        await anyio.sleep_forever()
        raise AssertionError("unreachable")


def gateway_config(targets: list[str], issuer: Any = None, **gateway: Any) -> dict[str, Any]:
    """A configuration for tests: loopback allowed, one upstream ``u`` on ``/``."""
    upstream = {"targets": targets, **gateway.pop("upstream", {})}
    section: dict[str, Any] = {
        "upstreams": {"u": upstream},
        "routes": [{"prefix": "/", "upstream": "u"}],
        "egress": {"allow_networks": ["127.0.0.0/8"]},
        "strip_headers": ["x-tenant-secret"],
    }
    section.update(gateway)
    config: dict[str, Any] = {"gateway": section, "audit": {"sink": "none"}}
    if issuer is not None:
        config["auth"] = {"jwt": issuer.jwt_config()}
    else:
        config["auth"] = {"allow_anonymous": True}
    return config


def client_headers(token: str) -> list[tuple[str, str]]:
    """Every kind of client credential the upstream must never see."""
    return [
        ("authorization", f"Bearer {token}"),
        ("x-api-key", API_KEY),
        ("cookie", COOKIE),
        ("x-tenant-secret", TOKEN_MARK),
    ]
