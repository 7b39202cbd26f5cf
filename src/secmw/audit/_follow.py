"""The writer's hold on its path: the open file must stay the one ``path`` names.

While the sink runs, someone may rename the active file away (logrotate without
``copytruncate``), delete it, or put another file in its place (``cp`` + ``mv``,
``sed -i``). The writer then continues at the path: in a fresh file, or after
what was put there (its torn last line set aside first), and lines that went
into a deleted file are written again.
"""

from __future__ import annotations

import errno
import os
import stat
import time

from secmw.audit._files import read_end, set_aside

# How often (seconds) a write checks that the path still names the open file,
# and how many bytes written since the last check force one anyway.
_PATH_CHECK = 0.5
_CHECK_BYTES = 8 << 20


class PathFollowing:
    """The part of the audit writer that opens ``path`` and follows it when it moves."""

    path: str
    fd: int
    regular: bool
    size: int
    opened_at: float
    seq: int
    written: int
    _mode: int
    _buf: bytearray
    _checked_at: float
    _since_check: list[bytes]
    _since_check_bytes: int

    def _open(self, *, follow: bool = True, fresh: bool = False) -> tuple[int, bool]:
        """Open ``path`` for appending: ``(fd, whether it is a regular file)``."""
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

    def _check_path(self, force: bool) -> str | None:
        """Continue at ``path`` if it no longer names the open file; why, if so.

        Checked at most every :data:`_PATH_CHECK` seconds (and before a rotation
        and at the end): each ``stat`` hands the GIL over twice, which costs the
        request path more than the check is worth on every write. Lines written
        since the last check are kept until the next one, so those that went into
        a deleted file are written again into the new one. The caller records
        the move in the trail.
        """
        if not self.regular:
            return None
        now = time.monotonic()
        if not (
            force
            or now - self._checked_at >= _PATH_CHECK
            or self._since_check_bytes >= _CHECK_BYTES
        ):
            return None
        self._checked_at = now
        why = self._moved()
        if why is not None:
            self._reopen(replay=why == "deleted")
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


def _tail_lines(path: str, size: int, span: int) -> set[bytes]:
    """The whole lines (newline included) in the last ``span`` bytes of the file at ``path``.

    Exact bytes, not ``seq`` numbers: a file from another trail put at the path
    may have higher ones without holding any of our lines.
    """
    lines = read_end(path, size, span).splitlines(keepends=True) if size else []
    return set(lines[1:] if size > span else lines)  # the first may be cut
