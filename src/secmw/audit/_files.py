"""The audit file on disk: rotated files, and where an existing trail stands at start."""

from __future__ import annotations

import errno
import os
import time
from typing import Any

from secmw.audit.hashchain import GENESIS, Tail, read_tail

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def rotated_files(path: str) -> list[str]:
    """The rotated files of the trail at ``path`` (``path.<12 digits>``), oldest first."""
    folder, name = os.path.split(os.path.abspath(path))
    prefix = name + "."
    found = [
        entry
        for entry in os.listdir(folder)
        if entry.startswith(prefix) and entry[len(prefix) :].isdigit()
    ]
    return [os.path.join(folder, entry) for entry in sorted(found)]


def tail_of(path: str) -> Tail:
    """Where the chain stands at the end of the file ``path``."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        return read_tail(fd, os.fstat(fd).st_size)
    finally:
        os.close(fd)


def resume(path: str, fd: int, mode: int = 0o600) -> tuple[int, str, int, dict[str, Any] | None]:
    """``(seq, prev, size, recovered)`` for continuing the trail open on ``fd``.

    Bytes after the last newline (a line torn by a crash) are copied to
    ``path.torn-<UTC time>-<seq>``, fsynced, and cut off the active file;
    ``recovered`` then describes them for the ``sink_recovered`` event. When the
    active file holds no complete line, the chain stands where the newest
    non-empty rotated file ends. Raises ``ValueError`` for a file that is not a trail.
    """
    seq, prev = 0, GENESIS
    size = os.fstat(fd).st_size
    tail = tail_of(path) if size else None
    if tail is None or tail.good_size == 0:
        rotated = [name for name in rotated_files(path) if os.path.getsize(name)]
        if rotated:
            previous = tail_of(rotated[-1])
            seq, prev = previous.seq, previous.prev
    if tail is None:
        return seq, prev, size, None
    if tail.good_size:
        seq, prev = tail.seq, tail.prev
    if not tail.torn:
        return seq, prev, size, None
    aside = set_aside(path, fd, tail.torn, tail.good_size, seq, mode=mode)
    recovered = {"torn_bytes": len(tail.torn), "moved_to": os.path.basename(aside), "last_seq": seq}
    return seq, prev, tail.good_size, recovered


def check_resumable(path: str) -> None:
    """Read only what :func:`resume` reads; ``ValueError`` for a file that is not a trail.

    For ``secmw check-config``: it must not recover a torn line or chain a line
    onto a trail a running server may be writing, but a file the server would
    refuse at start must not pass either.
    """
    tail = tail_of(path) if os.path.getsize(path) else None
    if tail is None or tail.good_size == 0:
        rotated = [name for name in rotated_files(path) if os.path.getsize(name)]
        if rotated:
            tail_of(rotated[-1])


def set_aside(
    path: str, fd: int, torn: bytes, good_size: int, seq: int, *, mode: int = 0o600
) -> str:
    """Copy a torn last line to ``path.torn-<UTC time>-<seq>`` and cut it off; the copy's name.

    The copy is a new file, never one already there and never through a link:
    whoever can write the directory could otherwise plant a link named as the
    copy will be and have the sink overwrite any file it can write. It gets the
    trail's ``mode``: the torn bytes are part of an audit line.
    """
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    for attempt in range(100):
        aside = f"{path}.torn-{stamp}-{seq}" + (f"-{attempt}" if attempt else "")
        try:
            copy = os.open(aside, flags, mode)
        except FileExistsError:
            continue
        break
    else:
        raise FileExistsError(f"{path}.torn-{stamp}-{seq}: no free name to set a torn line aside")
    try:
        view = memoryview(torn)
        while view:
            view = view[os.write(copy, view) :]
        os.fsync(copy)
    finally:
        os.close(copy)
    os.ftruncate(fd, good_size)
    os.fsync(fd)
    return aside


def read_end(path: str, size: int, span: int) -> bytes:
    """The last ``span`` bytes of the file at ``path`` (empty when it cannot be read).

    Read through a descriptor of its own: the sink's is write-only.
    """
    try:
        with open(path, "rb") as handle:
            handle.seek(max(0, size - span))
            return handle.read(span)
    except OSError:
        return b""


def short_write_errno(fd: int) -> int:
    """EFBIG when the file reached the process's file-size limit, else ENOSPC."""
    try:
        import resource  # noqa: PLC0415 - POSIX only

        limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        if limit != resource.RLIM_INFINITY and os.fstat(fd).st_size >= limit:
            return errno.EFBIG
    except (ImportError, OSError, ValueError):
        pass
    return errno.ENOSPC


def errname(exc: OSError) -> str:
    """The symbolic name of an OS error (``ENOSPC``), for audit details."""
    return errno.errorcode.get(exc.errno or 0, type(exc).__name__)
