"""HTTP/1.1 messages for :mod:`secmw.proxy.h1`: requests written, responses read (RFC 9112).

Only what a client needs, and strict about what can desynchronise a pooled
connection: a response with both ``Transfer-Encoding`` and ``Content-Length``,
conflicting or malformed lengths, a transfer coding other than ``chunked``, a
line that is not a header field (obs-fold included), an unexpected ``101``, a
head over :data:`MAX_HEAD`, or bytes after the end of the message all make the
answer unusable (:class:`RemoteError`) or the connection not reusable. Lines
may end in CRLF or a bare LF (RFC 9112 section 2.2). Requests are checked as
strictly: a method, target, field name or value that cannot be sent as is
raises :class:`LocalError` before anything is written.
"""

from __future__ import annotations

import re

Header = tuple[bytes, bytes]

# Response heads (and trailer sections) up to this size are accepted.
MAX_HEAD = 100 * 1024
_MAX_CHUNK_LINE = 4096

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# A field value without leading or trailing whitespace and without controls but HTAB.
_VALUE = re.compile(rb"(?:[\x21-\x7e\x80-\xff](?:[\t \x21-\x7e\x80-\xff]*[\x21-\x7e\x80-\xff])?)?")
_TARGET = re.compile(rb"[\x21-\x7e]+")
_STATUS = re.compile(rb"HTTP/1\.([01]) ([0-9]{3})(?: [\t \x21-\x7e\x80-\xff]*)?")
_HEAD_END = re.compile(rb"\r?\n\r?\n")
_LINE = re.compile(rb"\r?\n")
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,16})[\t ]*(?:;[\t \x21-\x7e\x80-\xff]*)?")


def sendable_field(name: bytes, value: bytes) -> bool:
    """True when ``name: value`` can be written on an HTTP/1.1 request as it is."""
    return bool(_TOKEN.fullmatch(name)) and bool(_VALUE.fullmatch(value))


def is_token(text: str) -> bool:
    """True when ``text`` is an RFC 9110 token (a websocket subprotocol must be one)."""
    return text.isascii() and bool(_TOKEN.fullmatch(text.encode("ascii")))


class LocalError(Exception):
    """Our request cannot be written as HTTP/1.1 (a client's fault, never the upstream's)."""


class RemoteError(Exception):
    """The upstream's answer is not valid HTTP/1.1, or ended too early."""


class Head:
    """A final response head: status and fields (names lower-cased)."""

    __slots__ = ("headers", "status")

    def __init__(self, status: int, headers: list[Header]) -> None:
        self.status = status
        self.headers = headers


class _Marker:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


NEED_DATA = _Marker("NEED_DATA")
END = _Marker("END")  # the response is complete
CLOSED = _Marker("CLOSED")  # the connection ended before any byte of an answer

# Body framings.
_NONE, _LENGTH, _CHUNKED, _CLOSE = 0, 1, 2, 3
# Chunked reader states.
_SIZE, _DATA, _DATA_END, _TRAILER = 0, 1, 2, 3


class ClientConnection:
    """The HTTP/1.1 state of one client connection: one exchange at a time."""

    __slots__ = (
        "_buffer",
        "_chunk_state",
        "_eof",
        "_framing",
        "_head_done",
        "_keep_alive",
        "_method",
        "_out_framing",
        "_out_remaining",
        "_remaining",
        "_searched",
        "request_done",
        "response_done",
    )

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._eof = False
        self._searched = 0  # how much of the buffer holds no line end: never scanned twice
        self.start_next_cycle()

    def start_next_cycle(self) -> None:
        """Ready for the next exchange (after :attr:`reusable` said so)."""
        self._method = b""
        self._head_done = False
        self._framing = _NONE
        self._remaining = 0
        self._chunk_state = _SIZE
        self._keep_alive = True
        self._out_framing = _NONE
        self._out_remaining = 0
        self.request_done = False
        self.response_done = False

    @property
    def reusable(self) -> bool:
        """True when both messages are complete and the connection may carry another."""
        return (
            self.request_done
            and self.response_done
            and self._keep_alive
            and not self._eof
            and not self._buffer  # bytes nobody asked for: the stream is not in step
        )

    # -- the request ---------------------------------------------------------------

    def request(self, method: str, target: bytes, headers: list[Header]) -> bytes:
        """The request head; framing from ``Content-Length`` or ``Transfer-Encoding: chunked``."""
        raw_method = method.encode("ascii", "replace")
        if not _TOKEN.fullmatch(raw_method) or not _TARGET.fullmatch(target):
            raise LocalError("invalid method or target")
        lines = [raw_method, b" ", target, b" HTTP/1.1\r\n"]
        length: bytes | None = None
        chunked = False
        for name, value in headers:
            if not _TOKEN.fullmatch(name) or not _VALUE.fullmatch(value):
                raise LocalError("a header cannot be sent")
            lowered = name.lower()
            if lowered == b"content-length":
                if length is not None or not value.isdigit():
                    raise LocalError("invalid Content-Length")
                length = value
            elif lowered == b"transfer-encoding":
                if value.lower() != b"chunked" or chunked:
                    raise LocalError("unsupported Transfer-Encoding")
                chunked = True
            lines += (name, b": ", value, b"\r\n")
        if chunked and length is not None:
            raise LocalError("both Content-Length and Transfer-Encoding")
        lines.append(b"\r\n")
        self._method = raw_method
        if chunked:
            self._out_framing = _CHUNKED
        elif length is not None and int(length):
            self._out_framing, self._out_remaining = _LENGTH, int(length)
        return b"".join(lines)

    def data(self, chunk: bytes) -> bytes:
        """One piece of the request body, framed."""
        if not chunk:
            return b""
        if self._out_framing == _CHUNKED:
            return b"%x\r\n%s\r\n" % (len(chunk), chunk)
        if self._out_framing != _LENGTH or len(chunk) > self._out_remaining:
            raise LocalError("body longer than its Content-Length")
        self._out_remaining -= len(chunk)
        return chunk

    def end(self) -> bytes:
        """The end of the request body."""
        framing = self._out_framing
        if framing == _LENGTH and self._out_remaining:
            raise LocalError("body shorter than its Content-Length")
        self.request_done = True
        return b"0\r\n\r\n" if framing == _CHUNKED else b""

    # -- the response ----------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Bytes read from the connection; ``b""`` at the end of the stream."""
        if data:
            self._buffer += data
        else:
            self._eof = True

    def next_event(self) -> Head | bytes | _Marker:
        """The next part of the answer: a :class:`Head`, body bytes, or a marker."""
        if self.response_done:
            return END
        if not self._head_done:
            return self._head()
        framing = self._framing
        if framing == _LENGTH:
            return self._length_body()
        if framing == _CHUNKED:
            return self._chunked_body()
        if framing == _CLOSE:
            if self._buffer:
                return self._take(len(self._buffer))
            if self._eof:
                self.response_done = True
                return END
            return NEED_DATA
        self.response_done = True
        return END

    def _take(self, count: int) -> bytes:
        buffer = self._buffer
        data = bytes(buffer[:count])
        del buffer[:count]
        self._searched = 0
        return data

    def _head(self) -> Head | _Marker:
        while True:
            buffer = self._buffer
            while buffer[:2] == b"\r\n" or buffer[:1] == b"\n":
                self._take(2 if buffer[:1] == b"\r" else 1)  # stray blank lines before a head
            # A blank line may straddle the previous end: look 3 bytes back.
            found = _HEAD_END.search(buffer, max(0, self._searched - 3))
            if found is None:
                self._searched = len(buffer)
                if len(buffer) > MAX_HEAD:
                    raise RemoteError("response head too large")
                if self._eof:
                    if not buffer:
                        return CLOSED
                    raise RemoteError("connection closed inside a response head")
                return NEED_DATA
            if found.start() > MAX_HEAD:
                raise RemoteError("response head too large")
            head = self._take(found.end())[: found.start()]
            lines = _LINE.split(head)
            status_line = _STATUS.fullmatch(lines[0])
            if status_line is None:
                raise RemoteError("not an HTTP/1.x status line")
            status = int(status_line[2])
            headers = _fields(lines[1:])
            if status < 100:
                raise RemoteError("invalid status")
            if status < 200:
                if status == 101:
                    raise RemoteError("unexpected protocol switch")
                continue  # interim answers are skipped
            self._frame(status, status_line[1] == b"1", headers)
            self._head_done = True
            return Head(status, headers)

    def _frame(self, status: int, http11: bool, headers: list[Header]) -> None:
        """The body's framing, RFC 9112 section 6.3."""
        codings: list[bytes] = []
        lengths: set[bytes] = set()
        close = not http11
        for name, value in headers:
            if name == b"transfer-encoding":
                codings += (part.strip().lower() for part in value.split(b","))
            elif name == b"content-length":
                lengths.update(part.strip() for part in value.split(b","))
            elif name == b"connection":
                close = close or b"close" in (part.strip().lower() for part in value.split(b","))
        self._keep_alive = not close
        if self._method == b"HEAD" or status in (204, 304):
            self._framing = _NONE
        elif codings:
            if lengths:
                raise RemoteError("both Transfer-Encoding and Content-Length")
            if codings != [b"chunked"]:
                raise RemoteError("unsupported transfer coding")
            self._framing, self._chunk_state = _CHUNKED, _SIZE
        elif lengths:
            (length,) = lengths if len(lengths) == 1 else (b"",)
            if not length.isdigit() or len(length) > 18:
                raise RemoteError("invalid Content-Length")
            self._framing, self._remaining = _LENGTH, int(length)
        else:
            self._framing, self._keep_alive = _CLOSE, False

    def _length_body(self) -> bytes | _Marker:
        if not self._remaining:
            self.response_done = True
            return END
        if self._buffer:
            data = self._take(self._remaining)
            self._remaining -= len(data)
            return data
        if self._eof:
            raise RemoteError("connection closed inside the body")
        return NEED_DATA

    def _chunked_body(self) -> bytes | _Marker:
        buffer = self._buffer
        while True:
            state = self._chunk_state
            if state == _DATA:
                if buffer:
                    data = self._take(self._remaining)
                    self._remaining -= len(data)
                    if not self._remaining:
                        self._chunk_state = _DATA_END
                    return data
            elif state == _DATA_END:
                if buffer[:2] == b"\r\n" or buffer[:1] == b"\n":
                    self._take(2 if buffer[:1] == b"\r" else 1)
                    self._chunk_state = _SIZE
                    continue
                if len(buffer) >= 2 or bytes(buffer[:1]) not in (b"", b"\r"):
                    raise RemoteError("chunk not followed by CRLF")
            elif state == _SIZE:
                line = self._line(_MAX_CHUNK_LINE)
                if line is not None:
                    size = _CHUNK_SIZE.fullmatch(line)
                    if size is None:
                        raise RemoteError("invalid chunk size")
                    self._remaining = int(size[1], 16)
                    self._chunk_state = _DATA if self._remaining else _TRAILER
                    continue
            else:  # the trailer section, read and dropped
                line = self._line(MAX_HEAD)
                if line is not None:
                    if not line:
                        self.response_done = True
                        return END
                    _fields([line])
                    continue
            if self._eof:
                raise RemoteError("connection closed inside a chunked body")
            return NEED_DATA

    def _line(self, limit: int) -> bytes | None:
        """The next line without its ending, or None until it is complete."""
        buffer = self._buffer
        end = buffer.find(b"\n", self._searched)
        if end < 0:
            self._searched = len(buffer)
            if len(buffer) > limit:
                raise RemoteError("line too long")
            return None
        if end > limit:
            raise RemoteError("line too long")
        line = self._take(end + 1)[:-1]
        return line[:-1] if line.endswith(b"\r") else line


def _fields(lines: list[bytes]) -> list[Header]:
    """Header field lines as (lower-cased name, value) pairs; anything else is refused."""
    headers = []
    for line in lines:
        name, colon, value = line.partition(b":")
        # A name with whitespace (obs-fold lines included) is refused, RFC 9112 5.1/5.2.
        if not colon or not _TOKEN.fullmatch(name):
            raise RemoteError("invalid header line")
        value = value.strip(b" \t")
        if not _VALUE.fullmatch(value):
            raise RemoteError("invalid header value")
        headers.append((name.lower(), value))
    return headers


__all__ = [
    "CLOSED",
    "END",
    "MAX_HEAD",
    "NEED_DATA",
    "ClientConnection",
    "Head",
    "LocalError",
    "RemoteError",
    "is_token",
    "sendable_field",
]
