"""A raw ASGI harness and small apps for driving middleware without a server.

httpx's ASGITransport buffers whole bodies; these helpers drive ``scope``,
``receive`` and ``send`` directly so streaming, disconnects and websockets are
visible message by message.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

Message = dict[str, Any]


def http_scope(
    path: str = "/",
    *,
    method: str = "GET",
    headers: Iterable[tuple[str, str]] = (),
    raw_path: bytes | None = None,
    root_path: str = "",
    query_string: bytes = b"",
    client: tuple[str, int] | None = ("203.0.113.7", 40000),
    **extra: Any,
) -> dict[str, Any]:
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": raw_path if raw_path is not None else path.encode("utf-8", "surrogateescape"),
        "root_path": root_path,
        "query_string": query_string,
        "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers],
        "client": client,
        "server": ("127.0.0.1", 8000),
    }
    scope.update(extra)
    return scope


def ws_scope(
    path: str = "/ws",
    *,
    headers: Iterable[tuple[str, str]] = (),
    extensions: dict[str, Any] | None = None,
) -> dict[str, Any]:
    scope = http_scope(path, headers=headers)
    scope["type"] = "websocket"
    scope["scheme"] = "ws"
    del scope["method"]
    scope["subprotocols"] = []
    if extensions is not None:
        scope["extensions"] = extensions
    return scope


@dataclass
class Receiver:
    """A scripted ``receive``: yields the given messages, then ``http.disconnect``."""

    messages: list[Message]
    after: Message = field(default_factory=lambda: {"type": "http.disconnect"})
    calls: int = 0

    async def __call__(self) -> Message:
        self.calls += 1
        if self.messages:
            return self.messages.pop(0)
        return dict(self.after)

    @classmethod
    def body(cls, *chunks: bytes) -> Receiver:
        if not chunks:
            chunks = (b"",)
        messages = [
            {"type": "http.request", "body": chunk, "more_body": index < len(chunks) - 1}
            for index, chunk in enumerate(chunks)
        ]
        return cls(messages)


@dataclass
class Sender:
    """A recording ``send``."""

    messages: list[Message] = field(default_factory=list)

    async def __call__(self, message: Message) -> None:
        self.messages.append(message)

    @property
    def start(self) -> Message:
        return next(
            m
            for m in self.messages
            if m["type"] in ("http.response.start", "websocket.http.response.start")
        )

    @property
    def status(self) -> int:
        return int(self.start["status"])

    def header(self, name: str) -> str | None:
        values = self.headers(name)
        return values[0] if values else None

    def headers(self, name: str) -> list[str]:
        key = name.lower().encode()
        return [v.decode("latin-1") for k, v in self.start.get("headers", []) if k.lower() == key]

    @property
    def body_chunks(self) -> list[bytes]:
        return [
            m.get("body", b"")
            for m in self.messages
            if m["type"] in ("http.response.body", "websocket.http.response.body")
        ]

    @property
    def body(self) -> bytes:
        return b"".join(self.body_chunks)

    def json(self) -> Any:
        return json.loads(self.body)


async def call(app: Any, scope: dict[str, Any], receive: Any = None) -> Sender:
    sender = Sender()
    await app(scope, receive or Receiver.body(b""), sender)
    return sender


class EchoApp:
    """Reads the whole body, then answers with what it saw; records every receive."""

    def __init__(self) -> None:
        self.received: list[Message] = []
        self.scopes: list[dict[str, Any]] = []
        self.saw_disconnect = False

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        self.scopes.append(scope)
        body = b""
        while True:
            message = await receive()
            self.received.append(message)
            if message["type"] == "http.disconnect":
                self.saw_disconnect = True
                break
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        user = scope.get("user")
        payload = json.dumps(
            {
                "path": scope["path"],
                "body": body.decode("latin-1"),
                "subject": getattr(user, "subject", None),
                "request_id": scope["state"]["secmw"].request_id,
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})


def chunked_app(
    chunks: Sequence[bytes], content_type: bytes = b"text/plain", length: bool = False
) -> Any:
    """An app that answers with ``chunks`` as separate body messages."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        headers = [(b"content-type", content_type)]
        if length:
            headers.append((b"content-length", str(sum(map(len, chunks))).encode()))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for index, chunk in enumerate(chunks):
            await send(
                {"type": "http.response.body", "body": chunk, "more_body": index < len(chunks) - 1}
            )

    return app


from secmw.context import Finding, RequestContext  # noqa: E402
from secmw.policy.base import Decision, Effect  # noqa: E402


class DenyPrefix:
    """A policy double: deny ``prefix`` and everything below it, allow the rest."""

    needs_body = False

    def __init__(self, prefix: str = "/admin", *, needs_body: bool = False) -> None:
        self.prefix = prefix
        self.needs_body = needs_body
        self.seen: list[RequestContext] = []

    def evaluate(self, ctx: RequestContext) -> Decision:
        self.seen.append(ctx)
        if ctx.path == self.prefix or ctx.path.startswith(self.prefix + "/"):
            return Decision(Effect.DENY, ("test:deny-prefix",), f"under {self.prefix}")
        return Decision(Effect.ALLOW, ("test:allow",), "allowed")


class MarkerRedactor:
    """A redactor double: replaces every ``marker``; streams hold back a partial one."""

    def __init__(self, marker: str = "s3cr3t-value") -> None:
        self.marker = marker
        self.media_types: list[str | None] = []

    def redact(self, text: str, media_type: str | None = None) -> tuple[str, list[Finding]]:
        self.media_types.append(media_type)
        found = [Finding("redactor", "marker")] * text.count(self.marker)
        return text.replace(self.marker, "[REDACTED]"), found

    def stream(self, media_type: str | None = None) -> _MarkerStream:
        self.media_types.append(media_type)
        return _MarkerStream(self.marker)


class _MarkerStream:
    def __init__(self, marker: str) -> None:
        self.marker = marker
        self.pending = ""
        self.findings: list[Finding] = []

    def feed(self, chunk: str) -> str:
        text = self.pending + chunk
        self.findings.extend([Finding("redactor", "marker")] * text.count(self.marker))
        text = text.replace(self.marker, "[REDACTED]")
        keep = 0
        for size in range(min(len(self.marker) - 1, len(text)), 0, -1):
            if self.marker.startswith(text[-size:]):
                keep = size
                break
        self.pending = text[len(text) - keep :] if keep else ""
        return text[: len(text) - keep]

    def flush(self) -> str:
        rest, self.pending = self.pending, ""
        return rest
