"""The pure-ASGI adapter: :class:`SecurityMiddleware`.

Order, outermost first: the middleware sees the request before the app and the
response after it. Per request it builds the context, buffers the body only when
a stage needs it, runs the pipeline's checks, calls the app with a ``receive``
that replays the body and then hands over to the server's, and a ``send`` that
adds headers and redacts the body. ``lifespan`` and unknown scope types pass
through untouched; ``websocket`` handshakes are checked like HTTP requests.
"""

from __future__ import annotations

import codecs
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import anyio

from secmw.context import ANONYMOUS, AuthCredentials, Principal, RequestContext
from secmw.errors import BadRequest, Denial, PayloadTooLarge
from secmw.pipeline import Pipeline
from secmw.redact.base import Redactor, StreamRedactor

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_ANONYMOUS_AUTH = AuthCredentials()
_TEXTUAL_SUFFIXES = ("+json", "+xml")
_TEXTUAL = frozenset(
    {
        "application/json",
        "application/x-ndjson",
        "application/jsonl",
        "application/javascript",
        "application/xml",
        "application/x-www-form-urlencoded",
        "application/graphql-response+json",
    }
)
# Extensions that let an app send a file without going through ``send`` bodies;
# they would bypass the redactor, so they are hidden from the app when it is on.
_BODY_BYPASS_EXTENSIONS = ("http.response.pathsend", "http.response.zerocopysend")


class SecurityMiddleware:
    """Wrap an ASGI app with the secmw pipeline: ``app = SecurityMiddleware(app, config)``.

    ``config`` is a :class:`~secmw.config.Config`, a dict, or the path of a TOML or
    JSON file; it is validated here, so a bad config raises
    :class:`~secmw.errors.ConfigError` before the app serves anything. Components
    passed as keywords (``audit=``, ``authenticator=``, ...) replace the configured
    ones; ``pipeline=`` replaces the whole chain.
    """

    def __init__(
        self,
        app: ASGIApp,
        config: Any = None,
        *,
        pipeline: Pipeline | None = None,
        **components: Any,
    ) -> None:
        if pipeline is None:
            from secmw.config import build_pipeline, load_config  # noqa: PLC0415 - cycle

            pipeline = build_pipeline(load_config(config), **components)
        elif config is not None or components:
            raise TypeError("pass either pipeline= or config/components, not both")
        self.app = app
        self.pipeline = pipeline

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Dispatch on the scope type; unknown types go to the app untouched."""
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "websocket":
            await self._websocket(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    # -- http ----------------------------------------------------------------

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        pipeline = self.pipeline
        if not pipeline.started:
            await pipeline.startup()
        try:
            ctx = pipeline.context(scope)
        except BadRequest as denial:
            ctx = pipeline.fallback_context(scope)
            await self._deny(ctx, denial, send)
            return
        limit = pipeline.max_body_bytes
        guard: _BodyLimit | None = None
        try:
            if limit is not None:
                _check_declared_length(ctx, limit)
            if pipeline.needs_body:
                body = await _read_body(receive, limit)
                if body is None:
                    await pipeline.record(ctx, name="request_aborted", reason="client disconnected")
                    return
                ctx.load_body(body)
                receive = _replay(body, receive)
            elif limit is not None:
                guard = _BodyLimit(receive, limit)
                receive = guard.receive
            await pipeline.check(ctx)
        except Denial as denial:
            await self._deny(ctx, denial, send)
            return

        writer = _ResponseWriter(ctx, pipeline, send, guard)
        try:
            await self.app(_child_scope(scope, ctx, pipeline.redactor), receive, writer.send)
        except Exception:
            if guard is None or not guard.exceeded:
                with anyio.CancelScope(shield=True):
                    await pipeline.record(ctx, name="app_error", reason="application raised")
                raise
            # The app saw the synthetic disconnect of an over-long body and gave up.
        except BaseException:
            with anyio.CancelScope(shield=True):
                await pipeline.record(ctx, name="request_aborted", reason="cancelled")
            raise
        if guard is not None and guard.exceeded:
            too_large = PayloadTooLarge(
                "The request body is too large.", reason="streamed body over max_body_bytes"
            )
            if not writer.started:
                await self._deny(ctx, too_large, send)
            else:
                await pipeline.record(ctx, too_large)
            return
        await pipeline.record(ctx, writer.denial)

    async def _deny(self, ctx: RequestContext, denial: Denial, send: Send) -> None:
        status, headers, body = self.pipeline.render(ctx, denial)
        ctx.status = status
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})
        await self.pipeline.record(ctx, denial)

    # -- websocket -----------------------------------------------------------

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        pipeline = self.pipeline
        if not pipeline.started:
            await pipeline.startup()
        first = await receive()
        if first["type"] != "websocket.connect":
            return
        try:
            ctx = pipeline.context(scope)
        except BadRequest as denial:
            ctx = pipeline.fallback_context(scope)
            await self._deny_websocket(scope, ctx, denial, send)
            return
        try:
            await pipeline.check(ctx)
        except Denial as denial:
            await self._deny_websocket(scope, ctx, denial, send)
            return

        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return first
            return await receive()

        async def watch(message: Message) -> None:
            kind = message["type"]
            if kind == "websocket.accept":
                ctx.status = 101
            elif kind == "websocket.close" and ctx.status is None:
                ctx.status = 403
            elif kind == "websocket.http.response.start":
                ctx.status = message.get("status")
            await send(message)

        try:
            await self.app(_child_scope(scope, ctx, None), replay, watch)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await pipeline.record(ctx, name="app_error", reason="application raised")
            raise
        await pipeline.record(ctx)

    async def _deny_websocket(
        self, scope: Scope, ctx: RequestContext, denial: Denial, send: Send
    ) -> None:
        """Refuse a handshake: an HTTP answer when the server allows it, else a close.

        A close before ``websocket.accept`` makes the server answer 403; the
        ``websocket.http.response`` extension lets us send the real status, the
        challenge headers and the problem body instead.
        """
        extensions = scope.get("extensions") or {}
        if "websocket.http.response" in extensions:
            status, headers, body = self.pipeline.render(ctx, denial)
            ctx.status = status
            await send(
                {"type": "websocket.http.response.start", "status": status, "headers": headers}
            )
            await send({"type": "websocket.http.response.body", "body": body, "more_body": False})
        else:
            ctx.status = 403
            code = 1013 if denial.status == 503 else 1008
            await send({"type": "websocket.close", "code": code, "reason": ""})
        await self.pipeline.record(ctx, denial)

    # -- lifespan ------------------------------------------------------------

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass lifespan through, starting the pipeline and flushing it at shutdown."""
        pipeline = self.pipeline

        async def observe(message: Message) -> None:
            kind = message["type"]
            if kind == "lifespan.startup.complete":
                await pipeline.startup()
            elif kind in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
                with anyio.CancelScope(shield=True):
                    await pipeline.aclose()
            await send(message)

        await self.app(scope, receive, observe)


def _child_scope(scope: Scope, ctx: RequestContext, redactor: Redactor | None) -> Scope:
    """The scope the app sees: the Starlette ``user``/``auth`` keys and our state."""
    child = dict(scope)
    principal: Principal = ctx.principal
    child["user"] = principal
    child["auth"] = (
        AuthCredentials(tuple(sorted(principal.scopes)))
        if principal is not ANONYMOUS
        else _ANONYMOUS_AUTH
    )
    state = scope.get("state")
    child["state"] = {**state, "secmw": ctx} if state else {"secmw": ctx}
    if redactor is not None:
        extensions = scope.get("extensions")
        if extensions and any(name in extensions for name in _BODY_BYPASS_EXTENSIONS):
            child["extensions"] = {
                name: value
                for name, value in extensions.items()
                if name not in _BODY_BYPASS_EXTENSIONS
            }
        headers = scope.get("headers") or ()
        # Ask for an identity body: a compressed one cannot be scanned.
        child["headers"] = [
            (name, b"identity" if name.lower() == b"accept-encoding" else value)
            for name, value in headers
        ]
    return child


def _check_declared_length(ctx: RequestContext, limit: int) -> None:
    values = ctx.headers.get_all("content-length")
    if not values:
        return
    if len(set(values)) != 1 or not values[0].isdigit() or not values[0].isascii():
        raise BadRequest("The Content-Length header is invalid.", reason="bad content-length")
    if int(values[0]) > limit:
        raise PayloadTooLarge(
            "The request body is too large.", reason="declared content-length over max_body_bytes"
        )


async def _read_body(receive: Receive, limit: int | None) -> bytes | None:
    """The whole request body, or ``None`` if the client disconnected first."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        kind = message["type"]
        if kind == "http.disconnect":
            return None
        if kind != "http.request":
            continue
        chunk = message.get("body", b"")
        size += len(chunk)
        if limit is not None and size > limit:
            raise PayloadTooLarge(
                "The request body is too large.", reason="body over max_body_bytes"
            )
        if chunk:
            chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that yields the buffered body once, then the server's messages."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class _BodyLimit:
    """Counts a streamed request body; past the limit the app sees a disconnect."""

    __slots__ = ("_receive", "exceeded", "limit", "seen")

    def __init__(self, receive: Receive, limit: int) -> None:
        self._receive = receive
        self.limit = limit
        self.seen = 0
        self.exceeded = False

    async def receive(self) -> Message:
        if self.exceeded:
            return {"type": "http.disconnect"}
        message = await self._receive()
        if message["type"] == "http.request":
            self.seen += len(message.get("body", b""))
            if self.seen > self.limit:
                self.exceeded = True
                return {"type": "http.disconnect"}
        return message


def _media_type(headers: list[tuple[bytes, bytes]]) -> tuple[str | None, str | None, int | None]:
    media = encoding = None
    length: int | None = None
    for name, value in headers:
        lowered = name.lower()
        if lowered == b"content-type":
            media = value.decode("latin-1").split(";", 1)[0].strip().lower()
        elif lowered == b"content-encoding":
            encoding = value.decode("latin-1").strip().lower()
        elif lowered == b"content-length" and value.isdigit():
            length = int(value)
    return media, encoding, length


def _is_textual(media: str | None) -> bool:
    if media is None:
        return False
    return media.startswith("text/") or media in _TEXTUAL or media.endswith(_TEXTUAL_SUFFIXES)


class _ResponseWriter:
    """The app's ``send``: adds response headers and runs the redactor on bodies.

    A body whose length is declared (and fits ``max_response_buffer``) is redacted
    whole and gets a new ``Content-Length``; any other textual body is redacted as
    a stream and sent without ``Content-Length``. ``http.response.start`` is held
    until that choice is made, so no error can follow a started response.
    """

    __slots__ = (
        "_buffer",
        "_buffered",
        "_ctx",
        "_guard",
        "_media",
        "_pipeline",
        "_send",
        "_start",
        "_stream",
        "_suppressed",
        "denial",
        "started",
    )

    def __init__(
        self, ctx: RequestContext, pipeline: Pipeline, send: Send, guard: _BodyLimit | None
    ) -> None:
        self._ctx = ctx
        self._pipeline = pipeline
        self._send = send
        self._guard = guard
        self._start: Message | None = None
        self._buffer: list[bytes] | None = None
        self._buffered = 0
        self._stream: tuple[StreamRedactor, codecs.IncrementalDecoder] | None = None
        self._media: str | None = None
        self._suppressed = False
        self.started = False
        self.denial: Denial | None = None

    async def send(self, message: Message) -> None:
        if self._suppressed or (
            self._guard is not None and self._guard.exceeded and not self.started
        ):
            # The body limit tripped (the adapter answers 413) or we already
            # answered in the app's place: the app's own reply is dropped.
            self._suppressed = True
            return
        kind = message["type"]
        if kind == "http.response.start":
            await self._on_start(message)
        elif kind == "http.response.body" and (
            self._buffer is not None or self._stream is not None
        ):
            await self._on_body(message)
        else:
            await self._send(message)

    async def _on_start(self, message: Message) -> None:
        ctx = self._ctx
        pipeline = self._pipeline
        ctx.status = message["status"]
        headers = list(message.get("headers") or ())
        headers.extend(pipeline.response_headers(ctx))
        redactor = pipeline.redactor
        if redactor is None:
            self.started = True
            await self._send({**message, "headers": headers})
            return
        media, encoding, length = _media_type(headers)
        no_body = ctx.method == "HEAD" or ctx.status in (204, 304) or ctx.status < 200
        if no_body or not _is_textual(media):
            self.started = True
            await self._send({**message, "headers": headers})
            return
        if encoding not in (None, "identity"):
            # Fail closed: a compressed body cannot be scanned for secrets.
            self._suppressed = True
            self.denial = _UnscannableResponse(
                "The response could not be checked.",
                reason=f"response content-encoding {encoding} cannot be redacted",
            )
            status, deny_headers, body = pipeline.render(ctx, self.denial)
            ctx.status = status
            await self._send(
                {"type": "http.response.start", "status": status, "headers": deny_headers}
            )
            await self._send({"type": "http.response.body", "body": body, "more_body": False})
            self.started = True
            return
        self._media = media
        if (
            length is not None
            and media != "text/event-stream"
            and length <= pipeline.max_response_buffer
        ):
            self._start = {**message, "headers": headers}
            self._buffer = []
            return
        self.started = True
        self._open_stream(redactor)
        await self._send({**message, "headers": _without_length(headers)})

    def _open_stream(self, redactor: Redactor) -> None:
        self._stream = (
            redactor.stream(self._media),
            codecs.getincrementaldecoder("utf-8")(errors="surrogateescape"),
        )

    async def _on_body(self, message: Message) -> None:
        chunk: bytes = message.get("body", b"")
        more = bool(message.get("more_body", False))
        buffer, start, redactor = self._buffer, self._start, self._pipeline.redactor
        if buffer is not None and start is not None and redactor is not None:
            buffer.append(chunk)
            self._buffered += len(chunk)
            if not more:
                await self._send_buffered(b"".join(buffer), start, redactor)
            elif self._buffered > self._pipeline.max_response_buffer:
                # The app sent more than it declared: stream the rest without a length.
                self._buffer = None
                self._open_stream(redactor)
                self.started = True
                await self._send({**start, "headers": _without_length(start["headers"])})
                await self._send_streamed(b"".join(buffer), True)
            return
        await self._send_streamed(chunk, more)

    async def _send_buffered(self, raw: bytes, start: Message, redactor: Redactor) -> None:
        redacted, findings = redactor.redact(raw.decode("utf-8", "surrogateescape"), self._media)
        self._ctx.findings.extend(findings)
        body = redacted.encode("utf-8", "surrogateescape")
        headers = _without_length(start["headers"])
        headers.append((b"content-length", str(len(body)).encode()))
        self._buffer = None
        self.started = True
        await self._send({**start, "headers": headers})
        await self._send({"type": "http.response.body", "body": body, "more_body": False})

    async def _send_streamed(self, chunk: bytes, more: bool) -> None:
        if self._stream is None:
            await self._send({"type": "http.response.body", "body": chunk, "more_body": more})
            return
        stream, decoder = self._stream
        text = stream.feed(decoder.decode(chunk, final=not more))
        if not more:
            text += stream.flush()
            self._ctx.findings.extend(stream.findings)
        if text or not more:
            await self._send(
                {
                    "type": "http.response.body",
                    "body": text.encode("utf-8", "surrogateescape"),
                    "more_body": more,
                }
            )


def _without_length(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    return [(name, value) for name, value in headers if name.lower() != b"content-length"]


class _UnscannableResponse(Denial):
    status = 502
    title = "Bad Gateway"
    event = "secret_redaction_fail"


__all__ = ["SecurityMiddleware"]
