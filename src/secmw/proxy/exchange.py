"""One proxied HTTP exchange: an attempt against one target, and the relay back.

The breaker's permit spans the exchange: an ordinary reply is judged when its
body has been relayed (so a body cut short counts as a failure); an event
stream is judged when its headers arrive, because it may stay open for the
whole session. Slowness is always measured to the response headers.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from functools import partial
from typing import TYPE_CHECKING, Any

import anyio
import httpx

from secmw.breaker.state import CircuitOpen
from secmw.errors import BadRequest, Denial, ServiceUnavailable, UpstreamError, UpstreamTimeout
from secmw.proxy.egress import EgressDenied
from secmw.proxy.target import rewrite_location, upstream_target, upstream_url

if TYPE_CHECKING:
    from secmw.proxy.app import ReverseProxy, Route
    from secmw.proxy.pool import Target
    from secmw.proxy.transport import UpstreamResponse

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Send = Callable[[Message], Awaitable[None]]
Receive = Callable[[], Awaitable[Message]]


class ClientGone(Exception):
    """The client disconnected while its body was being forwarded."""


class RequestBody(httpx.AsyncByteStream):
    """The client's request body, read from ``receive`` as httpx sends it.

    A plain iterator rather than an async generator, so an upstream that fails
    mid-upload leaves nothing to finalise. A disconnect stops the upload.
    ``waiting`` stays true when a wait for the client is interrupted (a timeout
    that struck while the client was slow to upload). ``on_done`` runs once the
    last chunk has arrived.
    """

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self._done = False
        self.waiting = False
        self.on_done: Callable[[], None] | None = None

    @property
    def done(self) -> bool:
        """True once the last chunk of the body has arrived."""
        return self._done

    def __aiter__(self) -> RequestBody:
        return self

    async def __anext__(self) -> bytes:
        while not self._done:
            self.waiting = True
            message = await self._receive()
            self.waiting = False
            if message["type"] == "http.disconnect":
                raise ClientGone
            if message["type"] != "http.request":
                continue
            self._done = not message.get("more_body", False)
            if self._done and self.on_done is not None:
                self.on_done()
            chunk: bytes = message.get("body", b"")
            if chunk:
                return chunk
        raise StopAsyncIteration


Content = bytes | RequestBody | None


# The longest request target (path and query) forwarded; httpx refuses longer URLs, and
# so do most servers (uvicorn's h11 reads at most 16 KiB of request head).
MAX_TARGET = 64 * 1024


# The most header bytes (names, values and their line overhead) a request may carry.
# Well below the 100 KiB an answer's head may take (h1wire.MAX_HEAD, httpcore's too): an
# upstream that echoes request headers (CORS preflights) must not be made to answer with
# a head the gateway refuses, which would count against its breaker.
MAX_REQUEST_HEAD = 32 * 1024


def head_size(headers: Iterable[tuple[bytes, bytes]]) -> int:
    """The bytes ``headers`` take as HTTP/1.1 field lines."""
    return sum(len(name) + len(value) + 4 for name, value in headers)


class HeadersTooLarge(BadRequest):
    """The request's header fields are too large to forward (431, RFC 6585 section 5)."""

    status = 431
    title = "Request Header Fields Too Large"


class UriTooLong(BadRequest):
    """The request target is too long to forward (414); never counted by the breaker."""

    status = 414
    title = "URI Too Long"


class ClientTimeout(BadRequest):
    """The client was too slow sending its body (408); never counted by the breaker."""

    status = 408
    title = "Request Timeout"


class BodyCut(Exception):
    """The upstream body failed after the response had started."""

    def __init__(self, timed_out: bool) -> None:
        super().__init__("upstream body failed")
        self.timed_out = timed_out


def upstream_failure(timed_out: bool, reason: str) -> UpstreamError:
    """The 504 or 502 denial for a failed exchange."""
    if timed_out:
        return UpstreamTimeout("The upstream service did not answer in time.", reason=reason)
    return UpstreamError("The upstream service failed.", reason=reason)


class Exchange:
    """The per-request state of a proxied request, shared by its attempts."""

    __slots__ = (
        "content",
        "ctx",
        "deadline",
        "details",
        "headers",
        "method",
        "proxy",
        "receive",
        "relayed",
        "route",
        "scope",
        "send",
        "sending",
        "total",
    )

    def __init__(
        self,
        *,
        proxy: ReverseProxy,
        scope: Scope,
        route: Route,
        method: str,
        headers: list[tuple[bytes, bytes]],
        content: Content,
        send: Send,
        receive: Receive,
        ctx: Any,
        details: dict[str, Any],
        deadline: float,
        total: float | None = None,
    ) -> None:
        self.proxy = proxy
        self.scope = scope
        self.route = route
        self.method = method
        self.headers = headers
        self.content = content
        self.send = send
        self.receive = receive
        self.ctx = ctx
        self.details = details
        self.deadline = deadline
        self.total = total
        self.relayed = False  # True once the response started: then a failure can only cut it
        self.sending = False  # True while a send to the client is under way (or was cut)

    async def attempt(  # noqa: PLR0915 - every outcome of one try, side by side
        self, exclude: Target | None, *, can_retry: bool
    ) -> tuple[Target | None, Denial] | None:
        """One try: ``None`` when the exchange is over, else the target and what failed."""
        details = self.details
        pool = self.route.pool
        try:
            target = pool.pick(exclude)
            path = upstream_target(target.url, self.route, self.scope)
            if len(path) > MAX_TARGET:
                details["outcome"] = "bad_request"
                return target, UriTooLong(
                    "The request URL is too long to forward.", reason="request target over 64 KiB"
                )
            ticket = target.breaker.acquire()
        except CircuitOpen as denial:
            details["outcome"] = "circuit_open"
            return None, denial
        breaker = target.breaker
        details["target"] = target.label
        proxy = self.proxy
        target.outstanding += 1
        started = time.perf_counter()
        recorded = False
        response: UpstreamResponse | None = None
        try:
            # One scope bounds the exchange by the total timeout, the relayed body
            # included; an event stream lifts the bound once its headers arrive.
            with anyio.CancelScope(deadline=self.deadline) as limit:
                if isinstance(self.content, RequestBody) and self.total is not None:
                    # The client's upload time is not the upstream's: once the body is
                    # in, the upstream gets all of ``total`` for its answer, so a slow
                    # upload cannot make a healthy upstream time out (and open its
                    # breaker for everyone).
                    self.content.on_done = partial(_extend, limit, self.total)
                response = await proxy.upstream.send(
                    self.method,
                    target.url,
                    path,
                    self.headers,
                    self.content,
                    follow_redirects=proxy.follow_redirects,
                    credentials=pool.credentials,
                )
                ttfb = time.perf_counter() - started
                details["upstream_status"] = response.status_code
                if not 200 <= response.status_code <= 599:
                    # No server can send it on (and no client would know what it means).
                    raise httpx.RemoteProtocolError("invalid status code")
                details["upstream_ms"] = round(ttfb * 1000.0, 3)
                if can_retry and response.status_code in pool.retry.statuses:
                    breaker.record_result(ticket, response, ttfb)
                    recorded = True
                    details["outcome"] = "retried_status"
                    return target, UpstreamError(reason=f"upstream status {response.status_code}")
                streaming = response.header(b"content-type").startswith(b"text/event-stream")
                if streaming:
                    breaker.record_result(ticket, response, ttfb)
                    recorded = True
                    limit.deadline = math.inf
                await self.relay(response, target, bounded=not streaming)
                if not recorded:
                    breaker.record_result(ticket, response, ttfb)
                    recorded = True
                details["outcome"] = "ok"
            if limit.cancelled_caught:
                if not self.relayed:
                    raise httpx.TimeoutException("total timeout")
                raise BodyCut(timed_out=True)
        except EgressDenied as denial:
            breaker.release(ticket)
            recorded = True
            details["outcome"] = "egress_denied"
            return target, denial
        except ClientGone:
            if not recorded:
                breaker.release(ticket)
                recorded = True
            details["outcome"] = "client_disconnected"
            return None
        except httpx.LocalProtocolError:
            # Our own request could not be encoded (a header value with control bytes
            # the server passed through): the client's fault, never the upstream's, so
            # it must not count towards opening the breaker.
            if not recorded:
                breaker.release(ticket)
                recorded = True
            details["outcome"] = "bad_request"
            return target, BadRequest(
                "The request cannot be forwarded.", reason="request not encodable upstream"
            )
        except httpx.PoolTimeout:
            # Waiting for a free connection of the gateway's own pool says nothing
            # about this upstream (another one may hold every connection).
            if not recorded:
                breaker.release(ticket)
                recorded = True
            details["outcome"], details["error"] = "pool_timeout", "PoolTimeout"
            return target, ServiceUnavailable(
                "The gateway is busy.", retry_after=1.0, reason="no free upstream connection"
            )
        except (httpx.TimeoutException, httpx.TransportError, BodyCut) as exc:
            if self._client_slow(exc):
                # The time ran out waiting for the client, not the upstream: a slow
                # client must not open the breaker for everyone else.
                if not recorded:
                    breaker.release(ticket)
                    recorded = True
                return self._client_timed_out(target)
            if self._mid_upload(exc):
                # The upstream stopped taking the body: often an early refusal of it
                # (413, 401) whose reset lost the answer. Which client sent the body
                # decides that, so it must not open the breaker for everyone else.
                if not recorded:
                    breaker.release(ticket)
                    recorded = True
                return self._failed(target, exc)
            if not recorded:
                breaker.record(ticket, failed=True, duration=time.perf_counter() - started)
                recorded = True
            return self._failed(target, exc)
        except BaseException:
            if not recorded:
                breaker.release(ticket)
            raise
        finally:
            target.outstanding -= 1
            if response is not None and not response.is_closed:
                with anyio.CancelScope(shield=True):
                    await response.aclose()
            if breaker.has_events:
                with anyio.CancelScope(shield=True):
                    await breaker.flush_events()
        return None

    def _mid_upload(self, exc: Exception) -> bool:
        """True when the exchange failed while the client's body was still on its way."""
        content = self.content
        if isinstance(content, RequestBody):
            # Connected, then cut off: not a refused or timed-out connection, which
            # says the upstream is down whatever the client sends.
            return not content.done and isinstance(exc, _CUT_OFF)
        return isinstance(exc, httpx.WriteError) and bool(content)

    def _client_slow(self, exc: Exception) -> bool:
        """True when a timeout struck while the exchange waited for the client."""
        timed_out = isinstance(exc, httpx.TimeoutException) or (
            isinstance(exc, BodyCut) and exc.timed_out
        )
        uploading = isinstance(self.content, RequestBody) and self.content.waiting
        return timed_out and (uploading or self.sending)

    def _client_timed_out(self, target: Target) -> tuple[Target, Denial] | None:
        self.details["outcome"] = "client_timeout"
        denial = ClientTimeout(
            "The request took too long to arrive.",
            reason="client too slow to send" if not self.relayed else "client too slow to read",
        )
        if self.relayed:
            # The response had started: it can only be cut. Audit it.
            if self.ctx is not None:
                self.ctx.state["denial"] = denial
            return None
        return target, denial

    def _failed(self, target: Target, exc: Exception) -> tuple[Target, Denial] | None:
        cut = isinstance(exc, BodyCut)
        timed_out = isinstance(exc, httpx.TimeoutException) or (
            isinstance(exc, BodyCut) and exc.timed_out
        )
        error = type(exc.__cause__ if cut and exc.__cause__ is not None else exc).__name__
        self.details["outcome"] = "timeout" if timed_out else "error"
        self.details["error"] = error
        if cut:
            # The response had started: nothing else can be sent. Audit it.
            if self.ctx is not None:
                self.ctx.state["denial"] = upstream_failure(timed_out, "upstream body failed")
            return None
        return target, upstream_failure(timed_out, f"upstream {error}")

    async def relay(self, response: UpstreamResponse, target: Target, *, bounded: bool) -> None:
        """Send the upstream response to the client as it arrives."""
        proxy = self.proxy
        headers = rewrite_location(proxy.headers.response(response.headers), target, self.route)
        start = {"type": "http.response.start", "status": response.status_code, "headers": headers}
        if bounded:
            await self._relay_bounded(response, start)
            return
        self.relayed = True
        await self._to_client(start)
        gone = anyio.Event()
        failure: Exception | None = None
        async with anyio.create_task_group() as tasks:
            # A client that leaves ends the relay: an event stream may never end.
            tasks.start_soon(_watch_disconnect, self.receive, gone, tasks.cancel_scope)
            try:
                async for chunk in response.aiter_raw():
                    if chunk:
                        await self._to_client(
                            {"type": "http.response.body", "body": chunk, "more_body": True}
                        )
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                failure = exc
            tasks.cancel_scope.cancel()
        if failure is not None:
            raise BodyCut(isinstance(failure, httpx.TimeoutException)) from failure
        if gone.is_set():
            raise ClientGone
        await self._to_client({"type": "http.response.body", "body": b"", "more_body": False})

    async def _to_client(self, message: Message) -> None:
        """``send``, marked: a timeout that strikes inside it is the client's (it reads slowly)."""
        self.sending = True
        await self.send(message)
        self.sending = False

    async def _relay_bounded(self, response: UpstreamResponse, start: Message) -> None:
        """Relay a reply (bounded by the caller); the last declared byte ends it.

        The head waits for the first chunk of the body: both then leave back to
        back (the client wakes once for a small reply), and a body that fails
        before its first byte is still answered with a clean 502/504.
        """
        declared = response.header(b"content-length")
        bodiless = self.method == "HEAD" or response.status_code in (204, 304)
        remaining = int(declared) if declared.isdigit() and not bodiless else -1
        done = False
        failure: Exception | None = None
        try:
            # Not left early at the declared length: reading to the end of the
            # message lets the connection go back to the pool.
            async for chunk in response.aiter_raw():
                if chunk:
                    if not self.relayed:
                        self.relayed = True
                        await self._to_client(start)
                    remaining -= len(chunk)
                    done = remaining == 0
                    message = {"type": "http.response.body", "body": chunk, "more_body": not done}
                    await self._to_client(message)
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            if not self.relayed:
                raise
            failure = exc
        if failure is not None:
            raise BodyCut(isinstance(failure, httpx.TimeoutException)) from failure
        if not self.relayed:
            self.relayed = True
            await self._to_client(start)
        if remaining > 0:
            raise BodyCut(timed_out=False)
        if not done:
            await self._to_client({"type": "http.response.body", "body": b"", "more_body": False})


_CUT_OFF = (httpx.WriteError, httpx.ReadError, httpx.RemoteProtocolError)


def _extend(scope: anyio.CancelScope, total: float) -> None:
    scope.deadline = max(scope.deadline, anyio.current_time() + total)


async def _watch_disconnect(receive: Receive, gone: anyio.Event, scope: anyio.CancelScope) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            gone.set()
            scope.cancel()
            return


__all__ = [
    "MAX_REQUEST_HEAD",
    "MAX_TARGET",
    "BodyCut",
    "ClientGone",
    "Exchange",
    "HeadersTooLarge",
    "UriTooLong",
    "head_size",
    "rewrite_location",
    "upstream_target",
    "upstream_url",
]
