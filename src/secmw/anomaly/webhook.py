"""A webhook alert sink: JSON POSTs from a bounded queue, with retries and backoff.

Delivery runs on one worker thread with a synchronous httpx client, so it works
the same on asyncio and trio and never holds up a request: ``send`` only
enqueues. When the queue is full the alert is dropped and counted (an alert
flood must not become a memory problem). Needs the ``gateway`` extra (httpx).
"""

from __future__ import annotations

import json
import queue
import sys
import threading
from collections.abc import Mapping
from typing import Any

import anyio

from secmw.anomaly.base import Alert
from secmw.errors import ConfigError

_STOP = object()


class _Worker:
    """One delivery worker: its queue, stop flag, HTTP client and thread."""

    __slots__ = ("client", "queue", "stop", "thread")

    thread: threading.Thread  # set by the sink, which runs the worker on it

    def __init__(self, alerts: queue.Queue[Any], stop: threading.Event, client: Any) -> None:
        self.queue = alerts
        self.stop = stop
        self.client = client


class WebhookAlertSink:
    """POST each alert as JSON to ``url``; retry 5xx, 429 and network errors with backoff.

    Attempt *n* (from 0) that fails waits ``backoff * 2**n`` seconds (at most
    ``max_backoff``) before the next; after ``retries`` retries the alert is
    dropped and counted in ``failed``.
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
        self._client_type = httpx.Client
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
        while True:
            item = worker.queue.get()
            if item is _STOP:
                return
            if worker.stop.is_set():
                # Closed while items were still queued: they are counted, not sent. A
                # close that found the queue full queued no stop marker: end when empty.
                self.failed += 1
                if worker.queue.empty():
                    return
                continue
            try:
                self._deliver(worker, item)
            except Exception:  # e.g. the client closed under a delivery at shutdown
                self.failed += 1

    def _deliver(self, worker: _Worker, alert: Alert) -> None:
        body = json.dumps(alert.to_dict(), ensure_ascii=True, default=str).encode()
        for attempt in range(self.retries + 1):
            try:
                response = worker.client.post(
                    self.url, content=body, headers={"content-type": "application/json"}
                )
            except self._http_error:
                retry = True
            else:
                if response.status_code < 300:
                    self.delivered += 1
                    return
                retry = response.status_code >= 500 or response.status_code == 429
            if not retry or attempt == self.retries:
                break
            if worker.stop.wait(min(self.max_backoff, self.backoff * 2**attempt)):
                break
        self.failed += 1
        print(f"secmw: alert webhook delivery failed ({alert.anomaly.event})", file=sys.stderr)

    def _join(self, timeout: float) -> _Worker | None:
        with self._lock:
            # From here on sends are dropped until startup; this worker is stopped.
            self._closed = True
            worker, self._worker = self._worker, None
            if worker is not None:
                self._last = worker
        if worker is None:
            return None
        thread = worker.thread
        try:
            worker.queue.put(_STOP, timeout=timeout)
        except queue.Full:
            worker.stop.set()
        thread.join(timeout)
        if thread.is_alive():
            # Out of time: stop retrying, count what is left, close once it ends.
            worker.stop.set()
            thread.join(timeout)
        worker.client.close()
        return worker

    async def aclose(self) -> None:
        """Deliver what is queued (waiting at most ``close_timeout`` seconds), then stop.

        Alerts still queued when the time is up are counted in ``failed``.
        """
        stopped = await anyio.to_thread.run_sync(self._join, self.close_timeout)
        # Only the worker this call stopped: a second aclose must not cut the first's drain.
        if stopped is not None and stopped.thread.is_alive():
            stopped.stop.set()
