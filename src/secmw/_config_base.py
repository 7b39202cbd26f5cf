"""The base of every configuration model, shared by the component packages."""

from __future__ import annotations

import ipaddress
import os
import re
import stat
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator

_FIELD_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 section 5.1


# Starts a model-level message that belongs to one field: "@name: message".
FIELD_MARK = "@"


class ConfigModel(BaseModel):
    """Frozen, and unknown keys are errors: a typo never silently disables a setting.

    Numbers and booleans are not converted from other types either:
    ``max_body_bytes = true`` or ``allow_anonymous = "yes"`` is an error, not 1
    and ``True``; ``inf`` and ``nan`` are errors too (``factor = inf`` would switch
    a detector off without a word).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    # Per field (not per model), so one bad value does not hide the other errors.
    @field_validator("*", mode="before")
    @classmethod
    def _no_conversions(cls, value: Any, info: ValidationInfo) -> Any:
        field = cls.model_fields.get(info.field_name or "")
        if field is not None:
            problem = _conversion(field.annotation, value)
            if problem is not None:
                raise ValueError(problem)
        return value


def _conversion(annotation: Any, value: Any) -> str | None:
    """Why pydantic would have to convert ``value`` to fit ``annotation``; ``None`` if not.

    Scalars (bool, int, float) and the items of lists, tuples, sets and the values
    of dicts are checked; models check their own fields.
    """
    if value is None:
        return None
    origin = get_origin(annotation)
    if origin in (Union, UnionType):
        members = [member for member in get_args(annotation) if member is not type(None)]
        problems = [_conversion(member, value) for member in members]
        return None if not problems or None in problems else problems[0]
    if origin is Literal:
        return None  # pydantic compares literals as they are
    if origin in (list, tuple, set, frozenset) and isinstance(value, (list, tuple)):
        args = [arg for arg in get_args(annotation) if arg is not Ellipsis]
        for item in value:
            problem = _conversion(args[0], item) if args else None
            if problem is not None:
                return f"an item {problem}"
        return None
    if origin is dict and isinstance(value, dict):
        pair = get_args(annotation)
        for item in value.values():
            problem = _conversion(pair[1], item) if len(pair) == 2 else None
            if problem is not None:
                return f"a value {problem}"
        return None
    if annotation is bool and not isinstance(value, bool):
        return f"must be true or false, not {type(value).__name__}"
    if annotation in (int, float):
        if isinstance(value, bool):
            return "must be a number, not a boolean"
        if isinstance(value, str):
            return "must be a number, not a string"
        if not isinstance(value, (int, float)):  # bytes, Decimal, Fraction...
            return f"must be a number, not {type(value).__name__}"
        if annotation is int and isinstance(value, float):
            return "must be a whole number, not a float"
    return None


def header_name(value: str) -> str:
    """Validate an HTTP field name and return it lower-cased."""
    if not _FIELD_NAME.fullmatch(value):
        raise ValueError(f"{value!r} is not a valid header name")
    return value.lower()


def cidr_list(value: list[str]) -> list[str]:
    """Validate a list of CIDR networks (host bits must be zero)."""
    for entry in value:
        try:
            ipaddress.ip_network(entry, strict=True)
        except ValueError as exc:
            raise ValueError(f"{entry!r} is not a CIDR network: {exc}") from None
    return value


_STORAGE_SCHEMES = (
    "memory://",
    "redis://",
    "rediss://",
    "unix://",
    "redis+sentinel://",
    "redis+cluster://",
)


def storage_url(value: str) -> str:
    """Validate a shared-state storage URL (memory or one of the Redis forms)."""
    if not value.startswith(_STORAGE_SCHEMES):
        raise ValueError(
            "must start with memory://, redis://, rediss://, unix://, "
            "redis+sentinel:// or redis+cluster://"
        )
    if value.startswith(("redis://", "rediss://")):
        # Caught here, not as a 503 on every request once the first one connects.
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - raises for a port that is no number or out of range
        except ValueError as exc:
            raise ValueError(f"not a valid Redis URL: {exc}") from None
        database = parts.path.strip("/")
        if database and not database.isdigit():
            raise ValueError(f"the database {database!r} is not a number")
    return value


# Key files, JWKS documents and tokens named by a configuration are small.
MAX_REFERENCED_BYTES = 16 * 1024 * 1024


def read_regular_file(path: str | os.PathLike[str], limit: int = MAX_REFERENCED_BYTES) -> bytes:
    """A file a configuration names, read whole: a regular file of at most ``limit`` bytes.

    ``/dev/zero`` would be read until memory runs out and a FIFO would block start-up
    forever; both are ``OSError`` here (``ValueError`` for a file over ``limit``).
    """
    # O_NONBLOCK: opening a FIFO without a writer must not wait for one.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{os.fspath(path)!r} is not a regular file")
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    finally:
        os.close(fd)
    if size > limit:
        raise ValueError(f"the file is larger than {limit // (1024 * 1024)} MiB")
    return b"".join(chunks)


_LOOPBACK = ("127.0.0.1", "::1", "localhost")


def https_url(value: str | None, name: str) -> str | None:
    """An https URL; plain http only on the loopback interface (for development).

    Keys or tokens fetched over plain http could be swapped or read by anyone on
    the path, which would let them mint tokens this resource accepts.
    """
    if value is None:
        return None
    parsed = urlsplit(value)
    if parsed.scheme not in ("https", "http") or not parsed.netloc:
        raise ValueError(f"{name} must be an https URL")
    if parsed.scheme == "http" and parsed.hostname not in _LOOPBACK:
        raise ValueError(f"{name} must use https (plain http only on 127.0.0.1/localhost)")
    return value


def header_value_problem(value: str) -> str | None:
    """Why ``value`` cannot be sent as an HTTP field value (RFC 9110 5.5), or ``None``."""
    if any(char in value for char in "\r\n\x00"):
        return "holds CR, LF or NUL"
    if any(ord(char) > 0xFF for char in value):
        return "holds a character outside Latin-1"
    if any((ord(char) < 0x20 and char != "\t") or ord(char) == 0x7F for char in value):
        return "holds a control character"
    return None
