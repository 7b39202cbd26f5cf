"""The pure-ASGI adapter: :class:`SecurityMiddleware`.

Order, outermost first: the middleware sees the request before the app and the
response after it. Per request it builds the context, buffers the body only when
a stage needs it, runs the pipeline's checks, calls the app with a ``receive``
that replays the body and then hands over to the server's, and a ``send`` that
adds headers and redacts the body. ``lifespan`` and unknown scope types pass
through untouched; ``websocket`` handshakes are checked like HTTP requests.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Unpack
from urllib.parse import quote

import anyio

from secmw._paths import route_path
from secmw._response import ResponseWriter
from secmw._websocket import WebSocketSession, close_code
from secmw.context import ANONYMOUS, AuthCredentials, Principal, RequestContext
from secmw.errors import BadRequest, Denial, PayloadTooLarge, ServiceUnavailable
from secmw.pipeline import Components, Pipeline
from secmw.redact.base import Redactor

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_ANONYMOUS_AUTH = AuthCredentials()
# Extensions that let an app send a file without going through ``send`` bodies;
# they would bypass the redactor, so they are hidden from the app when it is on.
_BODY_BYPASS_EXTENSIONS = ("http.response.pathsend", "http.response.zerocopysend")
_RANGE_HEADERS = frozenset({b"range", b"if-range"})


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
        # Any ASGI 3 callable: apps type their scope as dict, a TypedDict union
        # (Litestar) or MutableMapping, which a stricter type would refuse.
        app: Callable[..., Awaitable[Any]],
        config: Any = None,
        *,
        pipeline: Pipeline | None = None,
        **components: Unpack[Components],
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
        if pipeline.endpoints and ctx.path in pipeline.endpoints:
            try:
                await pipeline.screen(ctx)
            except Denial as denial:
                await self._deny(ctx, denial, send)
                return
            await self._serve(ctx, send)
            return
        limit = pipeline.max_body_bytes
        guard: _BodyLimit | None = None
        try:
            _check_declared_length(ctx, limit)
            if pipeline.needs_body:
                _check_content_coding(ctx)
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
        except BaseException:
            # Cancelled (the server gave up on the client) while the body was read
            # or the checks ran: the trail still gets the request's one record.
            with anyio.CancelScope(shield=True):
                await pipeline.record(ctx, name="request_aborted", reason="cancelled")
            raise

        writer = ResponseWriter(ctx, pipeline, send, guard)
        ctx.state["pipeline"] = pipeline  # lets route-level checks render identical denials
        try:
            await self._call(scope, ctx, receive, writer, guard)
        finally:
            _release_state(scope, ctx)
        await self._ended(ctx, writer, guard, send)

    async def _ended(
        self, ctx: RequestContext, writer: ResponseWriter, guard: _BodyLimit | None, send: Send
    ) -> None:
        """The request's one audit record, once the app is done."""
        pipeline = self.pipeline
        if guard is not None and guard.exceeded:
            too_large = PayloadTooLarge(
                "The request body is too large.", reason="streamed body over max_body_bytes"
            )
            if not writer.started:
                await self._deny(ctx, too_large, send)
            else:
                await pipeline.record(ctx, too_large)
            return
        if ctx.state.pop(_ABORTED, False):
            await pipeline.record(ctx, name="request_aborted", reason="client disconnected")
            return
        # A route-level check (secmw.fastapi) may have refused the request inside the app.
        await pipeline.record(ctx, writer.denial or ctx.state.get("denial"))

    async def _call(
        self,
        scope: Scope,
        ctx: RequestContext,
        receive: Receive,
        writer: ResponseWriter,
        guard: _BodyLimit | None,
    ) -> None:
        """Run the app; however it ends, report the response phase and audit failures."""
        pipeline = self.pipeline
        gone = False

        async def watched() -> Message:
            # Whether the app learnt that the client left: then not answering is no failure.
            nonlocal gone
            message = await receive()
            if message["type"] == "http.disconnect":
                gone = True
            return message

        try:
            await self.app(
                _child_scope(scope, ctx, writer.transform, pipeline.http_scope_filters),
                watched,
                writer.send,
            )
        except Exception as exc:
            exceeded = guard is not None and guard.exceeded
            if isinstance(exc, Denial) and not writer.started and not gone and not exceeded:
                # A refusal secmw defines (CircuitOpen around the app's upstream call,
                # an AuthenticationError) raised before any answer: answered as secmw
                # would, and audited as that refusal (the adapter records it). One
                # that cannot be answered safely is the app's error, as before.
                with anyio.CancelScope(shield=True):
                    await writer.finish()
                    if await writer.answer_for_app(exc):
                        ctx.state["denial"] = pipeline.scrubbed(exc)
                        return
                    await writer.answer(_AppFailed())
                    await pipeline.record(ctx, name="app_error", reason="application raised")
                raise
            if not exceeded:
                with anyio.CancelScope(shield=True):
                    await writer.finish()
                    if not writer.started and not gone:
                        # Ours, not the server's bare 500: with the request id headers.
                        await writer.answer(_AppFailed())
                    await pipeline.record(ctx, name="app_error", reason="application raised")
                raise
            # The app saw the synthetic disconnect of an over-long body and gave up.
        except BaseException:
            with anyio.CancelScope(shield=True):
                await writer.finish()
                await pipeline.record(ctx, name="request_aborted", reason="cancelled")
            raise
        await writer.finish()
        if not writer.started and (guard is None or not guard.exceeded):
            if gone:
                ctx.state[_ABORTED] = True
                return
            await writer.answer(_AppFailed())
            ctx.state["denial"] = _AppFailed(reason="application returned without a response")

    async def _serve(self, ctx: RequestContext, send: Send) -> None:
        """Answer a path secmw serves itself; the endpoint does its own access check."""
        pipeline = self.pipeline
        try:
            status, headers, body = pipeline.endpoints[ctx.path](ctx)
        except Exception as exc:  # e.g. a metrics callback that fails while rendering
            print(f"secmw: endpoint {ctx.path} failed with {type(exc).__name__}", file=sys.stderr)
            failed = ServiceUnavailable(
                "The endpoint failed.",
                reason=f"endpoint failed: {type(exc).__name__}",
                event="sys_error",
            )
            await self._deny(ctx, failed, send)
            return
        ctx.status = status
        headers = [*headers, *pipeline.response_headers(ctx)]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})
        await pipeline.record(ctx, reason="served by secmw")

    async def _deny(self, ctx: RequestContext, denial: Denial, send: Send) -> None:
        status, headers, body = self.pipeline.render(ctx, denial)
        ctx.status = status
        try:
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body, "more_body": False})
        finally:
            # Recorded even when the client is gone (the send cancelled or failed).
            with anyio.CancelScope(shield=True):
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
        except BaseException:
            with anyio.CancelScope(shield=True):
                await pipeline.record(ctx, name="request_aborted", reason="cancelled")
            raise

        session = WebSocketSession(ctx, pipeline, receive, send, first)
        try:
            await session.run(self.app, _child_scope(scope, ctx, None, pipeline.scope_filters))
        except BaseException:
            with anyio.CancelScope(shield=True):
                await session.end_refusal(_AppFailed())
                await pipeline.record(ctx, name="app_error", reason="application raised")
            raise
        finally:
            _release_state(scope, ctx)
        await session.end_refusal(_AppFailed(reason="application returned without a response"))
        await pipeline.record(ctx, session.denial)

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
            try:
                await send(
                    {"type": "websocket.http.response.start", "status": status, "headers": headers}
                )
                await send(
                    {"type": "websocket.http.response.body", "body": body, "more_body": False}
                )
            finally:  # recorded even when the client is gone
                with anyio.CancelScope(shield=True):
                    await self.pipeline.record(ctx, denial)
            return
        # Without the extension the server answers a close before accept with 403;
        # the audit line records what the client saw.
        ctx.status = 403
        try:
            await send({"type": "websocket.close", "code": close_code(denial), "reason": ""})
        finally:
            with anyio.CancelScope(shield=True):
                await self.pipeline.record(ctx, denial, status=403)

    # -- lifespan ------------------------------------------------------------

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass lifespan through, starting the pipeline and flushing it at shutdown."""
        pipeline = self.pipeline

        async def observe(message: Message) -> None:
            kind = message["type"]
            if kind == "lifespan.startup.complete":
                await pipeline.lifespan_started()
            elif kind in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
                with anyio.CancelScope(shield=True):
                    # One pipeline may serve several apps: the last one out closes it.
                    await pipeline.lifespan_ended()
            await send(message)

        await self.app(scope, receive, observe)


# Characters a path segment may hold unescaped (RFC 3986 pchar, less the ``;`` cut away).
_PATH_SAFE = "/:@!$&'()*+,=-._~"


def _child_scope(
    scope: Scope,
    ctx: RequestContext,
    transform: Redactor | None,
    filters: tuple[Callable[[Scope], None], ...] = (),
) -> Scope:
    """The scope the app sees: the Starlette ``user``/``auth`` keys and our state.

    The app routes on the path the pipeline judged: a spelling that canonicalised
    to another path (dot segments, repeated slashes, ``;params``) is replaced by
    the canonical one, or ``/files/../health`` could pass as the public
    ``/health`` and be routed to ``/files/{name}``. A trailing slash is kept.
    """
    child = dict(scope)
    path: str = scope.get("path") or "/"
    judged = ctx.path
    prefix = (scope.get("root_path") or "").rstrip("/")
    if prefix:
        _mount(child, path, prefix, judged)
    elif path != judged and not (path.endswith("/") and path[:-1] == judged != "/"):
        _route_to(child, path, judged)
    for scope_filter in filters:
        scope_filter(child)
    principal: Principal = ctx.principal
    child["user"] = principal
    child["auth"] = (
        AuthCredentials(tuple(sorted(principal.scopes)))
        if principal is not ANONYMOUS
        else _ANONYMOUS_AUTH
    )
    # The same dict, not a copy: what the app puts in request.state must reach the
    # middleware around secmw, as it would without secmw in between.
    state = scope.get("state")
    if not isinstance(state, dict):
        state = scope["state"] = {}
    state["secmw"] = ctx
    child["state"] = state
    if transform is not None:
        extensions = scope.get("extensions")
        if extensions and any(name in extensions for name in _BODY_BYPASS_EXTENSIONS):
            child["extensions"] = {
                name: value
                for name, value in extensions.items()
                if name not in _BODY_BYPASS_EXTENSIONS
            }
        headers = child.get("headers") or ()
        # Ask for an identity body: a compressed one cannot be scanned. Also when the
        # client named no coding: HTTP clients (httpx in a proxy) add their own
        # default. And for the whole body: a range holds part of a secret (the
        # client joins the parts), and several ranges come as multipart/byteranges.
        rewritten = [
            (name, value)
            for name, value in headers
            if (lowered := name.lower()) != b"accept-encoding" and lowered not in _RANGE_HEADERS
        ]
        rewritten.append((b"accept-encoding", b"identity"))
        child["headers"] = rewritten
    return child


def _release_state(scope: Scope, ctx: RequestContext) -> None:
    """Once the app is done, let the context keep the scope without its state.

    The context refers to the scope, whose state refers back to the context: a
    cycle that only the garbage collector frees, one per request (measurably
    slower). ``state["secmw"]`` stays for whoever reads it afterwards.
    """
    if ctx.scope is scope and "state" in scope:
        kept = dict(scope)
        del kept["state"]
        ctx.scope = kept


def _mount(child: Scope, path: str, prefix: str, judged: str) -> None:
    """Under a mount prefix, give the app ``prefix + judged`` with ``root_path = prefix``.

    Servers disagree on whether ``path`` holds the prefix (uvicorn: yes; hypercorn,
    granian: no), and frameworks on how to take it off (Starlette: a leading
    prefix followed by "/"; Litestar: cut at its first occurrence anywhere). With
    the prefix in front, once, and no trailing slash on ``root_path``, every one
    of them routes on the judged path.
    """
    below = path[len(prefix) :] if path == prefix or path.startswith(prefix + "/") else path
    if below.endswith("/") and judged != "/":
        judged += "/"
    full = prefix + judged
    if full == path and child.get("root_path") == prefix:
        return
    child["path"] = full
    child["raw_path"] = quote(full, safe=_PATH_SAFE).encode("ascii")
    child["root_path"] = prefix


def _route_to(child: Scope, path: str, judged: str) -> None:
    """Point ``path`` and ``raw_path`` of ``child`` at the judged path (under ``root_path``)."""
    root = child.get("root_path") or ""
    routed = route_path(path, root) or "/"
    if routed == judged or (routed.endswith("/") and routed[:-1] == judged != "/"):
        return
    if routed.endswith("/") and judged != "/":
        judged += "/"
    full = path[: len(path) - len(route_path(path, root))] + judged
    child["path"] = full
    child["raw_path"] = quote(full, safe=_PATH_SAFE).encode("ascii")


def _check_declared_length(ctx: RequestContext, limit: int | None) -> None:
    """400 for a malformed or contradictory Content-Length (whatever the limit), 413 over it."""
    values = ctx.content_lengths
    if not values:
        return
    if len(set(values)) != 1 or not values[0].isdigit() or not values[0].isascii():
        raise BadRequest("The Content-Length header is invalid.", reason="bad content-length")
    if limit is None:
        return
    # Leading zeros aside, more digits than any limit has is over it: int() of a
    # value with thousands of digits would raise (Python's digit limit).
    digits = values[0].lstrip("0")
    if len(digits) > len(str(limit)) or int(digits or "0") > limit:
        raise PayloadTooLarge(
            "The request body is too large.", reason="declared content-length over max_body_bytes"
        )


# ctx.state key: the client left before the app answered (and the app saw it go).
_ABORTED = "secmw.aborted"


class _AppFailed(Denial):
    status = 500
    title = "Internal Server Error"
    event = "app_error"

    def __init__(self, *, reason: str = "application raised") -> None:
        super().__init__("The request failed.", reason=reason)


class _CodedBody(Denial):
    status = 415
    title = "Unsupported Media Type"
    event = "input_validation_fail"


def _check_content_coding(ctx: RequestContext) -> None:
    """415 for a compressed request body: the stages that read it could not, the app might.

    RFC 9110 section 15.5.16; ``Accept-Encoding: identity`` tells the client what
    it may send instead (RFC 7694).
    """
    # Content_Encoding too: an app behind a WSGI-style bridge reads it as the same header.
    for value in ctx.headers.get_merged("content-encoding"):
        for part in value.split(","):
            coding = part.strip().lower()
            if coding and coding != "identity":
                raise _CodedBody(
                    "The request body must not be compressed.",
                    reason=f"request content-encoding {coding[:32]!r} cannot be inspected",
                    headers=[(b"accept-encoding", b"identity")],
                )


async def _read_body(receive: Receive, limit: int | None) -> bytes | None:
    """The whole request body, or ``None`` if the client disconnected first.

    Held in one growing buffer: a list of the server's pieces would cost an object
    each, 40 bytes per 2-byte piece of a client that sends its body slowly.
    """
    first = b""
    rest: bytearray | None = None
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
            if not first:
                first = chunk
            elif rest is None:
                rest = bytearray(first)
                rest += chunk
            else:
                rest += chunk
        if not message.get("more_body", False):
            return first if rest is None else bytes(rest)


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


__all__ = ["SecurityMiddleware"]
