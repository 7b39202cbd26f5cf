"""Running the CLI's servers: port arguments and start-up failures reported plainly."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable
from typing import Any

# How the CLI's uvicorn servers run secmw apps. Uvicorn would otherwise take the
# client address (and scheme) from X-Forwarded-For of any 127.0.0.1 peer; secmw
# reads forwarding headers itself, only as proxy.trusted_hops says.
UVICORN_OPTIONS: dict[str, Any] = {
    "log_level": "warning",
    "lifespan": "on",
    "proxy_headers": False,
}


def port_number(text: str) -> int:
    """argparse type: a TCP port, 1 to 65535."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port number (1-65535)")
    return port


def serve(run: Callable[[], object], where: str) -> int:
    """Run a server until it stops; a server that could not start is exit code 1, not 3."""
    try:
        run()
    except SystemExit as exc:
        if exc.code in (0, None):
            raise
        return _not_listening(where)
    return 0


def quiet_stdout() -> None:
    """Point stdout at /dev/null, so the exit-time flush of a broken pipe says nothing."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def _not_listening(where: str) -> int:
    print(f"secmw: could not listen on {where} (see the error above)", file=sys.stderr)
    return 1


__all__ = ["UVICORN_OPTIONS", "port_number", "quiet_stdout", "serve"]
