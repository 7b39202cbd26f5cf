"""The JSONL file sink: a hash-chained, rotated, fsynced audit file.

The request path only enqueues (``emit`` checks the state, copies the context and
puts the event on a bounded queue); a writer thread does the rest (see
``secmw.audit._writer``). What happens when the file cannot take events follows
NIST SP 800-53 AU-5 and is configured with ``on_failure``:

* ``fail_closed`` (default): while a write fails or the queue is full,
  :attr:`JSONLFileSink.healthy` is false and the pipeline answers 503 to every
  request; the events of those refusals go to the fallback stream.
* ``block``: a full queue makes ``emit`` wait up to ``block_timeout`` seconds
  (back-pressure); a failing write still refuses requests as ``fail_closed``.
* ``fail_open``: requests go on; events the sink cannot take are counted
  (:attr:`JSONLFileSink.diverted`) and written to the fallback stream.

Events accepted on the queue are written in order once the file writes again,
and at shutdown; an fsync error fails the sink for good (no silent retry).
"""

from __future__ import annotations

import atexit
import contextvars
import os
import sys
import threading
import time
from collections.abc import Sequence
from typing import IO, Any, Literal

import anyio

from secmw.audit._signals import flush_on_sigterm
from secmw.audit._writer import FsyncPolicy, Writer
from secmw.audit.base import AuditEvent
from secmw.audit.format import AuditFormatter, Processor
from secmw.audit.hashchain import CheckpointSigner
from secmw.errors import ComponentError

FailurePolicy = Literal["fail_closed", "block", "fail_open"]
Fallback = IO[str] | Literal["stderr"] | None


class JSONLFileSink:
    """Appends audit events as hash-chained JSON lines to ``path``; see the module docs."""

    # emit returns within its own bound: the pipeline needs no deadline around it.
    bounded_emit = True

    __slots__ = (
        "__weakref__",
        "_block_timeout",
        "_capacity",
        "_close_lock",
        "_closed",
        "_fallback",
        "_fallback_lock",
        "_options",
        "_queue_full",
        "_writer",
        "diverted",
        "formatter",
        "on_failure",
        "path",
    )

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        fsync: FsyncPolicy = "batch",
        fsync_every: int = 1000,
        fsync_interval: float = 0.2,
        batch_interval: float = 0.0,
        rotate_bytes: int | None = 64 * 1024 * 1024,
        rotate_seconds: float | None = None,
        keep: int | None = None,
        queue_size: int = 65536,
        on_failure: FailurePolicy = "fail_closed",
        block_timeout: float = 0.2,
        retry_interval: float = 1.0,
        signer: CheckpointSigner | None = None,
        checkpoint_every: int = 10000,
        processors: Sequence[Processor] = (),
        ocsf: bool = False,
        fallback: Fallback = "stderr",
        handle_sigterm: bool = True,
        mode: int = 0o600,
    ) -> None:
        if not 0 <= block_timeout <= _MAX_BLOCK_TIMEOUT:
            # The pipeline awaits emit without a deadline (bounded_emit): this is it.
            raise ValueError(f"block_timeout must be within 0 and {_MAX_BLOCK_TIMEOUT:g} s")
        self.path = os.fspath(path)
        self.formatter = AuditFormatter(processors, ocsf=ocsf)
        self.on_failure: FailurePolicy = on_failure
        self.diverted = 0
        self._capacity = queue_size
        self._block_timeout = block_timeout
        self._fallback = fallback
        self._fallback_lock = threading.Lock()
        # Re-entrant: SIGTERM may arrive while the main thread is inside close().
        self._close_lock = threading.RLock()
        self._closed = False
        self._queue_full = False
        # Kept to open the file again when a closed sink is started again (a
        # server's lifespan restarted, TestClient entered twice).
        self._options: dict[str, Any] = {
            "fsync": fsync,
            "fsync_every": fsync_every,
            "fsync_interval": fsync_interval,
            "batch_interval": batch_interval,
            "rotate_bytes": rotate_bytes,
            "rotate_seconds": rotate_seconds,
            "keep": keep,
            "signer": signer,
            "checkpoint_every": checkpoint_every,
            "retry_interval": retry_interval,
            "mode": mode,
        }
        self._writer = self._open_writer()
        if handle_sigterm:
            flush_on_sigterm(self)

    def _open_writer(self) -> Writer:
        """Open (or continue) the file and start its writer thread."""
        try:
            writer = Writer(
                self.path,
                formatter=self.formatter,
                alert=self._alert,
                divert=self._divert,
                **self._options,
            )
        except OSError as exc:
            raise ComponentError(
                f"cannot open the audit file: {exc.strerror or type(exc).__name__}"
            ) from None
        except ValueError as exc:
            raise ComponentError(f"cannot continue the audit file: {exc}") from None
        if writer.recovered is not None:
            writer.queue.put(
                (
                    AuditEvent(
                        name="sink_recovered",
                        outcome="success",
                        severity="warning",
                        reason="a torn last line was moved aside",
                        details=writer.recovered,
                    ),
                    None,
                )
            )
        writer.start()
        atexit.register(self.close)
        return writer

    async def startup(self) -> None:
        """Open the file again if the sink was closed (a pipeline started once more)."""
        with self._close_lock:
            if not self._closed or self._writer.failed is not None:
                # After an fsync failure nothing written since can be trusted: the
                # sink stays down (503) until the process restarts, as documented.
                return
            self._writer = self._open_writer()
            self._closed = False

    # -- state --------------------------------------------------------------

    @property
    def healthy(self) -> bool:
        """False while requests must be refused (503) under the failure policy."""
        if self.on_failure == "fail_open":
            return True
        writer = self._writer
        if self._closed or writer.failed is not None or writer.error is not None:
            return False
        return self.on_failure == "block" or writer.queue.qsize() < self._capacity

    @property
    def written(self) -> int:
        """Lines written to the file so far (including checkpoints and state events)."""
        return self._writer.written

    @property
    def seq(self) -> int:
        """The ``seq`` of the last line the writer chained."""
        return self._writer.seq

    @property
    def error(self) -> str | None:
        """The current write error (errno name), or the permanent failure, or ``None``."""
        return self._writer.failed or self._writer.error

    # -- the request path -----------------------------------------------------

    async def emit(self, event: AuditEvent) -> None:
        """Enqueue ``event``; when the sink cannot take it, divert it to the fallback."""
        writer = self._writer
        if self._closed or writer.failed is not None or writer.error is not None:
            self._divert(event)
            return
        if writer.queue.qsize() >= self._capacity:
            if self.on_failure == "block":
                deadline = time.monotonic() + self._block_timeout
                # The writer is a thread: no anyio.Event can wake us, so poll briefly.
                while writer.queue.qsize() >= self._capacity and time.monotonic() < deadline:  # noqa: ASYNC110
                    await anyio.sleep(0.001)
            if writer.queue.qsize() >= self._capacity:
                if not self._queue_full:
                    self._queue_full = True
                    self._alert(_queue_full_event(self._capacity, self.on_failure))
                self._divert(event)
                return
            self._queue_full = False
        context = contextvars.copy_context() if self.formatter.needs_context(event) else None
        writer.queue.put((event, context))

    # -- shutdown -------------------------------------------------------------

    async def aclose(self) -> None:
        """Write and fsync everything queued; shielded from cancellation."""
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(self.close)

    def close(self) -> None:
        """Blocking form of :meth:`aclose` (used at exit and on SIGTERM too)."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
            self._writer.stop()
            self._writer.join()
            # An emit racing with close (another thread) may have queued after the stop.
            for event, _ in self._writer.leftovers():
                self._divert(event)
        atexit.unregister(self.close)

    # -- fallback -------------------------------------------------------------

    def _stream(self) -> IO[str] | None:
        return sys.stderr if self._fallback == "stderr" else self._fallback

    def _divert(self, event: AuditEvent | str) -> None:
        """Count an event the file did not take and write it to the fallback stream.

        ``event`` is an event, or an already chained line that could not be written.
        """
        self.diverted += 1
        self._writer.diverted_while_down += 1
        self._write_fallback(event, diverted=True)

    def _alert(self, event: AuditEvent) -> None:
        self._write_fallback(event, diverted=False)

    def _write_fallback(self, event: AuditEvent | str, *, diverted: bool) -> None:
        stream = self._stream()
        if stream is None:
            return
        if isinstance(event, str):
            line = event
        else:
            try:
                line = self.formatter.render(event) or event.to_json()
            except Exception:
                line = event.to_json()
        if diverted and line.startswith("{") and line != "{}":
            line = '{"audit_diverted":true,' + line[1:]
        # Bounded: the SIGTERM handler may have interrupted the main thread inside
        # this lock and now waits for the writer thread, which would wait here.
        locked = self._fallback_lock.acquire(timeout=_FALLBACK_LOCK_WAIT)
        try:
            stream.write(line + "\n")
            stream.flush()
        except (OSError, ValueError):
            pass  # nowhere left to report to; the diverted counter still counts
        finally:
            if locked:
                self._fallback_lock.release()


_FALLBACK_LOCK_WAIT = 1.0
_MAX_BLOCK_TIMEOUT = 10.0


def _queue_full_event(capacity: int, policy: str) -> AuditEvent:
    return AuditEvent(
        name="sys_monitor_disabled",
        outcome="failure",
        severity="critical",
        reason="audit queue full",
        details={"sink": "file", "queue_size": capacity, "policy": policy},
    )


__all__ = ["FailurePolicy", "JSONLFileSink"]
