"""The base of every configuration model, shared by the component packages."""

from __future__ import annotations

import ipaddress
import re

from pydantic import BaseModel, ConfigDict

_FIELD_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 section 5.1


class ConfigModel(BaseModel):
    """Frozen, and unknown keys are errors: a typo never silently disables a setting."""

    model_config = ConfigDict(extra="forbid", frozen=True)


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
    return value
