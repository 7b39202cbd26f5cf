"""``secmw scan``: redact a file or stdin to stdout and report what was found.

Exit codes: 0 nothing found, 1 secrets found (and redacted), 2 usage or
configuration error (unreadable file, bad ``--config``).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from secmw.context import Finding
from secmw.errors import ConfigError

_MEDIA = {"text": "text/plain", "json": "application/json", "sse": "text/event-stream"}
# The most ``scan`` reads (bytes): the text, its redacted copy and the findings are
# all held in memory, and /dev/zero must not exhaust it.
MAX_INPUT = 256 << 20


def register(commands: Any) -> None:
    """Add the ``scan`` subcommand to the ``secmw`` parser."""
    scan = commands.add_parser(
        "scan", help="redact secrets from a file or stdin (exit 1 when any is found)"
    )
    scan.add_argument("file", nargs="?", default="-", help="the file to scan; - or none for stdin")
    scan.add_argument(
        "--json", action="store_true", help="print the findings as JSON instead of the text"
    )
    scan.add_argument(
        "--format", choices=sorted(_MEDIA), help="how to parse the input (default: by extension)"
    )
    scan.add_argument("--config", help="a secmw configuration whose [redact] section to use")
    # 1 means secrets found: an output that cannot be written is an error (2).
    scan.set_defaults(handler=run, output_error_code=2)


def _redactor(config_file: str | None) -> Any:
    from secmw.config import load_config  # noqa: PLC0415 - avoids an import cycle
    from secmw.redact.build import build_redactor  # noqa: PLC0415

    section = load_config(config_file).redact if config_file else None
    if section is None or not section.enabled:
        from secmw.redact.config import RedactConfig  # noqa: PLC0415

        data = section.model_dump() if section is not None else {}
        section = RedactConfig.model_validate({**data, "enabled": True})
    return build_redactor(section)


def _media(args: argparse.Namespace) -> str:
    if args.format:
        return _MEDIA[args.format]
    if args.file.endswith(".json"):
        return _MEDIA["json"]
    return _MEDIA["text"]


def _line_col(text: str, offset: int) -> tuple[int, int]:
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


def _report(text: str, findings: list[Finding]) -> list[dict[str, Any]]:
    rows = []
    for finding in findings:
        start = finding.start or 0
        line, column = _line_col(text, start)
        rows.append(
            {
                "type": finding.kind,
                "line": line,
                "column": column,
                "start": finding.start,
                "end": finding.end,
                "fingerprint": finding.fingerprint,
            }
        )
    return rows


def run(args: argparse.Namespace) -> int:
    """Handle ``secmw scan``; returns the exit code."""
    try:
        redactor = _redactor(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    try:
        if args.file == "-":
            if sys.stdin is None:
                print("secmw scan: no standard input (give a file)", file=sys.stderr)
                return 2
            raw = sys.stdin.buffer.read(MAX_INPUT + 1)
        else:
            with open(args.file, "rb") as handle:
                raw = handle.read(MAX_INPUT + 1)
    except OSError as exc:
        print(f"secmw scan: cannot read {args.file}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except MemoryError:
        print(f"secmw scan: not enough memory to read {args.file}", file=sys.stderr)
        return 2
    if len(raw) > MAX_INPUT:
        print(f"secmw scan: {args.file} is over {MAX_INPUT >> 20} MiB; split it", file=sys.stderr)
        return 2
    text = raw.decode("utf-8", "surrogateescape")
    redacted, found = redactor.redact(text, _media(args))
    rows = _report(text, list(found))
    if args.json:
        json.dump({"file": args.file, "count": len(rows), "findings": rows}, sys.stdout)
        sys.stdout.write("\n")
    else:
        sys.stdout.buffer.write(redacted.encode("utf-8", "surrogateescape"))
        sys.stdout.flush()
        for row in rows:
            print(
                f"{args.file}:{row['line']}:{row['column']}: {row['type']} "
                f"(fingerprint {row['fingerprint']})",
                file=sys.stderr,
            )
    return 1 if rows else 0
