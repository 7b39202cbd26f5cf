"""A webhook alert sink: JSON POSTs from a bounded queue, with retries and backoff.

Delivery runs on one worker thread, with an event loop of its own (asyncio,
whatever the app runs on) so that every attempt has a deadline in total: httpx's
timeouts apply per read, and a receiver that drips its answer a byte at a time
would otherwise hold the one worker forever. ``send`` only enqueues and never
holds up a request. When the queue is full the alert is dropped and counted (an
alert flood must not become a memory problem). Needs the ``gateway`` extra (httpx).
"""

from __future__ import annotations

import contextlib
import json
import queue
import sys
import threading
import time
from collections.abc import Mapping
from typing import Any

import anyio

from secmw.anomaly.base import Alert
from secmw.errors import ConfigError

_STOP = object()


class _Worker:
    """One delivery worker: its queue, stop flag, HTTP client, thread and alert in flight."""

    __slots__ = ("client", "current", "queue", "stop", "thread")

    thread: threading.Thread  # set by the sink, which runs the worker on it

    def __init__(self, alerts: queue.Queue[Any], stop: threading.Event, client: Any) -> None:
        self.queue = alerts
        self.stop = stop
        self.client = client
        # The alert being delivered; a close that gives up counts it and clears this,
        # so the worker, finishing later, does not count it again.
        self.current: Alert | None = None


class WebhookAlertSink:
    """POST each alert as JSON to ``url``; retry 5xx, 429 and network errors with backoff.

    Each attempt has ``timeout`` seconds in all, from connecting to the status
    line and headers (the body is not read). Attempt *n* (from 0) that fails
    waits ``backoff * 2**n`` seconds (at most ``max_backoff``) before the next;
    after ``retries`` retries the alert is dropped and counted in ``failed``.
    """

    def __init__(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float = 5.0,
        max_queue: int = 1000,
        retries: int = 3,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        close_timeout: float = 10.0,
        transport: Any = None,
    ) -> None:
        try:
            import httpx  # noqa: PLC0415 - optional dependency
        except ImportError:  # pragma: no cover - depends on the installed extras
            raise ConfigError(
                "the webhook alert sink needs httpx: pip install 'secmw[gateway]'"
            ) from None
        self.url = url
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.close_timeout = close_timeout
        self.delivered = 0
        self.failed = 0
        self.dropped = 0
        self._max_queue = max_queue
        # Kept to make a new client for each worker: the sink may be used again after
        # aclose (a pipeline started again when a lifespan restarts).
        self._client_options: dict[str, Any] = {
            "timeout": timeout,
            "headers": dict(headers or {}),
            "transport": transport,
        }
        self._client_type = httpx.AsyncClient
        self._http_error = httpx.HTTPError
        self._worker: _Worker | None = None
        self._last: _Worker | None = None  # the worker the last aclose stopped
        self._closed = False  # between aclose and the next startup: alerts are dropped
        self._lock = threading.Lock()

    @property
    def _thread(self) -> threading.Thread | None:
        """The current (or last stopped) worker's thread."""
        worker = self._worker or self._last
        return worker.thread if worker is not None else None

    @property
    def depth(self) -> int:
        """Alerts waiting for delivery (by a stopped worker too, while it drains)."""
        worker = self._worker or self._last
        return worker.queue.qsize() if worker is not None else 0

    async def send(self, alert: Alert) -> None:
        """Queue ``alert`` for delivery; a full queue, or a closed sink, drops it."""
        with self._lock:
            # Under the lock: a close cannot slip its stop marker in ahead of this alert.
            worker = None if self._closed else self._worker or self._start()
            if worker is not None:
                try:
                    worker.queue.put_nowait(alert)
                except queue.Full:
                    worker = None
        if worker is None:
            self.dropped += 1

    async def startup(self) -> None:
        """Take alerts again after :meth:`aclose` (a pipeline started once more)."""
        with self._lock:
            self._closed = False

    def _start(self) -> _Worker:
        """A worker of its own (queue, stop flag, client, thread): one that an earlier
        aclose stopped, whether it has ended yet or not, is never reused. Called with
        the lock held."""
        if self._worker is None:
            worker = _Worker(
                queue.Queue(maxsize=self._max_queue),
                threading.Event(),
                self._client_type(**self._client_options),
            )
            worker.thread = threading.Thread(
                target=self._run, args=(worker,), name="secmw-alert-webhook", daemon=True
            )
            worker.thread.start()
            self._worker = worker
        return self._worker

    def _run(self, worker: _Worker) -> None:
        anyio.run(self._serve, worker)

    async def _serve(self, worker: _Worker) -> None:
        """Deliver queued alerts until the stop marker (blocking waits are fine: the
        loop is this thread's alone)."""
        try:
            while True:
                item = worker.queue.get()
                if item is _STOP:
                    return
                with self._lock:
                    if worker.stop.is_set():  # taken after a close gave up: not sent
                        self.failed += 1
                        continue
                    worker.current = item
                try:
                    delivered = await self._deliver(worker, item)
                except Exception:  # a bug in a transport must not end the worker
                    delivered = False
                with self._lock:
                    if worker.current is item:  # else a close that gave up counted it
                        worker.current = None
                        if delivered:
                            self.delivered += 1
                        else:
                            self.failed += 1
                if not delivered:
                    print(
                        f"secmw: alert webhook delivery failed ({item.anomaly.event})",
                        file=sys.stderr,
                    )
        finally:
            with anyio.CancelScope(shield=True):
                await worker.client.aclose()

    async def _deliver(self, worker: _Worker, alert: Alert) -> bool:
        """True once the receiver accepted ``alert``; false after the last retry."""
        body = json.dumps(alert.to_dict(), ensure_ascii=True, default=str).encode()
        for attempt in range(self.retries + 1):
            status = await self._attempt(worker, body)
            if status is not None and status < 300:
                return True
            retry = status is None or status >= 500 or status == 429
            if not retry or attempt == self.retries:
                return False
            if worker.stop.wait(min(self.max_backoff, self.backoff * 2**attempt)):
                return False
        return False

    async def _attempt(self, worker: _Worker, body: bytes) -> int | None:
        """One POST within ``timeout`` in all: its status, or ``None`` when it did not end."""
        with anyio.move_on_after(self.timeout):
            try:
                async with worker.client.stream(
                    "POST", self.url, content=body, headers={"content-type": "application/json"}
                ) as response:
                    status: int = response.status_code
                    return status
            except self._http_error:
                return None
        return None

    def _join(self, timeout: float) -> _Worker | None:
        deadline = time.monotonic() + timeout
        with self._lock:
            # From here on sends are dropped until startup; this worker is stopped.
            self._closed = True
            worker, self._worker = self._worker, None
            if worker is not None:
                self._last = worker
        if worker is None:
            return None
        with contextlib.suppress(queue.Full):  # still full at the deadline: given up on below
            worker.queue.put(_STOP, timeout=timeout)
        worker.thread.join(max(0.0, deadline - time.monotonic()))
        if worker.thread.is_alive():
            self._give_up(worker)
        return worker

    def _give_up(self, worker: _Worker) -> None:
        """Count what ``worker`` still holds as failed and let it end on its own.

        Its attempt in flight ends within ``timeout`` and then finds the stop
        marker; it closes its own client (on its own loop).
        """
        with self._lock:
            worker.stop.set()
            if worker.current is not None:
                worker.current = None
                self.failed += 1
            while True:
                try:
                    item = worker.queue.get_nowait()
                except queue.Empty:
                    break
                if item is not _STOP:
                    self.failed += 1
            worker.queue.put_nowait(_STOP)  # emptied just now, and no send adds to it

    async def aclose(self) -> None:
        """Deliver what is queued, waiting at most ``close_timeout`` seconds, then stop.

        Alerts still queued or in flight when the time is up are counted in
        ``failed`` by the time this returns.
        """
        await anyio.to_thread.run_sync(self._join, self.close_timeout)
