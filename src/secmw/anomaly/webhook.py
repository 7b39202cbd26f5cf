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
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max_queue)
        self._stop = threading.Event()
        # Kept to make the client again when the sink is used after aclose (a
        # pipeline started again: a lifespan restarted).
        self._client_options: dict[str, Any] = {
            "timeout": timeout,
            "headers": dict(headers or {}),
            "transport": transport,
        }
        self._client = httpx.Client(**self._client_options)
        self._http_error = httpx.HTTPError
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def depth(self) -> int:
        """Alerts waiting for delivery."""
        return self._queue.qsize()

    async def send(self, alert: Alert) -> None:
        """Queue ``alert`` for delivery; a full queue drops it."""
        self._start()
        try:
            self._queue.put_nowait(alert)
        except queue.Full:
            self.dropped += 1

    def _start(self) -> None:
        thread = self._thread
        if thread is not None and thread.is_alive():
            return
        with self._lock:
            thread = self._thread
            if thread is not None and thread.is_alive():
                return
            if self._client.is_closed:  # closed by an earlier aclose: used again now
                self._client = type(self._client)(**self._client_options)
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._run, name="secmw-alert-webhook", daemon=True
            )
            self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            if self._stop.is_set():
                # Closed while items were still queued: they are counted, not sent.
                self.failed += 1
                continue
            try:
                self._deliver(item)
            except Exception:  # e.g. the client closed under a delivery at shutdown
                self.failed += 1

    def _deliver(self, alert: Alert) -> None:
        body = json.dumps(alert.to_dict(), ensure_ascii=True, default=str).encode()
        for attempt in range(self.retries + 1):
            try:
                response = self._client.post(
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
            if self._stop.wait(min(self.max_backoff, self.backoff * 2**attempt)):
                break
        self.failed += 1
        print(f"secmw: alert webhook delivery failed ({alert.anomaly.event})", file=sys.stderr)

    def _join(self, timeout: float) -> None:
        thread = self._thread
        if thread is not None:
            try:
                self._queue.put(_STOP, timeout=timeout)
            except queue.Full:
                self._stop.set()
            thread.join(timeout)
            if thread.is_alive():
                # Out of time: stop retrying, count what is left, close once it ends.
                self._stop.set()
                thread.join(timeout)
        self._client.close()

    async def aclose(self) -> None:
        """Deliver what is queued (waiting at most ``close_timeout`` seconds), then stop.

        Alerts still queued when the time is up are counted in ``failed``.
        """
        await anyio.to_thread.run_sync(self._join, self.close_timeout)
        if self._thread is not None and self._thread.is_alive():
            self._stop.set()
