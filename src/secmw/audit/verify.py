"""Verifying an audit trail: the hash chain across rotated files, and checkpoints.

The files may be given in any order; they are put in chain order by the ``seq``
of their first line. The first file may start after seq 1 (older files pruned):
its first line is then taken as the anchor. Everything after it must chain.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from secmw.audit.hashchain import CHECKPOINT_EVENT, GENESIS, key_id, line_hash, signature_valid


@dataclass(slots=True)
class VerifyResult:
    """What :func:`verify_files` found; ``ok`` is false at the first problem."""

    ok: bool = True
    lines: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    checkpoints: int = 0
    signed_checkpoints: int = 0
    unsigned_tail: int = 0
    bad_seq: int | None = None
    bad_file: str | None = None
    problem: str | None = None
    notes: list[str] = field(default_factory=list)

    def fail(self, seq: int | None, path: str, problem: str) -> VerifyResult:
        """Record the first problem and return self."""
        self.ok = False
        self.bad_seq = seq
        self.bad_file = path
        self.problem = problem
        return self


# path.torn-<UTC time>-<seq>, and -<attempt> when that name was taken.
_SET_ASIDE = re.compile(r"\.torn-\d{8}T\d{6}Z-\d+(?:-\d+)?$")


def _holds_a_newline(path: str) -> bool:
    """True when the file has a newline: then it is not a torn line the sink set aside.

    The sink sets aside only the bytes after the last newline; a file of whole
    lines under that name is a trail file renamed to be skipped.
    """
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 16):
            if b"\n" in chunk:
                return True
    return False


def _first_seq(path: str) -> int:
    with open(path, "rb") as handle:
        first = handle.readline()
    try:
        return int(json.loads(first)["seq"])
    except (ValueError, KeyError, TypeError, OverflowError, RecursionError):
        return -1


def _regular_files(paths: Iterable[str | os.PathLike[str]]) -> list[str]:
    """The names of ``paths``; OSError for one that is not a regular file.

    A FIFO would be waited on forever, ``/dev/zero`` read until memory runs out.
    """
    names = [os.fspath(p) for p in paths]
    for name in names:
        if not stat.S_ISREG(os.stat(name).st_mode):
            raise OSError(f"{name!r} is not a regular file")
    return names


def verify_files(
    paths: Iterable[str | os.PathLike[str]],
    *,
    public_key: Ed25519PublicKey | Sequence[Ed25519PublicKey] | None = None,
    allow_missing_head: bool = False,
) -> VerifyResult:
    """Check ``seq`` and ``prev`` of every line, and checkpoint signatures when a key is given.

    ``public_key`` may be several keys (the checkpoint key was rotated): each
    checkpoint is checked with the key its ``key_id`` names, and one signed by a
    key not given fails. The trail must start at seq 1 unless
    ``allow_missing_head`` (its oldest files were removed by ``keep``); an empty
    trail fails; a torn last line is accepted only at the end of the newest file
    (a crash mid-write), never inside a rotated one. ``OSError`` when a file cannot
    be read or is not a regular file.
    """
    keys = _by_id(public_key)
    result = VerifyResult()
    names = _regular_files(paths)
    for name in names:
        if _SET_ASIDE.search(name):
            if _holds_a_newline(name):
                return result.fail(
                    None, name, "named as a torn line set aside, but holds whole lines (renamed?)"
                )
            # Written by the sink at recovery: the bytes of a torn line, outside the chain.
            result.notes.append(f"{name}: a torn line set aside by the sink (not in the chain)")
    # A file whose first line cannot be read (the active file after a crash in its
    # first write) goes last, where a torn line is allowed.
    files = sorted(
        (name for name in names if not _SET_ASIDE.search(name)),
        key=lambda name: _first_seq(name) % (1 << 62),
    )
    expected_seq: int | None = None
    prev_hash: str | None = None
    since_checkpoint = 0
    for number, path in enumerate(files, 1):
        with open(path, "rb") as handle:
            # Line by line: a trail of any size is never held in memory whole. Lines
            # end with "\n" alone: a "\r" before it is part of the line (a CRLF copy
            # is an edit, and the sink would chain its next line on those bytes).
            for line in handle:
                if not line.endswith(b"\n"):
                    if number < len(files):
                        # A rotated file was closed cleanly: a torn line there was put there.
                        return result.fail(expected_seq, path, "a torn line inside a rotated file")
                    result.notes.append(f"{path}: {len(line)} bytes of a torn last line ignored")
                    break
                raw = line[:-1]
                where = expected_seq
                try:
                    record = json.loads(raw)
                    seq = record["seq"]
                    prev = record["prev"]
                except (ValueError, KeyError, TypeError, RecursionError):
                    return result.fail(
                        where, path, "a line is not a chain record (inserted or edited)"
                    )
                if not isinstance(seq, int) or not isinstance(prev, str):
                    return result.fail(where, path, "seq or prev has the wrong type (edited)")
                if expected_seq is None:
                    result.first_seq = seq
                    if seq != 1 or prev != GENESIS:
                        if not allow_missing_head:
                            return result.fail(
                                seq,
                                path,
                                f"the trail starts at seq {seq}: its head is missing (deleted; "
                                "--allow-missing-head if keep removed the oldest files)",
                            )
                        result.notes.append(f"the trail starts at seq {seq} (earlier files absent)")
                elif seq != expected_seq:
                    problem = f"expected seq {expected_seq}, found {seq}: " + (
                        "lines missing (deleted or moved later)"
                        if seq > expected_seq
                        else "a line repeated, moved earlier or inserted"
                    )
                    return result.fail(expected_seq, path, problem)
                elif prev != prev_hash:
                    return result.fail(
                        seq - 1,
                        path,
                        f"line seq {seq - 1} does not match the hash recorded by seq {seq} "
                        "(edited, or replaced)",
                    )
                if record.get("event") == CHECKPOINT_EVENT:
                    result.checkpoints += 1
                    since_checkpoint = 0
                    if keys is not None:
                        unsigned = _checkpoint_problem(keys, record, seq, prev, result.notes)
                        if unsigned is not None:
                            return result.fail(seq, path, unsigned)
                        result.signed_checkpoints += 1
                else:
                    since_checkpoint += 1
                prev_hash = line_hash(raw)
                expected_seq = seq + 1
                result.lines += 1
                result.last_seq = seq
    if not result.lines:
        return result.fail(None, files[-1] if files else "", "no lines: the trail is empty")
    if keys is not None:
        result.unsigned_tail = since_checkpoint
        if result.checkpoints == 0:
            return result.fail(None, files[-1], "no signed checkpoint found")
    return result


def _by_id(
    public_key: Ed25519PublicKey | Sequence[Ed25519PublicKey] | None,
) -> dict[str, Ed25519PublicKey] | None:
    if public_key is None:
        return None
    given = [public_key] if isinstance(public_key, Ed25519PublicKey) else list(public_key)
    return {key_id(key): key for key in given}


def _checkpoint_problem(
    keys: dict[str, Ed25519PublicKey],
    record: dict[str, object],
    seq: int,
    prev: str,
    notes: list[str],
) -> str | None:
    """Why a checkpoint's signature does not verify with the key it names; ``None`` if it does.

    The signature covers the checkpoint's time; one made by a version of secmw
    that left the time out still verifies, with a note (its time may have moved).
    """
    details = record.get("details")
    details = details if isinstance(details, dict) else {}
    sig, named = str(details.get("sig", "")), details.get("key_id")
    key = keys.get(named) if isinstance(named, str) else None
    if key is None:
        if len(keys) > 1:
            return f"checkpoint signed by key {named!r}, which was not given"
        (key,) = keys.values()  # one key given: the signature decides
    moment = record.get("time")
    if isinstance(moment, str) and signature_valid(key, seq, prev, sig, moment):
        return None
    if signature_valid(key, seq, prev, sig):
        notes.append(f"checkpoint at seq {seq}: an older signature that does not cover its time")
        return None
    return "checkpoint signature is invalid"


__all__ = ["VerifyResult", "verify_files"]
