"""Helpers for the audit tests: file sinks in temp dirs, reading trails, child processes."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from secmw.audit import JSONLFileSink

ROOT = Path(__file__).resolve().parent.parent


def make_sink(path: Path, **options: Any) -> tuple[JSONLFileSink, io.StringIO]:
    """A file sink with a captured fallback stream and no SIGTERM handler."""
    fallback = io.StringIO()
    options.setdefault("handle_sigterm", False)
    options.setdefault("fallback", fallback)
    return JSONLFileSink(path, **options), fallback


def trail_files(path: Path) -> list[Path]:
    """The active file and its rotated files, oldest first."""
    rotated = sorted(p for p in path.parent.glob(path.name + ".*") if p.suffix[1:].isdigit())
    return [*rotated, path] if path.exists() else rotated


def records(paths: Iterable[Path]) -> list[dict[str, Any]]:
    """Every JSON line of ``paths``, in order."""
    out: list[dict[str, Any]] = []
    for path in paths:
        out.extend(json.loads(line) for line in path.read_bytes().splitlines())
    return out


def fallback_records(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll ``condition`` (bounded); AssertionError on timeout."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.002)


def child(code: str, *args: str, **popen: Any) -> subprocess.Popen[str]:
    """Start a Python child process running ``code`` with the source tree importable."""
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src") + os.pathsep + str(ROOT))
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        **popen,
    )


def stop(process: subprocess.Popen[str]) -> None:
    """Kill ``process`` if it still runs, reap it and close its pipes."""
    if process.poll() is None:
        process.kill()
    process.communicate(timeout=10)
