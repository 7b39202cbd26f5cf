"""The webhook alert sink: delivery, retries with backoff, bounded queue, no retry on 4xx."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import anyio
import httpx
import pytest

from secmw.anomaly.base import Alert, Anomaly
from secmw.anomaly.webhook import WebhookAlertSink

pytestmark = pytest.mark.anyio

ALERT = Alert(Anomaly("token_reuse", "authn_token_reuse", "credential", "jti:1", "alert", "r"), 1)


class Upstream:
    """A scripted receiver: answers with ``statuses`` in turn, then 200."""

    def __init__(self, *statuses: int) -> None:
        self.statuses = list(statuses)
        self.bodies: list[dict[str, object]] = []
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.gate.wait(5)
        self.bodies.append(json.loads(request.content))
        status = self.statuses.pop(0) if self.statuses else 200
        return httpx.Response(status)


def _sink(upstream: Upstream, **kw: object) -> WebhookAlertSink:
    return WebhookAlertSink(
        "http://127.0.0.1:9/alerts",
        transport=httpx.MockTransport(upstream),
        backoff=0.001,
        **kw,  # type: ignore[arg-type]
    )


async def test_delivers_the_alert_as_json() -> None:
    upstream = Upstream()
    sink = _sink(upstream)
    await sink.send(ALERT)
    await sink.aclose()
    assert sink.delivered == 1 and sink.failed == 0
    assert upstream.bodies[0]["event"] == "authn_token_reuse"
    assert upstream.bodies[0]["suppressed"] == 1


async def test_retries_server_errors_with_backoff_then_succeeds() -> None:
    upstream = Upstream(503, 500, 429)
    sink = _sink(upstream, retries=3)
    await sink.send(ALERT)
    await sink.aclose()
    assert len(upstream.bodies) == 4 and sink.delivered == 1


async def test_gives_up_after_the_retries(capsys: pytest.CaptureFixture[str]) -> None:
    upstream = Upstream(500, 500, 500)
    sink = _sink(upstream, retries=2)
    await sink.send(ALERT)
    await sink.aclose()
    assert len(upstream.bodies) == 3 and sink.failed == 1
    assert "alert webhook delivery failed" in capsys.readouterr().err


async def test_client_errors_are_not_retried(capsys: pytest.CaptureFixture[str]) -> None:
    upstream = Upstream(400)
    sink = _sink(upstream, retries=3)
    await sink.send(ALERT)
    await sink.aclose()
    assert len(upstream.bodies) == 1 and sink.failed == 1
    capsys.readouterr()


async def test_network_errors_are_retried() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        if len(calls) == 1:
            raise httpx.ConnectError("refused")
        return httpx.Response(204)

    sink = WebhookAlertSink(
        "http://127.0.0.1:9/", transport=httpx.MockTransport(handler), backoff=0.001
    )
    await sink.send(ALERT)
    await sink.aclose()
    assert len(calls) == 2 and sink.delivered == 1


async def test_a_full_queue_drops_and_counts() -> None:
    upstream = Upstream()
    upstream.gate.clear()  # the worker is stuck on the first alert
    sink = _sink(upstream, max_queue=2)
    for _ in range(6):
        await sink.send(ALERT)
    # one in flight (or queued), two queued at most; the rest dropped
    assert sink.dropped >= 3
    upstream.gate.set()
    await sink.aclose()
    assert sink.delivered + sink.dropped == 6


async def test_a_receiver_that_never_answers_leaves_no_thread_and_counts_every_alert() -> None:
    upstream = Upstream()
    upstream.gate.clear()  # every delivery hangs (up to the handler's own 5 s wait)
    sink = _sink(upstream, max_queue=3, close_timeout=0.3, retries=0)
    for _ in range(3):
        await sink.send(ALERT)
    threading.Timer(1.0, upstream.gate.set).start()  # the hung request ends eventually
    await sink.aclose()  # returns after about twice close_timeout, not after the hang
    thread = sink._thread
    assert thread is not None
    thread.join(5)
    assert not thread.is_alive()  # it ended on its own, without an exception
    # each alert is accounted for: the one in flight, and the queued ones as failed
    assert sink.delivered + sink.failed + sink.dropped == 3
    assert sink.failed >= 2


async def test_a_closed_sink_delivers_again_when_used_after_a_restart() -> None:
    upstream = Upstream()
    sink = _sink(upstream)
    await sink.send(ALERT)
    await sink.aclose()  # the app's lifespan ended
    await sink.send(ALERT)  # a request still finishing: the closed sink drops it
    await sink.startup()  # ... and the pipeline started again
    await sink.send(ALERT)
    await sink.send(ALERT)
    await sink.aclose()
    assert sink.delivered == 3 and sink.failed == 0 and len(upstream.bodies) == 3
    assert sink.dropped == 1
    thread = sink._thread  # the last worker: ended with its close
    assert thread is not None and not thread.is_alive()


async def test_alerts_after_a_restart_are_sent_even_while_the_old_worker_hangs() -> None:
    upstream = Upstream()
    upstream.gate.clear()  # the first worker's delivery hangs past its close timeout
    sink = _sink(upstream, max_queue=2, close_timeout=0.2, retries=0)
    for _ in range(3):
        await sink.send(ALERT)
    await sink.aclose()  # gives up on the hung worker
    upstream.gate.set()
    await sink.startup()
    later = Alert(Anomaly("brute_force", "authn_brute_force", "client", "1.2.3.4", "alert", "r"), 1)
    await sink.send(later)  # the pipeline started again
    await sink.aclose()
    # The new alert went out on a worker of its own, not into the stopped one's queue.
    assert "authn_brute_force" in [body["event"] for body in upstream.bodies]
    _wait_for_workers_to_end()  # the first, given up on, still counts what it held
    assert sink.delivered + sink.failed + sink.dropped == 4


async def test_closes_with_a_full_queue_leave_no_thread_behind() -> None:
    upstream = Upstream()
    for _ in range(3):  # three lifespans, each ending with a hung delivery and a full queue
        upstream.gate.clear()
        sink_cycle = _sink(upstream, max_queue=2, close_timeout=0.1, retries=0)
        for _ in range(3):
            await sink_cycle.send(ALERT)
        await sink_cycle.aclose()
        upstream.gate.set()
    _wait_for_workers_to_end()
    assert not [t for t in threading.enumerate() if t.name == "secmw-alert-webhook"]


def _wait_for_workers_to_end(seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and any(
        t.name == "secmw-alert-webhook" for t in threading.enumerate()
    ):
        time.sleep(0.05)


async def test_a_second_close_does_not_cut_the_first_ones_drain() -> None:
    import anyio

    upstream = Upstream()
    sink = _sink(upstream, max_queue=20)
    for _ in range(10):
        await sink.send(ALERT)
    async with anyio.create_task_group() as group:
        group.start_soon(sink.aclose)
        group.start_soon(sink.aclose)
    assert sink.delivered == 10 and sink.failed == 0


class _DrippingReceiver:
    """A socket server: ``head`` at once, then ``drip`` a byte every 0.05 s (within any timeout)."""

    def __init__(self, head: bytes, drip: bytes) -> None:
        import socket

        self.head, self.drip = head, drip
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}/alerts"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: Any) -> None:
        with conn:
            try:
                conn.recv(65536)
                conn.sendall(self.head)
                for byte in self.drip:
                    time.sleep(0.05)
                    conn.sendall(bytes([byte]))
            except OSError:
                return


_HEAD = b"HTTP/1.1 200 OK\r\nContent-Length: 40\r\nX-Padding: 0123456789\r\n\r\n"


@pytest.mark.parametrize(
    ("head", "drip", "delivered"),
    [
        # The status line and headers take 3 s to arrive, six times the timeout.
        pytest.param(b"", _HEAD, 0, id="dripped-headers-fail-at-the-timeout"),
        # The headers come at once: the status is the answer, the body is not waited for.
        pytest.param(_HEAD, b"x" * 40, 1, id="dripped-body-not-waited-for"),
    ],
)
async def test_an_attempt_ends_at_the_timeout_however_slowly_the_receiver_drips(
    head: bytes, drip: bytes, delivered: int
) -> None:
    receiver = _DrippingReceiver(head, drip)
    sink = WebhookAlertSink(receiver.url, timeout=0.5, retries=0)
    try:
        started = time.monotonic()
        await sink.send(ALERT)
        while sink.delivered + sink.failed == 0 and time.monotonic() - started < 5:
            await anyio.sleep(0.02)
        assert (sink.delivered, sink.failed) == (delivered, 1 - delivered)
        assert time.monotonic() - started < 1.5
    finally:
        await sink.aclose()
        receiver.server.close()


async def test_aclose_returns_within_close_timeout_with_every_undelivered_alert_counted() -> None:
    upstream = Upstream()
    upstream.gate.clear()  # the first delivery hangs; two more alerts wait behind it
    sink = _sink(upstream, max_queue=5, close_timeout=0.3, retries=0)
    for _ in range(3):
        await sink.send(ALERT)
    started = time.monotonic()
    await sink.aclose()
    assert time.monotonic() - started < 0.5  # not a multiple of close_timeout
    assert (sink.delivered, sink.failed) == (0, 3)  # in flight and queued, counted by now
    upstream.gate.set()  # the hung delivery ends after the close: not counted twice
    _wait_for_workers_to_end()
    assert (sink.delivered, sink.failed, sink.dropped) == (0, 3, 0)
