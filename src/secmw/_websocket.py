"""An admitted websocket session: per-message checks and a close at credential expiry.

The handshake is checked like an HTTP request; what happens after ``accept`` is
here. Client messages are read by a pump task, checked (size, the pipeline's
per-message checks) and handed to the app through a small buffer. When a message
is refused or the principal's credential expires, the client gets a close frame
with the matching code (1008 policy, 1009 too big, 1013 try later), the app gets
``websocket.disconnect``, and the event is audited. Nothing is checked, and no
task runs, for sessions that need none of this.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from secmw._response import ResponseWriter
from secmw.errors import AuthenticationError, Denial, PayloadTooLarge, ServiceUnavailable

if TYPE_CHECKING:
    from secmw.context import RequestContext
    from secmw.pipeline import Pipeline

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[MutableMapping[str, Any], Receive, Send], Awaitable[None]]


class SessionClosed(OSError):
    """Raised by the app's ``send`` once the session is closed (ASGI: send on a closed connection).

    An app that only sends would otherwise never learn that secmw closed the
    session, and would run (and hold up the server's shutdown) forever.
    """


def close_code(denial: Denial) -> int:
    """The websocket close code for a refusal (RFC 6455 section 7.4.1)."""
    if isinstance(denial, PayloadTooLarge):
        return 1009
    if isinstance(denial, ServiceUnavailable):
        return 1013
    return 1008


# How long a close may wait for a client that stopped reading (seconds).
_CLOSE_TIMEOUT = 5.0
# The app's side of the session is closed: it returned, or stopped receiving.
_GONE = (anyio.BrokenResourceError, anyio.ClosedResourceError)


class WebSocketSession:
    """Runs the app for one admitted websocket and polices the open session."""

    def __init__(
        self,
        ctx: RequestContext,
        pipeline: Pipeline,
        receive: Receive,
        send: Send,
        connect: Message,
    ) -> None:
        self._ctx = ctx
        self._pipeline = pipeline
        self._receive = receive
        self._send = send
        self._connect: Message | None = connect
        self.accepted = False
        self.closed = False
        self._refused = False
        self._denial: ResponseWriter | None = None
        # The code secmw closed the session with: what the app's last receive says.
        self._close_code: int | None = None
        # Set once the client's side is over (it left, or secmw refused it): expiry is moot.
        self._ended = anyio.Event()

    @property
    def needs_guard(self) -> bool:
        """True when messages or expiry must be watched (else the app runs bare)."""
        pipeline = self._pipeline
        return (
            pipeline.checks_messages
            or pipeline.max_message_bytes is not None
            or self._ctx.principal.expires_at is not None
        )

    async def run(self, app: ASGIApp, scope: MutableMapping[str, Any]) -> None:
        """Call the app with a guarded ``receive``/``send`` and wait for it."""
        if not self.needs_guard:
            with contextlib.suppress(SessionClosed):  # the app stopped: the session is over
                await app(scope, self._replay_receive, self._watch_send)
            return
        to_app, from_client = anyio.create_memory_object_stream[Message](16)
        with from_client:
            await self._run_guarded(app, scope, to_app, from_client)

    async def _run_guarded(
        self,
        app: ASGIApp,
        scope: MutableMapping[str, Any],
        to_app: MemoryObjectSendStream[Message],
        from_client: MemoryObjectReceiveStream[Message],
    ) -> None:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(self._pump, to_app.clone())
            expires_at = self._ctx.principal.expires_at
            if expires_at is not None:
                tasks.start_soon(self._expire, to_app.clone(), expires_at)
            to_app.close()
            try:
                await app(scope, self._stream_receive(from_client), self._watch_send)
            except SessionClosed:
                pass  # the app stopped because the session is over: that is its end
            finally:
                tasks.cancel_scope.cancel()

    async def _replay_receive(self) -> Message:
        if self._connect is not None:
            message, self._connect = self._connect, None
            return message
        return await self._receive()

    def _stream_receive(self, stream: MemoryObjectReceiveStream[Message]) -> Receive:
        async def receive() -> Message:
            if self._connect is not None:
                message, self._connect = self._connect, None
                return message
            try:
                return await stream.receive()
            except anyio.EndOfStream:
                # A refusal the app had no room for (it was slow to read) still
                # reaches it with its code, after the messages admitted before it.
                return {"type": "websocket.disconnect", "code": self._close_code or 1006}

        return receive

    async def _watch_send(self, message: Message) -> None:
        kind = message["type"]
        if self.closed:
            if kind == "websocket.close":
                return  # a second close changes nothing
            raise SessionClosed("the websocket session is closed")
        if kind == "websocket.accept":
            self.accepted = True
            self._ctx.status = 101
            extra = self._pipeline.response_headers(self._ctx)
            if extra:  # the request id, as on every answer to an admitted request
                message = {**message, "headers": [*(message.get("headers") or ()), *extra]}
        elif kind == "websocket.close":
            self.closed = True
            if self._ctx.status is None:
                self._ctx.status = 403
        elif kind.startswith("websocket.http.response."):
            # The app refuses the handshake with a response of its own: an HTTP
            # response like any other, redacted and with the response headers.
            if self._denial is None:
                self._denial = ResponseWriter(self._ctx, self._pipeline, self._denial_send, None)
            await self._denial.send({**message, "type": kind.removeprefix("websocket.")})
            return
        await self._send(message)

    @property
    def denial(self) -> Denial | None:
        """secmw's refusal in place of the app's own handshake refusal (a 502), if any."""
        return self._denial.denial if self._denial is not None else None

    async def end_refusal(self, failed: Denial) -> None:
        """The app is done: a refusal whose start was held and never completed gets ``failed``."""
        writer = self._denial
        if writer is None:
            return
        await writer.finish()
        if not writer.started:
            await writer.answer(failed)

    async def _denial_send(self, message: Message) -> None:
        await self._send({**message, "type": "websocket." + message["type"]})

    async def _pump(self, to_app: MemoryObjectSendStream[Message]) -> None:
        async with to_app:
            while True:
                message = await self._receive()
                if self._refused:
                    # The app was told the session ended: later client messages are
                    # not its business, and are not checked.
                    if message["type"] == "websocket.disconnect":
                        return
                    continue
                if message["type"] == "websocket.receive" and not self.closed:
                    try:
                        await self._check(message)
                    except Denial as denial:
                        await self._refuse(denial, to_app)
                        return
                if message["type"] == "websocket.disconnect":
                    self._ended.set()
                await to_app.send(message)
                if message["type"] == "websocket.disconnect":
                    return

    async def _check(self, message: Message) -> None:
        expires_at = self._ctx.principal.expires_at
        if expires_at is not None and self._pipeline.clock() >= expires_at:
            # The expiry task may not have run yet (a token admitted within the
            # JWT leeway is already past its exp): no message after exp goes on.
            raise _expired()
        limit = self._pipeline.max_message_bytes
        if limit is not None:
            data = message.get("bytes")
            size = len(data) if data is not None else len((message.get("text") or "").encode())
            if size > limit:
                raise PayloadTooLarge(
                    "The message is too large.", reason="websocket message over max_message_bytes"
                )
        await self._pipeline.check_message(self._ctx, message)

    async def _expire(self, to_app: MemoryObjectSendStream[Message], expires_at: float) -> None:
        async with to_app:
            with anyio.move_on_after(max(0.0, expires_at - self._pipeline.clock())):
                await self._ended.wait()
            if self._ended.is_set() or self.closed:
                return  # the client left, or the session was closed first
            await self._refuse(_expired(), to_app)

    async def _refuse(self, denial: Denial, to_app: MemoryObjectSendStream[Message]) -> None:
        """Audit the denial, close the client side with its code, and tell the app.

        Once per session. The audit line comes first: a client that stopped
        reading (the close waits behind its backlog) or that is already gone (the
        server refuses the close) must not cost it. The close is bounded in time.
        """
        if self._refused:
            return
        self._refused = True
        self._ended.set()
        code = self._close_code = close_code(denial)
        with anyio.CancelScope(shield=True):
            await self._pipeline.record(self._ctx, denial, status=code)
        if not self.closed:
            self.closed = True
            reason = "credential expired" if denial.event == "session_expired" else denial.title
            with anyio.move_on_after(_CLOSE_TIMEOUT), contextlib.suppress(Exception):
                # The server may raise anything once the connection is gone.
                await self._send({"type": "websocket.close", "code": code, "reason": reason})
        with contextlib.suppress(
            anyio.WouldBlock, anyio.BrokenResourceError, anyio.ClosedResourceError
        ):
            to_app.send_nowait({"type": "websocket.disconnect", "code": code})


def _expired() -> AuthenticationError:
    return AuthenticationError(
        "The credential expired.",
        reason="credential expired during the session",
        event="session_expired",
    )
