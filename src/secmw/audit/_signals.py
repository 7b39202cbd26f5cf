"""Flush file sinks when the process gets SIGTERM and nobody else handles it.

ASGI servers install their own SIGTERM handler and run lifespan shutdown, which
closes the sink; this covers a process without one (a worker script, a CLI), where
the default action would kill it with events still queued. The handler is only
installed from the main thread and only over the default disposition; after the
flush it restores the default and re-sends the signal, so the exit status is
unchanged.
"""

from __future__ import annotations

import os
import signal
import threading
import weakref
from types import FrameType
from typing import Protocol


class _Closable(Protocol):
    def close(self) -> None: ...


_SINKS: weakref.WeakSet[_Closable] = weakref.WeakSet()
_installed = False


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    for sink in list(_SINKS):
        sink.close()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def flush_on_sigterm(sink: _Closable) -> bool:
    """Close ``sink`` (flushing it) on SIGTERM; False when the handler cannot be installed."""
    global _installed  # noqa: PLW0603 - one process-wide handler
    _SINKS.add(sink)
    if _installed:
        return True
    if threading.current_thread() is not threading.main_thread():
        return False
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return False
    signal.signal(signal.SIGTERM, _on_sigterm)
    _installed = True
    return True
