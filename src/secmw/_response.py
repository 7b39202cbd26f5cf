"""The response phase of the adapter: headers and body redaction on ``send``."""

from __future__ import annotations

import codecs
import contextlib
import re
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from secmw._config_base import header_value_problem
from secmw._jsonrpc import JSON_LEAD, starts_like_json
from secmw._media import is_textual, media_type, undecided, untyped, wide_text
from secmw.errors import Denial
from secmw.policy.sessions import SENT, Watch
from secmw.redact.audit import redaction_event
from secmw.redact.base import Redactor, StreamRedactor

if TYPE_CHECKING:
    from secmw.context import Finding, RequestContext
    from secmw.pipeline import Pipeline

Message = MutableMapping[str, Any]
Send = Callable[[Message], Awaitable[None]]

_UNSCANNED_SENDS = frozenset({"http.response.pathsend", "http.response.zerocopysend"})
_WIDE_REASON = "response body in UTF-16 or UTF-32 cannot be redacted"


class BodyGuard(Protocol):
    """Protocol: the request-body limit; once ``exceeded`` the app's reply is dropped."""

    exceeded: bool


class ResponseWriter:
    """The app's ``send``: adds response headers and rewrites bodies (filters, redactor).

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
        "_head",
        "_media",
        "_no_body",
        "_pipeline",
        "_reported",
        "_send",
        "_start",
        "_stream",
        "_suppressed",
        "_watch",
        "denial",
        "started",
        "transform",
    )

    def __init__(
        self, ctx: RequestContext, pipeline: Pipeline, send: Send, guard: BodyGuard | None
    ) -> None:
        self._ctx = ctx
        self._pipeline = pipeline
        self._send = send
        self._guard = guard
        self._start: Message | None = None
        self._buffer: list[bytes] | None = None
        self._buffered = 0
        self._stream: tuple[StreamRedactor, codecs.IncrementalDecoder] | None = None
        # A stream's first bytes, held until there are enough to tell UTF-16/32 text.
        self._head: bytes | None = None
        self._media: str | None = None
        self._no_body = False
        self._suppressed = False
        self.started = False
        self._reported = False
        # The start of an event stream, read for the HTTP+SSE transport's session id.
        self._watch: Watch | None = None
        self.transform: Redactor | None = pipeline.body_transform(ctx)
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
        if self._watch is not None and kind == "http.response.body":
            sessions = self._pipeline.sessions
            assert sessions is not None
            if not sessions.watch(self._ctx, self._watch, message.get("body", b"")):
                self._watch = None
        if kind == "http.response.start":
            await self._on_start(message)
        elif kind == "http.response.body" and (
            self._buffer is not None or self._stream is not None
        ):
            await self._on_body(message)
        elif kind == "http.response.body" and not self.started:
            # Out of order (ASGI servers refuse it too): it would pass unscanned.
            raise RuntimeError("the app sent http.response.body before http.response.start")
        elif kind in _UNSCANNED_SENDS and (self._buffer is not None or self._stream is not None):
            # The extension was hidden from the app, which used it anyway: the file
            # would go out unscanned. Refused while nothing is sent, else cut short.
            if self._buffer is not None:
                await self._refuse(f"the app sent its body with {kind}, which cannot be redacted")
            else:
                self._suppressed = True
                await self._send({"type": "http.response.body", "body": b"", "more_body": False})
        elif kind == "http.response.body" and self._no_body and message.get("body"):
            # Not scanned, so not sent: some servers write the body of a 204/304/1xx anyway.
            await self._send({**message, "body": b""})
        else:
            await self._send(message)

    async def _on_start(self, message: Message) -> None:
        ctx = self._ctx
        pipeline = self._pipeline
        ctx.status = int(message["status"])
        headers = list(message.get("headers") or ())
        sessions = pipeline.sessions
        if sessions is not None and (ctx.method in ("POST", "GET") or SENT in ctx.state):
            self._watch = sessions.observe(ctx, ctx.status, headers)
        headers.extend(pipeline.response_headers(ctx))
        redactor = self.transform
        if redactor is None:
            self.started = True
            await self._send({**message, "headers": headers})
            return
        media, encoding, length = media_type(headers)
        no_body = ctx.method == "HEAD" or ctx.status in (204, 304) or ctx.status < 200
        if no_body or not is_textual(media):
            self._no_body = no_body
            self.started = True
            await self._send({**message, "headers": headers})
            return
        if encoding not in (None, "identity"):
            if getattr(redactor, "pass_compressed", False):
                # redact.compressed = "pass": an explicit fail-open, listed in sys_startup.
                self.started = True
                await self._send({**message, "headers": headers})
                return
            # Fail closed: a compressed body cannot be scanned for secrets.
            await self._refuse(f"response content-encoding {encoding} cannot be redacted")
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
        try:
            self._open_stream(redactor)
        except Exception as exc:  # a custom redactor: nothing unscanned goes out
            await self._refuse(f"the redactor failed: {type(exc).__name__}")
            return
        self.started = True
        await self._send({**message, "headers": _without_length(headers)})

    async def answer(self, denial: Denial) -> None:
        """Answer ``denial`` in the app's place (it failed before its response started).

        Not recorded here: the caller's audit event says why. The client may be
        gone, so a failing ``send`` is no error.
        """
        await self._send_whole(*self._pipeline.render(self._ctx, denial))

    async def _send_whole(
        self, status: int, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> None:
        """A whole response of secmw's own; the client may be gone, so a failing send is
        no error."""
        self._ctx.status = status
        self.started = True
        with contextlib.suppress(Exception):
            await self._send({"type": "http.response.start", "status": status, "headers": headers})
            await self._send({"type": "http.response.body", "body": body, "more_body": False})

    async def answer_for_app(self, denial: Denial) -> bool:
        """Answer a ``Denial`` the app raised before its response; False if it cannot be.

        The app made it, so it is checked like an app's response: a denial that does
        not render, or whose headers a server would refuse, is no answer (the caller
        treats it as the app's error), and its body goes through the redactor.
        """
        ctx = self._ctx
        redactor = self.transform
        vetted = vet_app_denial(denial, redactor)
        if vetted is None:
            return False
        found = vetted
        try:
            status, headers, body = self._pipeline.render(ctx, denial)
        except Exception:
            return False
        findings: Sequence[Finding] = found
        if redactor is not None:
            media, _, _ = media_type(headers)
            try:
                text, findings = redactor.redact(body.decode("utf-8", "surrogateescape"), media)
                headers, in_headers = _challenge_redacted(redactor, headers)
            except Exception:
                return False
            body = _encoded(text)
            headers = [*_without_length(headers), (b"content-length", str(len(body)).encode())]
            findings = [*found, *findings, *in_headers]
            ctx.findings.extend(findings)
        await self._send_whole(status, headers, body)
        await self._report(findings)
        return True

    def _open_stream(self, redactor: Redactor) -> None:
        self._head = b""
        self._stream = (
            _SniffedStream(redactor) if untyped(self._media) else redactor.stream(self._media),
            codecs.getincrementaldecoder("utf-8")(errors="surrogateescape"),
        )

    async def _on_body(self, message: Message) -> None:
        chunk: bytes = message.get("body", b"")
        more = bool(message.get("more_body", False))
        buffer, start, redactor = self._buffer, self._start, self.transform
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

    async def _refuse(self, reason: str) -> None:
        """Answer 502 ``secret_redaction_fail`` instead of a body that cannot be scanned."""
        ctx = self._ctx
        self._suppressed = True
        self._buffer = None
        self.denial = _UnscannableResponse("The response could not be checked.", reason=reason)
        status, deny_headers, body = self._pipeline.render(ctx, self.denial)
        ctx.status = status
        await self._send({"type": "http.response.start", "status": status, "headers": deny_headers})
        await self._send({"type": "http.response.body", "body": body, "more_body": False})
        self.started = True

    async def _send_buffered(self, raw: bytes, start: Message, redactor: Redactor) -> None:
        if wide_text(raw, self._media):
            await self._refuse(_WIDE_REASON)
            return
        text = raw.decode("utf-8", "surrogateescape")
        try:
            redacted, findings = redactor.redact(text, _sniffed(self._media, text))
        except Exception as exc:  # a custom redactor: nothing unscanned goes out
            await self._refuse(f"the redactor failed: {type(exc).__name__}")
            return
        self._ctx.findings.extend(findings)
        body = _encoded(redacted)
        headers = _without_length(start["headers"])
        headers.append((b"content-length", str(len(body)).encode()))
        self._buffer = None
        self.started = True
        await self._send({**start, "headers": headers})
        await self._send({"type": "http.response.body", "body": body, "more_body": False})
        await self._report(findings)

    async def _send_streamed(self, chunk: bytes, more: bool) -> None:
        if self._stream is None:
            await self._send({"type": "http.response.body", "body": chunk, "more_body": more})
            return
        if self._head is not None:
            chunk = self._head + chunk
            if more and undecided(chunk, self._media):
                self._head = chunk
                return
            self._head = None
            if wide_text(chunk, self._media):
                await self._cut(_WIDE_REASON)
                return
        stream, decoder = self._stream
        try:
            text = stream.feed(decoder.decode(chunk, final=not more))
            if not more:
                text += stream.flush()
        except Exception as exc:
            await self._cut(f"the redactor failed: {type(exc).__name__}")
            return
        if not more:
            self._ctx.findings.extend(stream.findings)
        if text or not more:
            await self._send(
                {
                    "type": "http.response.body",
                    "body": _encoded(text),
                    "more_body": more,
                }
            )
        if not more:
            await self._report(stream.findings)

    async def _cut(self, reason: str) -> None:
        """Headers are out: the body ends here, cut short, and the trail says why."""
        self._suppressed = True
        self.denial = _UnscannableResponse("The response could not be checked.", reason=reason)
        await self._send({"type": "http.response.body", "body": b"", "more_body": False})

    async def finish(self) -> None:
        """The app is done: report redactions of a stream that never reached its end.

        A client that hangs up mid-stream (the MCP SDK's legacy transport does) still
        received redacted text; the audit trail must say so. An HTTP+SSE session
        bound from this stream ends with it.
        """
        sessions = self._pipeline.sessions
        if sessions is not None:
            sessions.stream_ended(self._ctx)
        if self._stream is not None and not self._reported:
            findings = list(self._stream[0].findings)
            self._ctx.findings.extend(findings)
            await self._report(findings)
        if self._buffer is not None and not self.started:
            # The app never finished a held response: nothing was sent, and the
            # server answers 500 for an app that returned without a response.
            self._ctx.status = 500

    async def _report(self, findings: Sequence[Finding]) -> None:
        """Audit what the redactor replaced (``secret_redacted``, counts by type)."""
        self._reported = True
        if findings:
            event = redaction_event(self._ctx, findings)
            if event is not None:
                await self._pipeline.emit(event)


_FIELD_NAME = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# The answer's framing is secmw's: an app's denial may not set it.
_FRAMING = frozenset({b"content-length", b"transfer-encoding", b"connection", b"content-type"})

# A header value longer than this is refused by common servers (h11: 64 KiB per
# head): an app's denial carrying one is no answer.
_LONGEST_HEADER = 8192


def _challenge_redacted(
    redactor: Redactor, headers: list[tuple[bytes, bytes]]
) -> tuple[list[tuple[bytes, bytes]], list[Finding]]:
    """An app-raised denial's headers with ``WWW-Authenticate`` redacted, and what was found.

    Rendering strips characters from the challenge's parameters, which may join a
    secret split by them; scopes and error codes are the app's too. A style that
    writes beyond latin-1 (``partial``'s ellipsis) gets ``?`` there.
    """
    out: list[tuple[bytes, bytes]] = []
    found: list[Finding] = []
    for name, value in headers:
        if name != b"www-authenticate":
            out.append((name, value))
            continue
        text, findings = redactor.redact(value.decode("latin-1"))
        out.append((name, text.encode("latin-1", "replace")))
        found.extend(findings)
    return out, found


def vet_app_denial(denial: Denial, redactor: Redactor | None) -> list[Finding] | None:
    """Ready a ``Denial`` an app raised for answering; ``None`` if it cannot be answered.

    Its headers must be well-formed and leave the framing to secmw; its detail (which
    the body and ``WWW-Authenticate`` both carry) is redacted in place. Returns the
    redaction's findings.
    """
    try:
        denial.headers = tuple(denial.headers)  # a generator would be used up here
    except TypeError:
        return None
    for name, value in denial.headers:
        if (
            not isinstance(name, bytes)
            or not isinstance(value, bytes)
            or not _FIELD_NAME.fullmatch(name)
            or name.lower() in _FRAMING
            or len(value) > _LONGEST_HEADER
            or header_value_problem(value.decode("latin-1")) is not None
        ):
            return None
    if redactor is None or not isinstance(denial.detail, str):
        return []
    try:
        denial.detail, found = redactor.redact(denial.detail, None)
    except Exception:
        return None
    return list(found)


# Surrogates that surrogateescape cannot write back (it owns U+DC80..U+DCFF).
_FOREIGN_SURROGATE = re.compile("[\ud800-\udc7f\udd00-\udfff]")


def _encoded(text: str) -> bytes:
    """The redacted text as bytes, with the body's undecodable bytes restored.

    A lone surrogate that is not one of those (a redactor produced it) has no
    UTF-8 form: it becomes U+FFFD rather than an exception after the headers.
    """
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return _FOREIGN_SURROGATE.sub("\ufffd", text).encode("utf-8", "surrogateescape")


def _without_length(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    return [(name, value) for name, value in headers if name.lower() != b"content-length"]


# How much leading whitespace an untyped stream may hold before it is judged text.
_SNIFF_LIMIT = 1024


def _sniffed(media: str | None, text: str) -> str | None:
    """The media type to redact an untyped body as: JSON when it starts like a JSON
    document (clients call ``.json()`` whatever the type), else ``media`` unchanged."""
    if untyped(media) and starts_like_json(text):
        return "application/json"
    return media


class _SniffedStream:
    """An untyped streamed body: held until its first character tells JSON from text."""

    __slots__ = ("_held", "_inner", "_redactor")

    def __init__(self, redactor: Redactor) -> None:
        self._redactor = redactor
        self._inner: StreamRedactor | None = None
        self._held = ""

    @property
    def findings(self) -> list[Finding]:
        return self._inner.findings if self._inner is not None else []

    @findings.setter
    def findings(self, value: list[Finding]) -> None:  # the protocol's attribute
        if self._inner is not None:
            self._inner.findings = value

    def _choose(self, text: str) -> StreamRedactor:
        self._inner = self._redactor.stream(_sniffed(None, text))
        return self._inner

    def feed(self, chunk: str) -> str:
        if self._inner is not None:
            return self._inner.feed(chunk)
        text = self._held + chunk
        if not text.lstrip(JSON_LEAD) and len(text) < _SNIFF_LIMIT:
            self._held = text
            return ""
        self._held = ""
        return self._choose(text).feed(text)

    def flush(self) -> str:
        if self._inner is None:
            text, self._held = self._held, ""
            inner = self._choose(text)
            return inner.feed(text) + inner.flush()
        return self._inner.flush()


class _UnscannableResponse(Denial):
    status = 502
    title = "Bad Gateway"
    event = "secret_redaction_fail"
