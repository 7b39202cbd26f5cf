"""The HTTP/1.1 wire format of the gateway's upstream client: requests out, answers in."""

from __future__ import annotations

import pytest

from secmw.proxy.h1wire import (
    CLOSED,
    END,
    MAX_HEAD,
    NEED_DATA,
    ClientConnection,
    Head,
    LocalError,
    RemoteError,
)


def exchange(method: str = "GET") -> ClientConnection:
    """A connection whose request (without a body) has been written."""
    conn = ClientConnection()
    conn.request(method, b"/", [(b"host", b"up")])
    conn.end()
    return conn


def read_all(conn: ClientConnection, data: bytes, *, split: int = 0, eof: bool = False) -> list:
    """Every event for ``data`` fed whole or ``split`` bytes at a time; body bytes joined."""
    events: list = []
    pieces = [data[i : i + split] for i in range(0, len(data), split)] if split else [data]
    if eof:
        pieces.append(b"")
    for piece in pieces:
        conn.receive_data(piece)
        while (event := conn.next_event()) is not NEED_DATA:
            if isinstance(event, bytes) and events and isinstance(events[-1], bytes):
                events[-1] += event
            else:
                events.append(event)
            if event is END or event is CLOSED:
                return events
    return events


def test_request_head_and_framed_bodies() -> None:
    conn = ClientConnection()
    head = conn.request("POST", b"/a?b=1", [(b"host", b"up:81"), (b"content-length", b"5")])
    assert head == b"POST /a?b=1 HTTP/1.1\r\nhost: up:81\r\ncontent-length: 5\r\n\r\n"
    assert conn.data(b"he") + conn.data(b"llo") + conn.end() == b"hello"
    chunked = ClientConnection()
    chunked.request("PUT", b"/", [(b"transfer-encoding", b"chunked")])
    assert chunked.data(b"abc") + chunked.data(b"") + chunked.end() == b"3\r\nabc\r\n0\r\n\r\n"


@pytest.mark.parametrize(
    ("method", "target", "headers"),
    [
        pytest.param("GET", b"/", [(b"x", b"a\r\nInjected: 1")], id="crlf-in-value"),
        pytest.param("GET", b"/", [(b"x", b"a\x00")], id="nul-in-value"),
        pytest.param("GET", b"/", [(b"x", b" padded")], id="leading-space"),
        pytest.param("GET", b"/", [(b"bad name", b"1")], id="space-in-name"),
        pytest.param("GET", b"/a b", [], id="space-in-target"),
        pytest.param("G T", b"/", [], id="bad-method"),
        pytest.param("GET", b"/", [(b"content-length", b"1x")], id="bad-length"),
        pytest.param("GET", b"/", [(b"transfer-encoding", b"gzip")], id="other-coding"),
        pytest.param(
            "GET",
            b"/",
            [(b"content-length", b"1"), (b"transfer-encoding", b"chunked")],
            id="both-framings",
        ),
    ],
)
def test_requests_that_cannot_be_sent_as_is_are_refused(
    method: str, target: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    with pytest.raises(LocalError):
        ClientConnection().request(method, target, headers)


def test_a_body_must_match_its_declared_length() -> None:
    conn = ClientConnection()
    conn.request("POST", b"/", [(b"content-length", b"3")])
    with pytest.raises(LocalError):
        conn.data(b"four")
    conn.data(b"ab")
    with pytest.raises(LocalError):
        conn.end()
    bodiless = ClientConnection()
    bodiless.request("GET", b"/", [])
    with pytest.raises(LocalError):
        bodiless.data(b"x")


@pytest.mark.parametrize("split", [0, 1, 7])
def test_length_and_chunked_bodies_read_alike_however_they_arrive(split: int) -> None:
    fixed = read_all(exchange(), b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", split=split)
    chunked = read_all(
        exchange(),
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
        b"2;ext=1\r\nhe\r\n3\r\nllo\r\n0\r\nx-trailer: t\r\n\r\n",
        split=split,
    )
    for events in (fixed, chunked):
        head, body, end = events
        assert isinstance(head, Head) and head.status == 200
        assert (body, end) == (b"hello", END)
    assert fixed[0].headers == [(b"content-length", b"5")]  # names lower-cased


def test_bare_lf_lines_interim_answers_and_stray_blank_lines() -> None:
    events = read_all(
        exchange(),
        b"\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\nlink: </a>\n\n"
        b"HTTP/1.1 201 Created\ncontent-length: 2\n\nok",
    )
    assert [type(e) for e in events] == [Head, bytes, type(END)]
    assert events[0].status == 201


@pytest.mark.parametrize(
    ("method", "answer"),
    [
        pytest.param("HEAD", b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n", id="head"),
        pytest.param("GET", b"HTTP/1.1 204 No Content\r\ncontent-length: 10\r\n\r\n", id="204"),
        pytest.param("GET", b"HTTP/1.1 304 Not Modified\r\n\r\n", id="304"),
        pytest.param("GET", b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n", id="empty"),
    ],
)
def test_bodiless_answers_end_after_the_head(method: str, answer: bytes) -> None:
    conn = exchange(method)
    events = read_all(conn, answer)
    assert [type(e) for e in events] == [Head, type(END)]
    assert conn.reusable


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\n", id="two-lengths"
        ),
        pytest.param(b"HTTP/1.1 200 OK\r\ncontent-length: 2, 3\r\n\r\n", id="list-of-lengths"),
        pytest.param(b"HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n", id="negative-length"),
        pytest.param(b"HTTP/1.1 200 OK\r\ncontent-length: 0x10\r\n\r\n", id="hex-length"),
        pytest.param(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 5\r\n\r\n",
            id="both-framings",
        ),
        pytest.param(b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n", id="gzip"),
        pytest.param(b"HTTP/1.1 200 OK\r\nx-a: 1\r\n folded\r\n\r\n", id="obs-fold"),
        pytest.param(b"HTTP/1.1 200 OK\r\nx-a : 1\r\n\r\n", id="space-before-colon"),
        pytest.param(b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n", id="not-a-field"),
        pytest.param(b"HTTP/1.1 200 OK\r\nx-a: 1\x002\r\n\r\n", id="nul-in-value"),
        pytest.param(b"HTTP/2 200 OK\r\n\r\n", id="http-2"),
        pytest.param(b"HTTP/1.1 20 OK\r\n\r\n", id="short-status"),
        pytest.param(b"SSH-2.0-OpenSSH\r\n\r\n", id="not-http"),
        pytest.param(b"HTTP/1.1 101 Switching Protocols\r\n\r\n", id="unasked-101"),
        pytest.param(b"HTTP/1.1 099 Odd\r\n\r\n", id="status-below-100"),
    ],
)
def test_malformed_answer_heads_are_refused(answer: bytes) -> None:
    with pytest.raises(RemoteError):
        read_all(exchange(), answer)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"zz\r\nab\r\n0\r\n\r\n", id="bad-size"),
        pytest.param(b"2\r\nabc\r\n0\r\n\r\n", id="longer-than-size"),
        pytest.param(b"2\r\nab\r\n0\r\nbad trailer\r\n\r\n", id="bad-trailer"),
        pytest.param(b"f" * 5000 + b"\r\n", id="size-line-too-long"),
    ],
)
def test_malformed_chunked_bodies_are_refused(body: bytes) -> None:
    with pytest.raises(RemoteError):
        read_all(exchange(), b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + body)


def test_a_head_over_the_limit_is_refused() -> None:
    with pytest.raises(RemoteError):
        read_all(exchange(), b"HTTP/1.1 200 OK\r\nx-big: " + b"a" * MAX_HEAD)


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort", id="length"),
        pytest.param(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nab", id="chunked"),
        pytest.param(b"HTTP/1.1 200 OK\r\ncontent-le", id="inside-head"),
    ],
)
def test_a_connection_closed_early_is_an_error(answer: bytes) -> None:
    with pytest.raises(RemoteError):
        read_all(exchange(), answer, eof=True)


def test_a_connection_closed_before_any_answer_is_reported_as_such() -> None:
    assert read_all(exchange(), b"", eof=True) == [CLOSED]


def test_an_unframed_body_runs_to_the_end_of_the_connection() -> None:
    conn = exchange()
    events = read_all(conn, b"HTTP/1.1 200 OK\r\n\r\nall of it", split=4, eof=True)
    assert events[1:] == [b"all of it", END]
    assert not conn.reusable


@pytest.mark.parametrize(
    ("answer", "reusable"),
    [
        pytest.param(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", True, id="keep-alive"),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nconnection: Close\r\ncontent-length: 2\r\n\r\nok",
            False,
            id="connection-close",
        ),
        pytest.param(b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok", False, id="http-1.0"),
        pytest.param(
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokEXTRA", False, id="bytes-after"
        ),
    ],
)
def test_a_connection_is_reused_only_when_both_sides_are_in_step(
    answer: bytes, reusable: bool
) -> None:
    conn = exchange()
    read_all(conn, answer)
    assert conn.reusable is reusable
    if reusable:
        conn.start_next_cycle()
        assert not conn.reusable  # a new exchange has begun
        conn.request("GET", b"/again", [])
        conn.end()
        assert read_all(conn, answer)[1:] == [b"ok", END]


def test_a_request_still_being_sent_keeps_the_connection_out_of_the_pool() -> None:
    conn = ClientConnection()
    conn.request("POST", b"/", [(b"content-length", b"4")])
    read_all(conn, b"HTTP/1.1 413 Content Too Large\r\ncontent-length: 0\r\n\r\n")
    assert not conn.reusable


def test_a_long_head_dripped_byte_by_byte_is_read_whole() -> None:
    conn = exchange()
    answer = b"HTTP/1.1 200 OK\r\nx-pad: " + b"a" * 20_000 + b"\r\ncontent-length: 2\r\n\r\nok"
    events = read_all(conn, answer, split=1)
    assert events[0].headers[0] == (b"x-pad", b"a" * 20_000)
    assert events[1:] == [b"ok", END]
