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
import errno
import hashlib
import os
import queue
import re
import stat
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Literal

from secmw.audit._files import read_end, resume, rotated_files, set_aside
from secmw.audit.base import AuditEvent, utc_now
from secmw.audit.format import AuditFormatter
from secmw.audit.hashchain import GENESIS, CheckpointSigner, chain_line, line_hash

FsyncPolicy = Literal["always", "batch", "never"]
Item = tuple[AuditEvent, contextvars.Context | None]

# fdatasync also flushes the size of an appended file; fsync where it is missing.
_sync: Callable[[int], None] = getattr(os, "fdatasync", os.fsync)
_write: Callable[[int, bytes], int] = os.write
_STOP = object()
_MAX_BATCH = 4096
_FLUSH_BYTES = 1 << 20
# How often (seconds) a write checks that the path still names the open file.
_PATH_CHECK = 0.5
# Longest single wait for the queue: a longer timeout (a configured interval of
# centuries) overflows the lock's wait and would crash the writer; waking up
# with nothing due is harmless.
_MAX_WAIT = 3600.0


class FsyncFailed(Exception):
    """An fsync failed: the sink is failed for good."""


def _plain(event: AuditEvent) -> str:
    """The event without processors; a bare record when even that cannot render."""
    try:
        return event.to_json()
    except Exception:  # e.g. a details value that refers to itself
        return AuditEvent(
            name=event.name,
            outcome=event.outcome,
            severity=event.severity,
            time=event.time,
            request_id=event.request_id,
            reason="event could not be rendered",
        ).to_json()


_SEQ = re.compile(rb'\{"seq":(\d+),')


def _tail_lines(path: str, size: int, span: int) -> set[bytes]:
    """The whole lines (newline included) in the last ``span`` bytes of the file at ``path``.

    Exact bytes, not ``seq`` numbers: a file from another trail put at the path
    may have higher ones without holding any of our lines.
    """
    lines = read_end(path, size, span).splitlines(keepends=True) if size else []
    return set(lines[1:] if size > span else lines)  # the first may be cut


def _short_write_errno(fd: int) -> int:
    """EFBIG when the file reached the process's file-size limit, else ENOSPC."""
    try:
        import resource  # noqa: PLC0415 - POSIX only

        limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        if limit != resource.RLIM_INFINITY and os.fstat(fd).st_size >= limit:
            return errno.EFBIG
    except (ImportError, OSError, ValueError):
        pass
    return errno.ENOSPC


def _errname(exc: OSError) -> str:
    return errno.errorcode.get(exc.errno or 0, type(exc).__name__)


class Writer(threading.Thread):
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
                self._resume()
            except BaseException:
                os.close(self.fd)
                raise

    # -- start ------------------------------------------------------------

    def _open(self, *, follow: bool = True, fresh: bool = False) -> tuple[int, bool]:
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
        if not follow:
            flags |= getattr(os, "O_NOFOLLOW", 0)
        if fresh:
            flags |= os.O_EXCL
        # Non-blocking to open: a FIFO without a reader would otherwise block the
        # start forever (it fails with ENXIO instead); writes block again after.
        fd = os.open(self.path, flags | getattr(os, "O_NONBLOCK", 0), self._mode)
        os.set_blocking(fd, True)
        return fd, stat.S_ISREG(os.fstat(fd).st_mode)

    def _resume(self) -> None:
        """Continue the chain of an existing trail; a torn last line is moved aside."""
        state = resume(self.path, self.fd, self._mode)
        self.seq, self.prev, self.size, self.recovered = state

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
                line = chain_line(seq + 1, prev, _plain(event))
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
        if not self._buf:
            if check and self._check_path(True) is not None:
                self._flush()  # the line recording the break
            return
        self._check_path(check)
        data = bytes(self._buf)
        written = _write(self.fd, data)
        if written != len(data):
            raise OSError(_short_write_errno(self.fd), "short write")
        self.size += written
        self.written += data.count(b"\n")
        self._buf.clear()
        if self.regular:
            self._since_check.append(data)
            self._since_check_bytes += len(data)
        if self._fsync == "always":
            self._sync_now()

    def _check_path(self, force: bool) -> str | None:
        """Continue at ``path`` if it no longer names the open file; why, if so.

        Checked at most every :data:`_PATH_CHECK` seconds (and before a rotation
        and at the end): each ``stat`` hands the GIL over twice, which costs the
        request path more than the check is worth on every write. Lines written
        since the last check are kept until the next one, so those that went into
        a deleted file are written again into the new one.
        """
        if not self.regular:
            return None
        now = time.monotonic()
        if not (
            force
            or now - self._checked_at >= _PATH_CHECK
            or self._since_check_bytes >= _FLUSH_BYTES * 8
        ):
            return None
        self._checked_at = now
        why = self._moved()
        if why is not None:
            self._reopen(replay=why == "deleted")
            # Pending with the rest: a failed write keeps it, like the lines before it.
            self._note_moved(why)
        self._since_check, self._since_check_bytes = [], 0
        return why

    def _moved(self) -> str | None:
        """Why ``path`` no longer names the open file (deleted, or replaced), if it does not."""
        mine = os.fstat(self.fd)
        try:
            there = os.stat(self.path)
        except FileNotFoundError:
            # Gone from the path: deleted, or renamed with nothing in its place.
            return "replaced" if mine.st_nlink else "deleted"
        if (there.st_ino, there.st_dev) != (mine.st_ino, mine.st_dev):
            # Renamed away (its lines are still there), or deleted and recreated.
            return "replaced" if mine.st_nlink else "deleted"
        return None

    def _reopen(self, *, replay: bool) -> None:
        """Continue at ``path``; lines that went into a deleted file are written again.

        What was put at the path while the sink ran must be a regular file, not a
        link (to /dev/null, or to a file the sink would then append to) nor a
        device: anything else is a write error, retried until the path is fixed.
        """
        fd, regular = self._open(follow=False)
        if not regular:
            os.close(fd)
            raise OSError(errno.EINVAL, "the audit path is no longer a regular file")
        self.regular = regular
        os.close(self.fd)
        self.fd, self.size, self.opened_at = fd, os.fstat(fd).st_size, time.monotonic()
        if self.regular and self.size:
            self._torn_aside()
        if replay and self._since_check:
            # Pending again, ahead of what is queued: a write error keeps them
            # pending (and retried) like any other line. A copy put in the old
            # file's place (cp + mv, sed -i) may hold some of them already.
            held = b"".join(self._since_check)
            present = _tail_lines(self.path, self.size, len(held) + (1 << 16))
            lines = [line for line in held.splitlines(keepends=True) if line not in present]
            self._buf[:0] = b"".join(lines)
            self.written -= len(lines)  # counted when first written

    def _torn_aside(self) -> None:
        """A file put at the path that ends in a torn line: the torn part moved aside.

        As at start-up: our lines must not be glued to it (one unreadable line).
        """
        span = min(self.size, 1 << 16)
        tail = read_end(self.path, self.size, span)
        if not tail or tail.endswith(b"\n"):
            return
        cut = tail.rfind(b"\n")
        if cut == -1 and span < self.size:
            return  # one line over 64 KiB: left as it is
        torn = tail[cut + 1 :]
        set_aside(self.path, self.fd, torn, self.size - len(torn), self.seq, mode=self._mode)
        self.size -= len(torn)

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
            return _plain(event)

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
                raise FsyncFailed(f"fsync failed: {_errname(exc)}") from exc
        self._unsynced = 0

    def _sync_dir(self) -> None:
        if not self.regular:
            return
        folder = os.path.dirname(os.path.abspath(self.path))
        fd = os.open(folder, os.O_RDONLY)
        try:
            _sync(fd)
        except OSError as exc:
            raise FsyncFailed(f"fsync of the directory failed: {_errname(exc)}") from exc
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
            self.error = _errname(exc)
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
