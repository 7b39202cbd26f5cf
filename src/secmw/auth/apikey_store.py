"""API-key records and their stores: only a SHA-256 hash of each key is ever kept.

A key looks like ``smw_<id>_<secret>``: ``id`` (12 hex digits) is public and
names the record; ``secret`` is 256 random bits. Because every key is generated
here with that much entropy, a plain SHA-256 hash is enough: a slow hash (scrypt,
argon2) protects guessable human secrets, and these are not guessable. secmw
never accepts user-chosen API keys for that reason.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import secrets
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol, TypedDict, Unpack

from secmw._config_base import read_regular_file
from secmw.errors import ComponentError

if sys.platform != "win32":
    import fcntl

KEY_FORMAT = re.compile(r"smw_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")
# The longest lifetime a key may be given (seconds): about 100 years.
MAX_LIFETIME = 100 * 365.25 * 86400


def hash_key(key: str) -> str:
    """The stored form of a key: ``sha256:<hex digest>``."""
    return "sha256:" + hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()


def generate_key() -> tuple[str, str]:
    """A new ``(key_id, key)`` pair; the key is shown once and never stored."""
    key_id = secrets.token_hex(6)
    return key_id, f"smw_{key_id}_{secrets.token_urlsafe(32)}"


@dataclass(frozen=True, slots=True)
class APIKeyRecord:
    """One API key as stored: its id, hash and the principal it stands for."""

    key_id: str
    key_hash: str
    subject: str
    name: str | None = None
    tenant: str | None = None
    roles: tuple[str, ...] = ()
    scopes: tuple[str, ...] = ()
    tier: str | None = None
    created_at: float = field(default_factory=time.time)
    expires_at: float | None = None
    revoked_at: float | None = None

    def state(self, now: float) -> str:
        """``active``, ``expired`` or ``revoked``."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and now >= self.expires_at:
            return "expired"
        return "active"

    def to_dict(self) -> dict[str, Any]:
        """The JSON form of the record (it holds no secret)."""
        data = asdict(self)
        data["roles"] = list(self.roles)
        data["scopes"] = list(self.scopes)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> APIKeyRecord:
        """Read a record written by :meth:`to_dict`; raises ``ValueError`` when malformed.

        Types are checked, not coerced: a hand-edited ``"roles": "admin"`` would
        otherwise grant five one-letter roles, and ``"subject": null`` the subject
        ``"None"`` shared by every such key.
        """
        try:
            record = cls(
                key_id=_string(data, "key_id"),
                key_hash=_string(data, "key_hash"),
                subject=_string(data, "subject"),
                name=_optional_string(data, "name"),
                tenant=_optional_string(data, "tenant"),
                roles=_strings(data, "roles"),
                scopes=_strings(data, "scopes"),
                tier=_optional_string(data, "tier"),
                created_at=float(data.get("created_at", 0.0)),
                expires_at=_optional_float(data.get("expires_at")),
                revoked_at=_optional_float(data.get("revoked_at")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed API key record: {exc}") from None
        if not record.key_hash.startswith("sha256:") or not record.subject:
            raise ValueError("malformed API key record: bad hash or empty subject")
        return record


def _string(data: Mapping[str, Any], name: str) -> str:
    value = data[name]
    if not isinstance(value, str):
        raise TypeError(f"{name} is not a string")
    return value


def _optional_string(data: Mapping[str, Any], name: str) -> str | None:
    value = data.get(name)
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{name} is not a string or null")
    return value


def _strings(data: Mapping[str, Any], name: str) -> tuple[str, ...]:
    value = data.get(name, [])
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise TypeError(f"{name} is not a list of strings")
    return tuple(value)


def _optional_float(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    if not math.isfinite(number):
        raise ValueError("a time in the API key file is not a finite number")
    return number


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


class APIKeyStore(Protocol):
    """Protocol: look up an API-key record by its public id.

    Raise :class:`~secmw.errors.ComponentError` when the backing store cannot be
    read (the request then gets a 503, never anonymous access).
    """

    async def get(self, key_id: str) -> APIKeyRecord | None:
        """The record named ``key_id``, or ``None``."""
        ...


class KeyOptions(TypedDict, total=False):
    """What a new key may carry besides its subject (see :meth:`MemoryAPIKeyStore.new_key`)."""

    name: str | None
    tenant: str | None
    roles: Iterable[str]
    scopes: Iterable[str]
    tier: str | None
    expires_in: float | None


class MemoryAPIKeyStore:
    """API keys held in memory: for tests, and as the base of the file store."""

    def __init__(
        self, records: Iterable[APIKeyRecord] = (), *, clock: Callable[[], float] = time.time
    ) -> None:
        self._records: dict[str, APIKeyRecord] = {record.key_id: record for record in records}
        self._clock = clock

    async def get(self, key_id: str) -> APIKeyRecord | None:
        """The record named ``key_id``, or ``None``."""
        return self._records.get(key_id)

    def records(self) -> list[APIKeyRecord]:
        """Every record, oldest first."""
        return sorted(self._records.values(), key=lambda record: record.created_at)

    def create(self, subject: str, **options: Unpack[KeyOptions]) -> tuple[APIKeyRecord, str]:
        """Create a key for ``subject``; returns the record and the key (shown once).

        The options are those of :meth:`new_key`. Creating a second key for the
        same subject is how keys are rotated: both work until the old one is
        revoked or expires.
        """
        record, key = self.new_key(subject, **options)
        self.add(record)
        return record, key

    def new_key(
        self,
        subject: str,
        *,
        name: str | None = None,
        tenant: str | None = None,
        roles: Iterable[str] = (),
        scopes: Iterable[str] = (),
        tier: str | None = None,
        expires_in: float | None = None,
    ) -> tuple[APIKeyRecord, str]:
        """A new record and its key, not stored yet: :meth:`add` stores it.

        So a caller can show the key first and store only a key it could show.
        """
        if not subject:
            raise ValueError("subject must not be empty")
        if expires_in is not None and not 0 < expires_in <= MAX_LIFETIME:
            raise ValueError("expires_in must be a positive number of seconds, at most 100 years")
        key_id, key = generate_key()
        now = self._clock()
        record = APIKeyRecord(
            key_id=key_id,
            key_hash=hash_key(key),
            subject=subject,
            name=name,
            tenant=tenant,
            roles=tuple(roles),
            scopes=tuple(scopes),
            tier=tier,
            created_at=now,
            expires_at=None if expires_in is None else now + expires_in,
        )
        return record, key

    def add(self, record: APIKeyRecord) -> None:
        """Store ``record`` (made by :meth:`new_key`)."""
        self._records[record.key_id] = record
        self._saved()

    def revoke(self, key_id: str) -> bool:
        """Revoke a key; ``False`` when there is no such key (or it was revoked)."""
        record = self._records.get(key_id)
        if record is None or record.revoked_at is not None:
            return False
        self._records[key_id] = replace(record, revoked_at=self._clock())
        self._saved()
        return True

    def _saved(self) -> None:
        """Hook for stores that persist; the memory store keeps nothing else."""


class FileAPIKeyStore(MemoryAPIKeyStore):
    """API keys in a JSON file (mode 0600), re-read when it changes on disk.

    Changes made by ``secmw apikey`` in another process (a revocation) take effect
    within ``reload_interval`` seconds. Writes go to a temporary file that
    replaces the old one, so a reader never sees half a file; each change re-reads
    the file under an exclusive lock (``<file>.lock``), so two processes changing
    it at once both keep their change. An empty file holds no keys. A file that
    cannot be read raises :class:`~secmw.errors.ComponentError` (503), never opens
    access.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        reload_interval: float = 2.0,
        create: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(clock=clock)
        self.path = Path(path)
        self._reload_interval = reload_interval
        self._checked = float("-inf")
        self._stamp: tuple[int, int] | None = None
        if create and not self.path.exists():
            with self._locked():  # another process may be creating it right now
                if not self.path.exists():
                    self._write()
        self._load()

    async def get(self, key_id: str) -> APIKeyRecord | None:
        """The record named ``key_id``, re-reading the file when it changed."""
        now = time.monotonic()
        if now - self._checked >= self._reload_interval:
            self._checked = now
            try:
                self._load()
            except ComponentError:
                # Until a read succeeds, every lookup fails (503): serving the keys
                # of before would keep a key revoked in the unreadable file alive.
                self._checked = float("-inf")
                raise
        return self._records.get(key_id)

    def add(self, record: APIKeyRecord) -> None:
        """Store ``record``: re-read the file and write it back, under the lock."""
        with self._locked():
            self._load(force=True)
            super().add(record)

    def revoke(self, key_id: str) -> bool:
        """Revoke a key (see :meth:`MemoryAPIKeyStore.revoke`), under the lock."""
        with self._locked():
            self._load(force=True)
            return super().revoke(key_id)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold an exclusive lock on ``<file>.lock`` (no-op where flock is missing)."""
        target = self._target()
        target.parent.mkdir(parents=True, exist_ok=True)
        lock = os.open(f"{target}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if sys.platform != "win32":
                fcntl.flock(lock, fcntl.LOCK_EX)
            yield
        finally:
            os.close(lock)  # closing releases the lock

    def _target(self) -> Path:
        """The file behind the path (a symlink is followed, not replaced by a copy)."""
        return Path(os.path.realpath(self.path))

    def _load(self, *, force: bool = False) -> None:
        try:
            info = self.path.stat()
            stamp = (info.st_mtime_ns, info.st_size)
            if stamp == self._stamp and not force:
                return
            raw = read_regular_file(self.path)
            entries = json.loads(raw, parse_constant=_no_constant)["keys"] if raw.strip() else []
            if not isinstance(entries, list):
                raise TypeError("'keys' is not a list")
            records = [APIKeyRecord.from_dict(entry) for entry in entries]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise ComponentError(
                f"cannot read the API key file: {type(exc).__name__}: {detail}"
            ) from None
        self._records = {record.key_id: record for record in records}
        self._stamp = stamp

    def _saved(self) -> None:
        self._write()

    def _write(self) -> None:
        document = {"version": 1, "keys": [record.to_dict() for record in self.records()]}
        data = json.dumps(document, indent=2, sort_keys=True).encode() + b"\n"
        target = self._target()
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=".apikeys-")
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(data)
            os.chmod(temporary, 0o600)
            os.replace(temporary, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
        info = self.path.stat()
        self._stamp = (info.st_mtime_ns, info.st_size)


__all__ = [
    "KEY_FORMAT",
    "APIKeyRecord",
    "APIKeyStore",
    "FileAPIKeyStore",
    "MemoryAPIKeyStore",
    "generate_key",
    "hash_key",
]
