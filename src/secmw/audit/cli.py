"""``secmw audit verify`` and ``secmw audit tail``.

``verify`` exits 0 when the chain (and, with ``--public-key``, every checkpoint
signature) holds, 1 naming the first bad ``seq`` otherwise, 2 when a file cannot
be read. ``tail`` prints the last lines of a trail as aligned text.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import deque
from typing import Any, BinaryIO

_TAIL_FIELDS = (
    "method",
    "path",
    "rpc_method",
    "tool",
    "status",
    "subject",
    "client",
    "request_id",
    "reason",
)


def register(commands: Any) -> None:
    """Add the ``audit`` command group to ``secmw``'s subparsers."""
    audit = commands.add_parser("audit", help="verify or read an audit trail (JSONL file sink)")
    actions = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")

    verify = actions.add_parser("verify", help="check the hash chain and signed checkpoints")
    verify.add_argument("files", nargs="+", metavar="FILE", help="the active and rotated files")
    verify.add_argument(
        "--public-key",
        action="append",
        help="PEM Ed25519 public key of the checkpoints (repeat it for each key of a rotation)",
    )
    verify.add_argument(
        "--allow-missing-head",
        action="store_true",
        help="accept a trail that starts after seq 1 (its oldest files were removed by keep)",
    )
    verify.set_defaults(handler=_verify)

    tail = actions.add_parser("tail", help="pretty-print the last events of a file")
    tail.add_argument("file", metavar="FILE")
    tail.add_argument(
        "-n", "--lines", type=_count, default=20, help="how many (default 20; 0 with -f: only new)"
    )
    tail.add_argument(
        "-f", "--follow", action="store_true", help="keep printing new events (Ctrl-C stops)"
    )
    tail.set_defaults(handler=_tail)


def _verify(args: argparse.Namespace) -> int:
    from secmw.audit.hashchain import load_public_key  # noqa: PLC0415 - cryptography on demand
    from secmw.audit.verify import verify_files  # noqa: PLC0415

    try:
        keys = [load_public_key(path) for path in args.public_key] if args.public_key else None
        result = verify_files(
            args.files, public_key=keys, allow_missing_head=args.allow_missing_head
        )
    except (OSError, ValueError, TypeError) as exc:
        print(f"secmw audit verify: {exc}", file=sys.stderr)
        return 2
    # File names are escaped: whoever could edit the trail could also name a file so
    # that its terminal escapes print "OK" over the failure and hide the rest.
    for note in result.notes:
        print(f"note: {_show(note)}")
    if not result.ok:
        where = f"seq {result.bad_seq}" if result.bad_seq is not None else "trail"
        print(f"FAILED at {where} ({_show(result.bad_file or '')}): {result.problem}")
        return 1
    summary = f"OK: {result.lines} lines"
    if result.lines:
        summary += f", seq {result.first_seq}..{result.last_seq}"
    if keys is not None:
        summary += f", {result.signed_checkpoints} signed checkpoints verified"
        if result.unsigned_tail:
            summary += f", {result.unsigned_tail} lines after the last checkpoint"
    print(summary)
    return 0


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of lines: {text!r}") from None
    if not 0 <= value <= _MAX_LINES:
        raise argparse.ArgumentTypeError(f"the number of lines must be 0 to {_MAX_LINES}")
    return value


# More lines than any terminal wants; the deque holding them is allocated up front.
_MAX_LINES = 1_000_000


def _tail(args: argparse.Namespace) -> int:
    try:
        handle = open(args.file, "rb")  # noqa: SIM115 - kept open to follow the file
    except OSError as exc:
        print(f"secmw audit tail: {exc.strerror or exc}", file=sys.stderr)
        return 2
    try:
        for raw in deque(handle, maxlen=args.lines):
            # A last line without its newline was never completed by the sink.
            torn = "" if raw.endswith(b"\n") else "(torn, not verified) "
            print(torn + format_line(raw), flush=True)
        if args.follow:
            return _follow(args.file, handle)
    except KeyboardInterrupt:
        pass
    finally:
        handle.close()
    return 0


def _follow(path: str, handle: BinaryIO) -> int:
    """Print lines as they are appended; move to the new file when the sink rotates.

    Returns 2 when what replaced the file cannot be read (a directory, no permission).
    """
    pending = b""
    try:
        while True:
            chunk = handle.read()
            if not chunk and _replaced(path, handle):
                chunk = handle.read()  # lines appended just before the rename
                old = os.fstat(handle.fileno()).st_ino
                handle.close()
                try:
                    handle = open(path, "rb")  # noqa: SIM115 - replaces the followed file
                except OSError as exc:
                    print(f"secmw audit tail: {exc.strerror or exc}", file=sys.stderr)
                    return 2
                chunk += _between(path, old, os.fstat(handle.fileno()).st_ino)
            if not chunk:
                time.sleep(0.2)
                continue
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for raw in lines:
                print(format_line(raw), flush=True)
    finally:
        handle.close()


def _between(path: str, old: int, new: int) -> bytes:
    """The rotated files after inode ``old`` and before inode ``new``, read whole."""
    from secmw.audit._files import rotated_files  # noqa: PLC0415

    # Several rotations can happen between two looks at the path.
    data, after = b"", False
    for name in rotated_files(path):
        try:
            inode = os.stat(name).st_ino
            if inode == new:
                break
            if after:
                with open(name, "rb") as rotated:
                    data += rotated.read()
        except FileNotFoundError:
            continue  # pruned by ``keep`` meanwhile
        after = after or inode == old
    return data


def _replaced(path: str, handle: BinaryIO) -> bool:
    """True when ``path`` now names another file than the one being read (rotation)."""
    try:
        return os.stat(path).st_ino != os.fstat(handle.fileno()).st_ino
    except FileNotFoundError:
        return False  # between the rename and the new file: look again soon


def format_line(raw: bytes) -> str:
    """One audit line as aligned text; every field has its control characters escaped."""
    try:
        record = json.loads(raw)
    except (ValueError, RecursionError):
        record = None
    if not isinstance(record, dict):
        return "(unreadable) " + _show(raw.rstrip(b"\n").decode("utf-8", "backslashreplace"))
    head = (
        f"{_show(record.get('seq', '')):>6} {_show(record.get('time', '')):<32} "
        f"{_show(record.get('severity', '')):<8} {_show(record.get('event', '')):<28}"
    )
    parts = [f"{key}={_value(record[key])}" for key in _TAIL_FIELDS if key in record]
    if "details" in record:
        parts.append(f"details={_show(record['details'])}")
    return (head + " " + " ".join(parts)).rstrip()


def _value(value: Any) -> str:
    """A field's value; quoted (as ASCII JSON) when it holds a space, "=", a quote or non-ASCII.

    A client chooses the path (and the subject, the tool name): unquoted, a path
    such as ``/a status=200 subject=root`` would read as fields of the line, and
    so would look-alikes (U+3164 that shows as a blank, a fullwidth "=").
    """
    text = _show(value)
    if isinstance(value, str) and (
        not text or not text.isascii() or any(char in text for char in ' ="')
    ):
        return json.dumps(value)
    return text


def _show(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    # Escaping keeps CR/LF/ANSI sequences from acting on the terminal.
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


__all__ = ["format_line", "register"]
