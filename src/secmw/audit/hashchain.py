"""The hash chain of the audit file and its Ed25519-signed checkpoints.

Every line starts with ``{"seq":N,"prev":H,`` where ``seq`` counts lines from 1
across rotated files and ``H`` is the SHA-256 (hex) of the previous line's bytes,
without its newline (``GENESIS`` for the first line ever). Editing, deleting,
inserting or reordering a line breaks ``seq`` or ``prev`` at that point, but
anyone who can write the file can cut lines off its end or write a new chain.
A checkpoint line may therefore be signed: its signature covers the string
``secmw-audit-checkpoint:v1:<seq>:<prev>`` with ``prev`` committing to every
line before it (NIST SP 800-53 AU-9(3)), so the lines up to a valid checkpoint
cannot be changed unseen; the lines after the last one can still be cut or
replaced, and the signature does not name the trail.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from secmw._config_base import read_regular_file

GENESIS = "0" * 64
CHECKPOINT_EVENT = "audit_checkpoint"
# A PEM Ed25519 key is a few hundred bytes; anything bigger is not one.
MAX_KEY_BYTES = 1024 * 1024


def line_hash(line: bytes) -> str:
    """The chain hash of one line (its bytes without the newline)."""
    return hashlib.sha256(line).hexdigest()


def chain_line(seq: int, prev: str, rendered: str) -> bytes:
    """Prefix a rendered JSON object with the chain fields; returns the line's bytes."""
    if rendered == "{}":
        text = f'{{"seq":{seq},"prev":"{prev}"}}'
    else:
        text = f'{{"seq":{seq},"prev":"{prev}",' + rendered[1:]
    return text.encode("utf-8")


def checkpoint_message(seq: int, prev: str, time: str | None = None) -> bytes:
    """The bytes a checkpoint's signature covers: its place in the chain and its time.

    ``time=None`` gives the first version's message, which left the time out (an
    attacker who cut a trail back to a checkpoint could then move its time).
    """
    if time is None:
        return f"secmw-audit-checkpoint:v1:{seq}:{prev}".encode("ascii")
    return f"secmw-audit-checkpoint:v2:{seq}:{prev}:{time}".encode("utf-8", "surrogatepass")


def key_id(public: Ed25519PublicKey) -> str:
    """A short, stable name for a public key (first 16 hex of SHA-256 of its raw bytes)."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


class CheckpointSigner:
    """Signs checkpoint lines with an Ed25519 private key."""

    __slots__ = ("_key", "key_id")

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        self.key_id = key_id(key.public_key())

    @classmethod
    def from_pem_file(cls, path: str | os.PathLike[str]) -> CheckpointSigner:
        """Load an unencrypted PEM Ed25519 private key; ValueError/TypeError if unusable.

        OSError when the file cannot be read or is not a regular file (a FIFO would
        block the start forever, ``/dev/zero`` be read until memory runs out).
        """
        data = read_regular_file(path, MAX_KEY_BYTES)
        key = serialization.load_pem_private_key(data, password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise TypeError("the checkpoint key is not an Ed25519 private key")
        return cls(key)

    def render(self, seq: int, prev: str, time: str) -> str:
        """The checkpoint event (rendered, without chain fields) for line ``seq``."""
        signature = self._key.sign(checkpoint_message(seq, prev, time))
        return json.dumps(
            {
                "time": time,
                "event": CHECKPOINT_EVENT,
                "outcome": "success",
                "severity": "info",
                "details": {
                    "alg": "Ed25519",
                    "key_id": self.key_id,
                    "sig": base64.b64encode(signature).decode("ascii"),
                },
            },
            separators=(",", ":"),
        )


def load_public_key(path: str | os.PathLike[str]) -> Ed25519PublicKey:
    """Load a PEM Ed25519 public key (or the public half of a private key file).

    OSError when the file cannot be read or is not a regular file.
    """
    data = read_regular_file(path, MAX_KEY_BYTES)
    key: object
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError:
        key = serialization.load_pem_private_key(data, password=None).public_key()
    if not isinstance(key, Ed25519PublicKey):
        raise TypeError("not an Ed25519 key")
    return key


def signature_valid(
    public: Ed25519PublicKey, seq: int, prev: str, sig: str, time: str | None = None
) -> bool:
    """True when ``sig`` (base64) signs checkpoint ``seq`` with ``prev`` (and ``time``)."""
    try:
        public.verify(base64.b64decode(sig, validate=True), checkpoint_message(seq, prev, time))
    except (InvalidSignature, ValueError):
        return False
    return True


_HASH = re.compile("[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class Tail:
    """The end of an existing audit file: where the chain stands, and any torn bytes."""

    seq: int
    prev: str
    good_size: int
    torn: bytes


def read_tail(fd: int, size: int) -> Tail:
    """Find the last complete line of an open file and the torn bytes after it.

    Raises ``ValueError`` when the last complete line is not a chain line.
    """
    block = 64 * 1024
    end = size
    data = b""
    while True:
        start = max(0, end - block)
        data = os.pread(fd, end - start, start) + data
        end = start
        newline = data.rfind(b"\n")
        earlier = data.rfind(b"\n", 0, newline) if newline > 0 else -1
        if start == 0 or earlier >= 0:
            break
    offset = end  # file offset of data[0]
    newline = data.rfind(b"\n")
    if newline < 0:
        return Tail(0, GENESIS, 0, data)
    torn = data[newline + 1 :]
    earlier = data.rfind(b"\n", 0, newline)
    last = data[earlier + 1 : newline]
    try:
        record = json.loads(last)
    except (ValueError, RecursionError):
        record = None
    seq = record.get("seq") if isinstance(record, dict) else None
    prev = record.get("prev") if isinstance(record, dict) else None
    if (
        not isinstance(seq, int)
        or isinstance(seq, bool)
        or seq < 1
        or not isinstance(prev, str)
        or not _HASH.fullmatch(prev)
    ):
        raise ValueError("the last line is not a secmw audit chain line")
    return Tail(seq, line_hash(last), offset + newline + 1, torn)


__all__ = [
    "CHECKPOINT_EVENT",
    "GENESIS",
    "CheckpointSigner",
    "Tail",
    "chain_line",
    "checkpoint_message",
    "key_id",
    "line_hash",
    "load_public_key",
    "read_tail",
    "signature_valid",
]
