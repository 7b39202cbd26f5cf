"""Both upstream clients of the gateway against real servers on 127.0.0.1.

``gateway.client = "builtin"`` (the default: secmw's own HTTP/1.1 client) and
``"httpx"`` must behave alike for everything a user relies on: streaming both
ways, credential and hop-by-hop stripping, failures mapped to 502/504 and
counted by the breaker, redirects re-checked, over-long URLs refused. The
pooling details of the builtin client are tested at the end.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import httpx
import pytest

from secmw.config import load_config
from secmw.proxy import H1Client
from secmw.proxy.build import Gateway, build_gateway
from secmw.proxy.egress import EgressGuard
from secmw.testing import AuditCapture
from tests.gateway_support import (
    API_KEY,
    COOKIE,
    TOKEN_MARK,
    EchoUpstream,
    FaultServer,
    HeldReceiver,
    assert_no_client_secrets,
    gateway_config,
    serve,
)
from tests.support import Sender, http_scope, ws_scope

pytestmark = pytest.mark.anyio

CLIENTS = pytest.mark.parametrize("client", ["builtin", "httpx"])
TIMEOUTS = {"connect": 0.5, "read": 0.3, "write": 0.5, "total": 1.0}
SECRETS = [
    ("authorization", f"Bearer {TOKEN_MARK}"),
    ("x-api-key", API_KEY),
    ("cookie", COOKIE),
    ("connection", "x-hop"),
    ("x-hop", "hop-value"),
]

# A script answers one request: (connection number, request number on it, raw
# request) -> the bytes to send, or None to close the connection without a word.
Script = Callable[[int, int, bytes], bytes | None]


def answer(body: bytes = b"ok", *extra: str) -> bytes:
    """A keep-alive 200 with ``body``."""
    fields = "".join(f"{line}\r\n" for line in extra)
    return b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n%s\r\n" % (len(body), fields.encode()) + body


class ScriptedServer:
    """A keep-alive HTTP/1.1 server on a raw socket that answers as ``script`` says."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.connections = 0
        self.requests: list[bytes] = []
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._sock.settimeout(0.1)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> ScriptedServer:
        thread = threading.Thread(target=self._accept, daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(5)
        self._sock.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            self.connections += 1
            thread = threading.Thread(target=self._serve, args=(conn, self.connections))
            thread.daemon = True
            thread.start()
            self._threads.append(thread)

    def _serve(self, conn: socket.socket, number: int) -> None:
        conn.settimeout(0.1)
        buffer = b""
        count = 0
        with conn:
            while not self._stop.is_set():
                head, sep, rest = buffer.partition(b"\r\n\r\n")
                if not sep:
                    try:
                        data = conn.recv(65536)
                    except TimeoutError:
                        continue
                    except OSError:
                        return
                    if not data:
                        return
                    buffer += data
                    continue
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                if len(rest) < length:
                    buffer += conn.recv(65536)
                    continue
                buffer = rest[length:]
                self.requests.append(head + sep + rest[:length])
                count += 1
                reply = self.script(number, count, head)
                if reply is None:
                    return
                with contextlib.suppress(OSError):
                    conn.sendall(reply)


@pytest.fixture(scope="module")
def echo() -> Iterator[tuple[EchoUpstream, str]]:
    upstream = EchoUpstream()
    with serve(upstream) as url:
        yield upstream, url


def build(targets: list[str], client: str, audit: AuditCapture, **options: Any) -> Gateway:
    settings: dict[str, Any] = {"timeouts": TIMEOUTS, "client": client}
    settings.update(options)
    return build_gateway(load_config(gateway_config(targets, **settings)), audit=audit)


async def call(gateway: Gateway, path: str = "/echo", *chunks: bytes, **scope: Any) -> Sender:
    sender = Sender()
    await gateway(http_scope(path, **scope), HeldReceiver(*chunks), sender)
    return sender


@CLIENTS
async def test_both_clients_stream_both_ways_and_strip_credentials(
    client: str, echo: tuple[EchoUpstream, str]
) -> None:
    upstream, url = echo
    audit = AuditCapture()
    gateway = build([url], client, audit, upstream={"headers": {"x-upstream-key": "upstream-own"}})
    posted = await call(
        gateway, "/echo", b"hello", method="POST", headers=[*SECRETS, ("content-length", "5")]
    )
    streamed = await call(
        gateway,
        "/upload",
        b"a" * 1000,
        b"b" * 1000,
        method="PUT",
        headers=[*SECRETS, ("transfer-encoding", "chunked")],
    )
    head = await call(gateway, "/echo", method="HEAD", headers=SECRETS)
    events = await call(gateway, "/sse", headers=SECRETS)
    await gateway.proxy.aclose()

    assert posted.status == 200
    seen = posted.json()
    assert seen["method"] == "POST"
    assert seen["body_size"] == 5
    assert seen["headers"]["content-length"] == "5"
    assert seen["headers"]["x-upstream-key"] == "upstream-own"
    assert seen["headers"]["host"] == url.removeprefix("http://")
    for name in ("authorization", "x-api-key", "cookie", "x-hop"):
        assert name not in seen["headers"]
    assert seen["headers"].get("connection") != "x-hop"
    assert streamed.status == 200
    assert streamed.json()["body_size"] == 2000
    assert streamed.json()["headers"]["transfer-encoding"] == "chunked"
    assert head.status == 200
    assert head.body == b""
    assert events.header("content-type") == "text/event-stream"
    assert len([chunk for chunk in events.body_chunks if chunk]) >= 3  # relayed as they came
    assert events.body.count(b"data: ") == 3
    outcomes = {e.details.get("outcome") for e in audit.events if e.request_id is not None}
    assert outcomes == {"ok"}
    assert_no_client_secrets(upstream)


@CLIENTS
async def test_upstream_hop_by_hop_fields_never_reach_the_client(client: str) -> None:
    reply = answer(b"ok", "connection: x-private", "x-private: 1", "keep-alive: timeout=5")
    with ScriptedServer(lambda *_: reply) as server:
        gateway = build([server.url], client, AuditCapture())
        sender = await call(gateway)
        await gateway.proxy.aclose()
    assert sender.status == 200
    assert sender.body == b"ok"
    for name in ("connection", "x-private", "keep-alive"):
        assert sender.header(name) is None


@CLIENTS
@pytest.mark.parametrize(
    ("mode", "status", "outcome"),
    [
        pytest.param("reset", 502, "error", id="reset"),
        pytest.param("garbage", 502, "error", id="not-http"),
        pytest.param("hang", 504, "timeout", id="read-timeout"),
        pytest.param("truncate", 200, "error", id="truncated"),
    ],
)
async def test_both_clients_map_failures_and_count_them(
    client: str, mode: str, status: int, outcome: str
) -> None:
    audit = AuditCapture()
    with FaultServer(mode) as fault:
        gateway = build([fault.url], client, audit)
        started = time.perf_counter()
        sender = await call(gateway)
        elapsed = time.perf_counter() - started
        await gateway.proxy.aclose()
    assert sender.status == status
    assert elapsed < 1.5
    (record,) = [event for event in audit.events if event.request_id is not None]
    assert record.details["outcome"] == outcome
    (breaker,) = list(gateway.registry)
    assert breaker.snapshot().failures == 1


@CLIENTS
@pytest.mark.parametrize(
    "reply",
    [
        pytest.param(
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nok", id="two-lengths"
        ),
        pytest.param(b"HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\nok", id="bad-length"),
        pytest.param(b"HTTP/1.1 200 OK\r\nbad header\r\n\r\n", id="bad-field"),
    ],
)
async def test_malformed_answers_are_bad_gateway(client: str, reply: bytes) -> None:
    audit = AuditCapture()
    with ScriptedServer(lambda *_: reply) as server:
        gateway = build([server.url], client, audit)
        sender = await call(gateway)
        await gateway.proxy.aclose()
    assert sender.status == 502
    assert sender.header("content-type") == "application/problem+json"
    assert audit.events[-1].name == "upstream_fail"


@CLIENTS
async def test_the_total_timeout_cuts_a_dripping_body(client: str) -> None:
    def drip(*_: object) -> bytes:
        return b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n" + b"x"

    audit = AuditCapture()
    with ScriptedServer(drip) as server:
        gateway = build([server.url], client, audit, timeouts={**TIMEOUTS, "total": 0.5})
        started = time.perf_counter()
        sender = await call(gateway)
        elapsed = time.perf_counter() - started
        await gateway.proxy.aclose()
    assert sender.status == 200  # the answer had started: only the connection is cut
    assert not any(m.get("more_body") is False for m in sender.messages[1:])
    assert elapsed < 1.0
    assert audit.events[-1].details["outcome"] == "timeout"


@CLIENTS
async def test_a_refused_connection_is_a_counted_502(client: str) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    audit = AuditCapture()
    gateway = build([f"http://127.0.0.1:{port}"], client, audit)
    sender = await call(gateway)
    await gateway.proxy.aclose()
    assert sender.status == 502
    assert audit.events[-1].details["error"] == "ConnectError"


@CLIENTS
async def test_followed_redirects_are_checked_again(client: str) -> None:
    def script(_conn: int, _number: int, head: bytes) -> bytes:
        path = head.split(b" ", 2)[1]
        if path == b"/same":
            return (
                b"HTTP/1.1 307 Temporary Redirect\r\nlocation: /landed\r\ncontent-length: 0\r\n\r\n"
            )
        if path == b"/metadata":
            return (
                b"HTTP/1.1 302 Found\r\nlocation: http://169.254.169.254/latest/meta-data\r\n"
                b"content-length: 0\r\n\r\n"
            )
        if path == b"/other":
            location = other.url.encode() + b"/landed"
            return (
                b"HTTP/1.1 303 See Other\r\nlocation: "
                + location
                + b"\r\ncontent-length: 0\r\n\r\n"
            )
        return answer(path)

    audit = AuditCapture()
    injected = {"headers": {"authorization": "Bearer upstream-own", "x-upstream-key": "key-own"}}
    with ScriptedServer(script) as first, ScriptedServer(script) as other:
        gateway = build([first.url], client, audit, follow_redirects=True, upstream=injected)
        same = await call(gateway, "/same")
        metadata = await call(gateway, "/metadata")
        moved = await call(
            gateway, "/other", b"body", method="POST", headers=[("content-length", "4")]
        )
        await gateway.proxy.aclose()
    assert (same.status, same.body) == (200, b"/landed")
    assert first.requests[1].startswith(b"GET /landed")
    assert b"upstream-own" in first.requests[1]  # same origin: the upstream's credential stays
    assert metadata.status == 502
    assert [e.name for e in audit.events if e.request_id is not None][1] == "egress_denied"
    assert (moved.status, moved.body) == (200, b"/landed")
    (landed,) = other.requests
    assert landed.startswith(b"GET /landed")  # 303: a bodiless GET
    assert b"upstream-own" not in landed  # another origin: no credential
    assert b"key-own" not in landed  # not even in the upstream's own custom header


@CLIENTS
async def test_a_redirect_loop_is_a_502(client: str) -> None:
    def script(_conn: int, _number: int, head: bytes) -> bytes:
        return b"HTTP/1.1 302 Found\r\nlocation: /again\r\ncontent-length: 0\r\n\r\n"

    audit = AuditCapture()
    with ScriptedServer(script) as server:
        gateway = build([server.url], client, audit, follow_redirects=True)
        sender = await call(gateway, "/start")
        await gateway.proxy.aclose()
    assert sender.status == 502
    assert sender.header("content-type") == "application/problem+json"
    assert len(server.requests) == 21  # the request and 20 hops


class _StalledUpload:
    """A client that sends the first chunk of its body, then nothing more."""

    def __init__(self) -> None:
        self.sent = False

    async def __call__(self) -> dict[str, Any]:
        if not self.sent:
            self.sent = True
            return {"type": "http.request", "body": b"a", "more_body": True}
        await anyio.sleep_forever()
        raise AssertionError("unreachable")


class _SlowReader(Sender):
    """A client whose connection takes the body slowly (a blocked ``send``)."""

    async def __call__(self, message: Any) -> None:
        if message["type"] == "http.response.body":
            await anyio.sleep(10)
        await super().__call__(message)


# httpx's body iterators are async generators nested in httpcore's; a relay that
# stops inside the client's ``send`` leaves them suspended (the connection itself is
# closed), and trio reports each one when it is garbage collected.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@CLIENTS
async def test_a_slow_client_gets_408_and_never_opens_the_upstreams_breaker(
    client: str, echo: tuple[EchoUpstream, str]
) -> None:
    audit = AuditCapture()
    breaker = {"minimum_calls": 2, "window_size": 4}
    gateway = build([echo[1]], client, audit, timeouts={**TIMEOUTS, "total": 0.3}, breaker=breaker)
    for _ in range(3):
        sender = Sender()
        scope = http_scope("/upload", method="POST", headers=[("transfer-encoding", "chunked")])
        await gateway(scope, _StalledUpload(), sender)
        assert sender.status == 408
        assert sender.json()["status"] == 408
    for _ in range(3):
        with anyio.fail_after(5):
            await gateway(http_scope("/echo"), HeldReceiver(), _SlowReader())
    fine = await call(gateway, "/echo")
    await gateway.proxy.aclose()
    assert fine.status == 200  # the breaker stayed closed
    (state,) = [b.snapshot() for b in gateway.registry]
    assert state.failures == 0
    outcomes = [e.details.get("outcome") for e in audit.events if e.request_id is not None]
    assert outcomes.count("client_timeout") == 6


class _Upload:
    """A client sending ``count`` chunks of ``chunk``, ``pause`` seconds apart, then waiting."""

    def __init__(self, count: int, chunk: bytes, pause: float) -> None:
        self.left, self.chunk, self.pause = count, chunk, pause

    async def __call__(self) -> dict[str, Any]:
        if self.left:
            await anyio.sleep(self.pause)
            self.left -= 1
            return {"type": "http.request", "body": self.chunk, "more_body": self.left > 0}
        await anyio.sleep_forever()
        raise AssertionError("unreachable")


@CLIENTS
async def test_a_slow_upload_leaves_the_upstream_all_of_total_for_its_answer(client: str) -> None:
    # The upload takes 0.6 s of total = 1 s; the upstream answers 0.6 s after the body:
    # 1.2 s in all, but the upstream was never slow, so no 504 and no breaker failure.
    upstream = EchoUpstream()
    upstream.delay = 0.6
    audit = AuditCapture()
    with serve(upstream) as url:
        gateway = build(
            [url],
            client,
            audit,
            timeouts={**TIMEOUTS, "read": 1.0, "total": 1.0},
            breaker={"minimum_calls": 1, "window_size": 2},
        )
        sender = Sender()
        scope = http_scope("/upload", method="POST", headers=[("transfer-encoding", "chunked")])
        with anyio.fail_after(10):
            await gateway(scope, _Upload(4, b"abcd", 0.15), sender)
        await gateway.proxy.aclose()
    assert sender.status == 200
    (state,) = [b.snapshot() for b in gateway.registry]
    assert state.failures == 0
    assert [e.details.get("outcome") for e in audit.events if e.request_id] == ["ok"]


def _refuse_uploads(conn: socket.socket) -> None:
    """413 and close without reading the body (the kernel resets): many small servers do."""
    head = b""
    while b"\r\n\r\n" not in head:
        data = conn.recv(65536)
        if not data:
            return
        head += data
    if head.startswith(b"GET"):
        conn.sendall(b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok")
    else:
        conn.sendall(b"HTTP/1.1 413 Too Large\r\nconnection: close\r\ncontent-length: 3\r\n\r\nbig")


@CLIENTS
async def test_uploads_an_upstream_cuts_short_never_open_its_breaker(client: str) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        listener.settimeout(0.2)
        stop = threading.Event()

        def serve_forever() -> None:
            while not stop.is_set():
                try:
                    conn, _ = listener.accept()
                except OSError:
                    continue
                with conn:
                    conn.settimeout(3)
                    with contextlib.suppress(OSError):
                        _refuse_uploads(conn)

        thread = threading.Thread(target=serve_forever, daemon=True)
        thread.start()
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        gateway = build(
            [url], client, AuditCapture(), breaker={"minimum_calls": 2, "window_size": 4}
        )
        statuses = []
        for _ in range(6):
            sender = Sender()
            headers = [("content-length", str(20 * 32768))]
            await gateway(
                http_scope("/up", method="POST", headers=headers),
                _Upload(20, b"x" * 32768, 0.005),
                sender,
            )
            statuses.append(sender.status)
        fine = await call(gateway, "/innocent")
        await gateway.proxy.aclose()
        stop.set()
        thread.join(5)
    assert set(statuses) <= {413, 502}  # the answer may be lost to the reset
    assert fine.status == 200  # the breaker stayed closed for everyone else
    (state,) = [b.snapshot() for b in gateway.registry]
    assert state.failures == 0


@CLIENTS
async def test_a_request_target_over_64_kib_is_refused_with_414(client: str) -> None:
    audit = AuditCapture()
    with ScriptedServer(lambda *_: answer()) as server:
        gateway = build([server.url], client, audit)
        sender = await call(gateway, "/echo", query_string=b"q=" + b"a" * 70_000)
        fine = await call(gateway, "/echo", query_string=b"q=" + b"a" * 1000)
        await gateway.proxy.aclose()
        assert len(server.requests) == 1  # only the second one was forwarded
    assert sender.status == 414
    assert sender.header("content-type") == "application/problem+json"
    assert sender.json()["status"] == 414
    assert fine.status == 200
    refused = next(e for e in audit.events if e.request_id is not None)
    assert refused.name == "input_validation_fail"
    (breaker,) = list(gateway.registry)
    assert breaker.snapshot().failures == 0


# -- the builtin client's own pooling ------------------------------------------------


async def test_keep_alive_reuses_one_connection_for_sequential_requests() -> None:
    with ScriptedServer(lambda *_: answer()) as server:
        gateway = build([server.url], "builtin", AuditCapture())
        statuses = [(await call(gateway)).status for _ in range(5)]
        await gateway.proxy.aclose()
    assert statuses == [200] * 5
    assert server.connections == 1


async def test_an_idle_connection_the_upstream_closed_is_not_reused() -> None:
    closing = answer(b"ok", "connection: keep-alive")
    with ScriptedServer(lambda _c, _n, _h: closing) as server:
        gateway = build([server.url], "builtin", AuditCapture())
        assert (await call(gateway)).status == 200
        server.script = lambda *_: None  # every later request: the server just closes
        for _ in range(20):  # the server thread sees the close request at its next poll
            await anyio.sleep(0.02)
        server.script = lambda *_: closing
        sender = await call(gateway)
        await gateway.proxy.aclose()
    assert sender.status == 200


async def test_a_reused_connection_dropped_on_the_next_request_is_retried_once() -> None:
    # Each connection answers its first request and drops the second one unanswered,
    # as an upstream does that closes an idle connection while the request is on its way.
    def script(_conn: int, number: int, _head: bytes) -> bytes | None:
        return answer() if number == 1 else None

    audit = AuditCapture()
    with ScriptedServer(script) as server:
        gateway = build([server.url], "builtin", audit)
        first = await call(gateway, "/echo")
        second = await call(gateway, "/echo")
        streamed = await call(
            gateway, "/echo", b"z", method="POST", headers=[("content-length", "1")]
        )
        await gateway.proxy.aclose()
    assert (first.status, second.status) == (200, 200)
    assert server.connections == 2
    # A streamed body cannot be sent twice: that one fails as a 502.
    assert streamed.status == 502
    (breaker,) = list(gateway.registry)
    assert breaker.snapshot().failures == 1


async def test_a_request_that_is_not_idempotent_is_never_sent_twice() -> None:
    # The upstream may have acted on a POST it then dropped: no second copy is sent,
    # even with the whole body at hand.
    def script(_conn: int, number: int, _head: bytes) -> bytes | None:
        return answer() if number == 1 else None

    with ScriptedServer(script) as server:
        guard = EgressGuard(allow_networks=["127.0.0.0/8"])
        client = H1Client(guard, connect=2, read=2)
        origin = httpx.URL(server.url)
        first = await client.send("GET", origin, b"/echo", [], None)
        await first.aread()
        with pytest.raises(httpx.RemoteProtocolError):
            await client.send("POST", origin, b"/echo", [], b"z")
        again = await client.send("GET", origin, b"/echo", [], None)
        await again.aread()
        put = await client.send("PUT", origin, b"/echo", [], b"z")
        await put.aread()
        await client.aclose()
    assert (first.status_code, again.status_code, put.status_code) == (200, 200, 200)
    posted = [head for head in server.requests if head.startswith(b"POST")]
    assert len(posted) == 1


async def test_the_pool_bound_makes_a_request_wait_then_time_out() -> None:
    upstream = EchoUpstream()
    upstream.delay = 0.6
    audit = AuditCapture()
    with serve(upstream) as url:
        gateway = build(
            [url],
            "builtin",
            audit,
            max_connections=1,
            timeouts={"connect": 0.5, "read": 2, "pool": 0.2, "total": 3},
        )
        results: dict[str, Sender] = {}

        async def one(name: str) -> None:
            results[name] = await call(gateway)

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(one, "first")
            await anyio.sleep(0.1)
            tasks.start_soon(one, "second")
        await gateway.proxy.aclose()
    assert results["first"].status == 200
    assert results["second"].status == 503  # the gateway is busy: not the upstream's fault
    assert any(e.details.get("error") == "PoolTimeout" for e in audit.events)


async def test_interim_answers_are_skipped() -> None:
    reply = b"HTTP/1.1 100 Continue\r\n\r\n" + answer(b"final")
    with ScriptedServer(lambda *_: reply) as server:
        gateway = build([server.url], "builtin", AuditCapture())
        sender = await call(
            gateway, "/echo", b"x", method="POST", headers=[("content-length", "1")]
        )
        await gateway.proxy.aclose()
    assert (sender.status, sender.body) == (200, b"final")


async def test_health_probes_use_the_same_client(echo: tuple[EchoUpstream, str]) -> None:
    gateway = build([echo[1]], "builtin", AuditCapture())
    await gateway.proxy.probe()
    (target,) = gateway.proxy.pools[0].targets
    await gateway.proxy.aclose()
    assert target.healthy and target.probe_failures == 0
    assert json.loads(json.dumps(echo[0].seen[-1]))[":all"]


async def test_a_full_pool_closes_an_idle_connection_of_another_target() -> None:
    audit = AuditCapture()
    with (
        ScriptedServer(lambda *_: answer(b"a")) as first,
        ScriptedServer(lambda *_: answer(b"b")) as second,
    ):
        config = gateway_config([first.url], max_connections=1, timeouts=TIMEOUTS)
        config["gateway"]["upstreams"]["v"] = {"targets": [second.url]}
        config["gateway"]["routes"].insert(0, {"prefix": "/v", "upstream": "v"})
        gateway = build_gateway(load_config(config), audit=audit)
        bodies = [(await call(gateway, path)).body for path in ("/x", "/v/x", "/x")]
        await gateway.proxy.aclose()
    assert bodies == [b"a", b"b", b"a"]
    assert (first.connections, second.connections) == (2, 1)  # evicted, then opened again


@pytest.mark.parametrize(
    ("query", "headers"),
    [
        pytest.param(b"q=" + b"a" * 70_000, [], id="target-over-64-kib"),
        pytest.param(b"", [("x-big", "a" * 33 * 1024)], id="headers-over-32-kib"),
    ],
)
async def test_a_websocket_handshake_too_large_to_forward_is_refused(
    echo: tuple[EchoUpstream, str], query: bytes, headers: list[tuple[str, str]]
) -> None:
    upstream, url = echo
    audit = AuditCapture()
    gateway = build([url], "builtin", audit)
    scope = ws_scope("/ws", headers=headers)
    scope["query_string"] = query
    sent: list[dict[str, Any]] = []
    messages = [{"type": "websocket.connect"}]

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    before = len(upstream.seen)
    await gateway(scope, receive, send)
    await gateway.proxy.aclose()
    assert sent == [{"type": "websocket.close", "code": 1008}]
    assert len(upstream.seen) == before
    refused = audit.events[-1]
    assert (refused.name, refused.details["outcome"]) == ("input_validation_fail", "bad_request")
    (breaker,) = list(gateway.registry)
    assert breaker.snapshot().failures == 0


@CLIENTS
async def test_waiting_for_the_gateways_own_pool_is_not_the_upstreams_failure(
    client: str,
) -> None:
    audit = AuditCapture()
    with FaultServer("hang") as hanging:
        gateway = build(
            [hanging.url],
            client,
            audit,
            max_connections=1,
            timeouts={**TIMEOUTS, "read": 1.0, "pool": 0.2, "total": 2.0},
        )
        results: dict[str, Sender] = {}

        async def one(name: str, delay: float) -> None:
            await anyio.sleep(delay)
            results[name] = await call(gateway, f"/{name}")

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(one, "holder", 0)
            tasks.start_soon(one, "waiter", 0.1)
        await gateway.proxy.aclose()
    assert results["waiter"].status == 503
    assert results["waiter"].header("retry-after") is not None
    assert results["holder"].status == 504
    (state,) = [b.snapshot() for b in gateway.registry]
    assert state.failures == 1  # the hung exchange only
    outcomes = {e.details.get("outcome") for e in audit.events if e.request_id is not None}
    assert "pool_timeout" in outcomes


@CLIENTS
@pytest.mark.parametrize("status", [600, 999])
async def test_a_status_outside_http_is_a_502(client: str, status: int) -> None:
    reply = f"HTTP/1.1 {status} Odd\r\ncontent-length: 2\r\n\r\nok".encode()
    audit = AuditCapture()
    with ScriptedServer(lambda *_: reply) as server:
        gateway = build([server.url], client, audit)
        sender = await call(gateway)
        await gateway.proxy.aclose()
    assert sender.status == 502
    assert sender.header("content-type") == "application/problem+json"


def _echoing(_conn: int, _number: int, head: bytes) -> bytes:
    """An upstream that echoes the request's header lines in its answer (a CORS preflight)."""
    fields = head.split(b"\r\n", 1)[1]
    return b"HTTP/1.1 204 No Content\r\n" + fields.replace(b"\r\n", b"\r\nx-echo-") + b"\r\n\r\n"


@CLIENTS
@pytest.mark.parametrize(
    ("size", "status"),
    [
        pytest.param(30 * 1024, 204, id="under-32-kib-forwarded"),
        pytest.param(33 * 1024, 431, id="over-32-kib-refused"),
        pytest.param(135 * 1024, 431, id="over-the-answer-head-limit-refused"),
    ],
)
async def test_request_headers_over_32_kib_are_refused_before_the_upstream_sees_them(
    client: str, size: int, status: int
) -> None:
    audit = AuditCapture()
    big = ("access-control-request-headers", ",".join(["x-h0000"] * (size // 8)))
    with ScriptedServer(_echoing) as server:
        gateway = build([server.url], client, audit, breaker={"minimum_calls": 2})
        senders = [await call(gateway, "/api", method="OPTIONS", headers=[big]) for _ in range(3)]
        fine = await call(gateway)
        await gateway.proxy.aclose()
        forwarded = len(server.requests)
    assert [sender.status for sender in senders] == [status] * 3
    assert fine.status == 204  # the breaker stayed closed for everyone else
    (state,) = [b.snapshot() for b in gateway.registry]
    assert (state.state.value, state.failures) == ("closed", 0)
    if status == 431:
        assert forwarded == 1  # only the fine request
        assert senders[0].header("content-type") == "application/problem+json"
        refused = next(e for e in audit.events if e.request_id is not None)
        assert (refused.name, refused.details["outcome"]) == (
            "input_validation_fail",
            "bad_request",
        )


@CLIENTS
@pytest.mark.parametrize(
    "location",
    [
        pytest.param(b"wss://127.0.0.1:{port}/x", id="wss"),
        pytest.param(b"ws://127.0.0.1:{port}/x", id="ws"),
    ],
)
async def test_a_redirect_to_a_websocket_url_is_never_followed(
    client: str, location: bytes
) -> None:
    def script(_conn: int, _number: int, _head: bytes) -> bytes:
        target = location.replace(b"{port}", str(other.url.rsplit(":", 1)[1]).encode())
        return b"HTTP/1.1 307 Temporary Redirect\r\nlocation: %s\r\ncontent-length: 0\r\n\r\n" % (
            target
        )

    audit = AuditCapture()
    with ScriptedServer(script) as first, ScriptedServer(lambda *_: answer()) as other:
        gateway = build([first.url], client, audit, follow_redirects=True)
        sender = await call(gateway, "/x", headers=[("x-tenant-id", "t-1")])
        await gateway.proxy.aclose()
        assert other.requests == []  # nothing sent, in cleartext or otherwise
    assert sender.status == 502
    assert sender.header("content-type") == "application/problem+json"
    assert audit.events[-1].name == "upstream_fail"


@CLIENTS
@pytest.mark.parametrize("follow", [True, False], ids=["followed", "passed-on"])
@pytest.mark.parametrize(
    "location",
    [
        pytest.param(b"http:evil", id="no-slashes"),
        pytest.param(b"http:\\\\127.0.0.1:1/x", id="backslashes"),
    ],
)
async def test_an_unusable_redirect_location_is_a_502(
    client: str, follow: bool, location: bytes
) -> None:
    reply = b"HTTP/1.1 302 Found\r\nlocation: %s\r\ncontent-length: 0\r\n\r\n" % location
    audit = AuditCapture()
    with ScriptedServer(lambda *_: reply) as server:
        gateway = build([server.url], client, audit, follow_redirects=follow)
        sender = await call(gateway, "/x")
        await gateway.proxy.aclose()
    if not follow and client == "builtin":
        # Passed on as the upstream sent it (httpx cannot read such an answer at all).
        assert (sender.status, sender.header("location")) == (302, location.decode())
        return
    assert sender.status == 502
    assert sender.header("content-type") == "application/problem+json"
    assert audit.events[-1].name == "upstream_fail"
