"""The single writer thread of the JSONL file sink.

It owns the file descriptor, the chain state (``seq``, ``prev``), rotation and
fsync. The request path only puts ``(event, context)`` pairs on a queue; this
thread renders them (inside the request's copied context, so context-reading
processors work), chains them, and appends whole lines with one ``write`` per
batch on an ``O_APPEND`` descriptor: a line is never split over two writes.
With ``batch_interval`` above 0 it lets events gather that long after each write:
fewer wake-ups, so fewer GIL hand-overs, but longer ones (docs/audit.md weighs it).

States: *ok*; *error* (a write failed: the partial bytes are cut off, the lines
stay pending and the write is retried every ``retry_interval`` seconds); *failed*
(an fsync failed: after that the kernel may have dropped dirty pages, so nothing
can be trusted and the sink never retries; pending events go to the fallback
at close).
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import os
import queue
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Literal

from secmw.audit._files import errname, resume, rotated_files, short_write_errno
from secmw.audit._follow import PathFollowing
from secmw.audit.base import AuditEvent, utc_now
from secmw.audit.format import AuditFormatter, plain_line
from secmw.audit.hashchain import GENESIS, CheckpointSigner, chain_line, line_hash

FsyncPolicy = Literal["always", "batch", "never"]
Item = tuple[AuditEvent, contextvars.Context | None]

# fdatasync also flushes the size of an appended file; fsync where it is missing.
_sync: Callable[[int], None] = getattr(os, "fdatasync", os.fsync)
_write: Callable[[int, bytes], int] = os.write
_STOP = object()
_MAX_BATCH = 4096
_FLUSH_BYTES = 1 << 20
# Longest single wait for the queue: a longer timeout (a configured interval of
# centuries) overflows the lock's wait and would crash the writer; waking up
# with nothing due is harmless.
_MAX_WAIT = 3600.0


class FsyncFailed(Exception):
    """An fsync failed: the sink is failed for good."""


_SEQ = re.compile(rb'\{"seq":(\d+),')


class Writer(PathFollowing, threading.Thread):
    """Drains the queue into the file; see the module docstring for its states."""

    def __init__(
        self,
        path: str,
        *,
        formatter: AuditFormatter,
        alert: Callable[[AuditEvent], None],
        divert: Callable[[AuditEvent | str], None],
        fsync: FsyncPolicy,
        fsync_every: int,
        fsync_interval: float,
        batch_interval: float,
        rotate_bytes: int | None,
        rotate_seconds: float | None,
        keep: int | None,
        signer: CheckpointSigner | None,
        checkpoint_every: int,
        retry_interval: float,
        mode: int,
    ) -> None:
        super().__init__(name="secmw-audit-writer", daemon=True)
        self.path = path
        self.queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._formatter = formatter
        self._alert = alert
        self._divert = divert
        self._fsync = fsync
        self._fsync_every = fsync_every
        self._fsync_interval = fsync_interval
        self._batch_interval = batch_interval
        self._wake = threading.Event()
        self._backed_up = False
        self._rotate_bytes = rotate_bytes
        self._rotate_seconds = rotate_seconds
        self._keep = keep
        self._signer = signer
        self._checkpoint_every = checkpoint_every
        self._retry_interval = retry_interval
        self._mode = mode
        self._backlog: deque[Item] = deque()
        self._buf = bytearray()
        self._checked_at = 0.0
        self._since_check: list[bytes] = []
        self._since_check_bytes = 0
        self._unsynced = 0
        self._dirty_since = 0.0
        self._since_checkpoint = 0
        self._retry_at = 0.0
        self._renamed = False
        self.error: str | None = None
        self.failed: str | None = None
        self.written = 0
        self.diverted_while_down = 0
        self.fd, self.regular = self._open()
        self.size = 0
        self.opened_at = time.monotonic()
        self.seq, self.prev = 0, GENESIS
        self.recovered: dict[str, Any] | None = None
        if self.regular:
            try:
                # Continue the chain of an existing trail; a torn last line is moved aside.
                state = resume(self.path, self.fd, self._mode)
                self.seq, self.prev, self.size, self.recovered = state
            except BaseException:
                os.close(self.fd)
                raise

    def rotated_files(self) -> list[str]:
        """The rotated files of this sink, oldest first."""
        return rotated_files(self.path)

    # -- the loop -----------------------------------------------------------

    def run(self) -> None:
        """Drain the queue until the stop marker; never raises."""
        try:
            while True:
                stop = self._collect(self._timeout())
                self._work(final=stop)
                if stop:
                    return
                if self._batch_interval and not self._backed_up:
                    # Let events gather before the next write (fewer GIL hand-overs);
                    # not after a full batch: then the queue is behind.
                    self._wake.wait(self._batch_interval)
                    self._wake.clear()
        except BaseException as exc:  # a bug here must not pass silently
            self.failed = f"writer crashed: {type(exc).__name__}"
            self._alert(self._state_event("sys_monitor_disabled", self.failed, permanent=True))
            self._spill()
        finally:
            if self.fd >= 0:
                os.close(self.fd)
                self.fd = -1

    def _timeout(self) -> float | None:
        deadlines = []
        now = time.monotonic()
        if self.error is not None and self.failed is None:
            # Down: nothing to sync or rotate before the retry (lines chained before
            # the failed write would otherwise make every wait a zero-length one).
            return min(max(0.0, self._retry_at - now), _MAX_WAIT)
        if self._unsynced and self._fsync == "batch":
            deadlines.append(self._dirty_since + self._fsync_interval)
        if self._rotate_seconds is not None and self.size:
            deadlines.append(self.opened_at + self._rotate_seconds)
        if not deadlines:
            return None
        return min(max(0.0, min(deadlines) - now), _MAX_WAIT)

    def _collect(self, timeout: float | None) -> bool:
        """Move queued items to the backlog; True when the stop marker came."""
        self._backed_up = False
        get = self.queue.get
        try:
            item = get(timeout=timeout) if timeout is None or timeout > 0 else get(block=False)
        except queue.Empty:
            return False
        count = 0
        while True:
            if item is _STOP:
                self._drain_rest()
                return True
            self._backlog.append(item)
            count += 1
            if count >= _MAX_BATCH:
                self._backed_up = True
                return False
            try:
                item = get(block=False)
            except queue.Empty:
                return False

    def _drain_rest(self) -> None:
        while True:
            try:
                item = self.queue.get(block=False)
            except queue.Empty:
                return
            if item is not _STOP:
                self._backlog.append(item)

    def _work(self, *, final: bool) -> None:
        if self.failed is not None:
            if final:
                self._spill()
            return
        if self.error is not None and not final and time.monotonic() < self._retry_at:
            return
        try:
            if self.error is not None:
                self._recover()
            while self._backlog:
                if self._rotation_due():
                    self._rotate()
                limit = _FLUSH_BYTES
                if self._rotate_bytes is not None and self.regular:
                    limit = min(limit, self._rotate_bytes - self.size)
                self._append_run(limit)
                if len(self._buf) >= _FLUSH_BYTES:
                    self._flush()
            if final:
                self._checkpoint()
            self._flush(check=final)
            if final or self._sync_due():
                self._sync_now()
            if final:
                self._sync_dir()
            elif self._rotation_due():
                self._rotate()
        except FsyncFailed as exc:
            self.failed = str(exc)
            self._alert(self._state_event("sys_monitor_disabled", self.failed, permanent=True))
            if final:
                self._spill()
        except OSError as exc:
            self._enter_error(exc)
            if final:
                self._spill()

    # -- lines --------------------------------------------------------------

    def _append_run(self, limit: int) -> None:
        """Render and chain queued events into the buffer until it holds ``limit`` bytes.

        The per-event loop of the writer, so it keeps its state in locals.
        """
        backlog, buf, render = self._backlog, self._buf, self._formatter.render
        signer, sha256 = self._signer, hashlib.sha256
        seq, prev, added = self.seq, self.prev, 0
        while backlog and len(buf) < limit:
            event, context = backlog.popleft()
            try:
                rendered = render(event) if context is None else context.run(render, event)
                if rendered is None:
                    continue
                line = chain_line(seq + 1, prev, rendered)
            except Exception:
                # A failing user processor (or a line that cannot be encoded) must not
                # cost the event, nor stop the writer: keep the plain rendering.
                line = chain_line(seq + 1, prev, plain_line(event))
            seq += 1
            prev = sha256(line).hexdigest()
            buf += line
            buf += b"\n"
            added += 1
            if signer is not None:
                self._since_checkpoint += 1
                if self._since_checkpoint >= self._checkpoint_every:
                    self.seq, self.prev = seq, prev
                    self._count(added)
                    added = 0
                    self._checkpoint()
                    seq, prev = self.seq, self.prev
        self.seq, self.prev = seq, prev
        self._count(added)

    def _count(self, added: int) -> None:
        if added:
            if not self._unsynced:
                self._dirty_since = time.monotonic()
            self._unsynced += added

    def _add_line(self, rendered: str) -> None:
        self.seq += 1
        line = chain_line(self.seq, self.prev, rendered)
        self.prev = line_hash(line)
        self._buf += line
        self._buf += b"\n"
        self._count(1)

    def _checkpoint(self) -> None:
        if self._signer is None or self._since_checkpoint == 0:
            return
        self._since_checkpoint = 0
        self._add_line(self._signer.render(self.seq + 1, self.prev, utc_now()))

    # -- I/O ----------------------------------------------------------------

    def _flush(self, *, check: bool = False) -> None:
        """Write the pending lines in one call; a short write is an error (disk full).

        ``check`` forces the path check (before a rotation, at shutdown), even
        with nothing to write: lines written since the last check may need
        writing again.
        """
        if not self._buf and not check:
            return
        why = self._check_path(check)
        if why is not None:
            # Pending with the rest: a failed write keeps it, like the lines before it.
            self._note_moved(why)
        if not self._buf:
            return
        data = bytes(self._buf)
        written = _write(self.fd, data)
        if written != len(data):
            raise OSError(short_write_errno(self.fd), "short write")
        self.size += written
        self.written += data.count(b"\n")
        self._buf.clear()
        if self.regular:
            self._since_check.append(data)
            self._since_check_bytes += len(data)
        if self._fsync == "always":
            self._sync_now()

    def _note_moved(self, why: str) -> None:
        """Record, in the new file and the fallback, that the chain continues here."""
        head = _SEQ.match(self._buf)
        first = int(head.group(1)) if head else self.seq + 1  # the new file's first line
        event = AuditEvent(
            name="sys_error",
            outcome="failure",
            severity="critical",
            reason=f"audit file {why} while in use; the chain continues in a new file",
            details={"sink": "file", "error": why, "continues_at_seq": first},
        )
        self._add_line(self._own_line(event))
        self._alert(event)

    def _own_line(self, event: AuditEvent) -> str:
        """The writer's own event rendered: a failing user processor must not crash it."""
        try:
            return self._formatter.render(event) or event.to_json()
        except Exception:
            return plain_line(event)

    def _sync_due(self) -> bool:
        if not self._unsynced or self._fsync != "batch":
            return False
        return (
            self._unsynced >= self._fsync_every
            or time.monotonic() - self._dirty_since >= self._fsync_interval
        )

    def _sync_now(self) -> None:
        if not self._unsynced:
            return
        if self.regular:
            try:
                _sync(self.fd)
            except OSError as exc:
                raise FsyncFailed(f"fsync failed: {errname(exc)}") from exc
        self._unsynced = 0

    def _sync_dir(self) -> None:
        if not self.regular:
            return
        folder = os.path.dirname(os.path.abspath(self.path))
        fd = os.open(folder, os.O_RDONLY)
        try:
            _sync(fd)
        except OSError as exc:
            raise FsyncFailed(f"fsync of the directory failed: {errname(exc)}") from exc
        finally:
            os.close(fd)

    def _rotation_due(self) -> bool:
        if not self.regular or self.size + len(self._buf) == 0:
            return False
        if self._rotate_bytes is not None and self.size + len(self._buf) >= self._rotate_bytes:
            return True
        return (
            self._rotate_seconds is not None
            and time.monotonic() - self.opened_at >= self._rotate_seconds
        )

    def _rotate(self) -> None:
        """Close the file with a checkpoint and fsync, rename it, start a new one."""
        self._checkpoint()
        self._flush(check=True)
        self._unsynced = max(self._unsynced, 1)
        self._sync_now()
        try:
            os.rename(self.path, f"{self.path}.{self.seq:012d}")
        except FileNotFoundError:
            # Moved away (or deleted) between the check and the rename: not ours to
            # rotate any more. Continue at the path, as a check would have.
            why = self._moved() or "replaced"
            self._reopen(replay=why == "deleted")
            self._note_moved(why)
            self._since_check, self._since_check_bytes = [], 0
            self._flush()
            return
        self._renamed = True
        self._open_next()

    def _open_next(self) -> None:
        """Second half of a rotation; retried on its own if opening the new file failed.

        The new file is created here, never opened through a link or taken over:
        whoever can write the directory could put either at the path right after
        the rename. Anything there is a write error until it is gone.
        """
        fd, _ = self._open(follow=False, fresh=True)
        os.close(self.fd)
        self.fd, self.size, self.opened_at = fd, 0, time.monotonic()
        # What was written before is in the rotated file now, not to be written again.
        self._since_check, self._since_check_bytes = [], 0
        self._renamed = False
        self._sync_dir()
        if self._keep is not None:
            for old in self.rotated_files()[: -self._keep or None]:
                os.unlink(old)

    def _enter_error(self, exc: OSError) -> None:
        self._cut_partial()
        self._retry_at = time.monotonic() + self._retry_interval
        if self.error is None:
            self.error = errname(exc)
            self._alert(self._state_event("sys_monitor_disabled", self.error, permanent=False))

    def _cut_partial(self) -> None:
        """Remove the bytes of a failed write, so no torn line stays in the file."""
        if self.regular:
            # If this fails too, the start-up recovery moves the torn line aside.
            with contextlib.suppress(OSError):
                os.ftruncate(self.fd, self.size)

    def _recover(self) -> None:
        self._cut_partial()
        if self._renamed:
            self._open_next()
        # The path checked now, not when the half-second check is next due: after a
        # link put at the path failed the check, the open file is the old one, and
        # writing there (unlinked, or renamed away) is no recovery.
        self._flush(check=True)
        was, self.error = self.error, None
        event = self._state_event("sys_monitor_enabled", was or "", permanent=False)
        self._add_line(self._own_line(event))
        self._alert(event)
        self.diverted_while_down = 0

    def _state_event(self, name: str, error: str, *, permanent: bool) -> AuditEvent:
        details: dict[str, Any] = {"sink": "file", "error": error, "permanent": permanent}
        if name == "sys_monitor_enabled":
            details["diverted"] = self.diverted_while_down
        return AuditEvent(
            name=name,
            outcome="failure" if name == "sys_monitor_disabled" else "success",
            severity="critical" if name == "sys_monitor_disabled" else "warning",
            reason="audit file sink " + ("failed" if permanent else "write error")
            if name == "sys_monitor_disabled"
            else "audit file sink writes again",
            details=details,
        )

    def _spill(self) -> None:
        """Hand every event that did not reach the file to the fallback, in order."""
        for raw in bytes(self._buf).splitlines():
            self._divert(raw.decode("utf-8", "replace"))
        self._buf.clear()
        while self._backlog:
            self._divert(self._backlog.popleft()[0])

    def leftovers(self) -> list[Item]:
        """Items still queued after the thread exited."""
        items: list[Item] = []
        while True:
            try:
                item = self.queue.get(block=False)
            except queue.Empty:
                return items
            if item is not _STOP:
                items.append(item)

    def stop(self) -> None:
        """Ask the thread to write everything queued, fsync and exit."""
        self.queue.put(_STOP)
        self._wake.set()

    def nudge(self) -> None:
        """End the current wait between batches now (the benchmarks use it to drain)."""
        self._wake.set()
