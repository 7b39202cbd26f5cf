"""The base of every configuration model, shared by the component packages."""

from __future__ import annotations

import ipaddress
import re
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, model_validator

_FIELD_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 section 5.1


# Starts a model-level message that belongs to one field: "@name: message".
FIELD_MARK = "@"


class ConfigModel(BaseModel):
    """Frozen, and unknown keys are errors: a typo never silently disables a setting.

    Numbers and booleans are not converted from other types either:
    ``max_body_bytes = true`` or ``allow_anonymous = "yes"`` is an error, not 1
    and ``True``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _no_conversions(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        for name, value in data.items():
            field = cls.model_fields.get(name)
            if field is None or value is None:
                continue
            kinds = _scalar_kinds(field.annotation)
            numeric = bool(kinds & {int, float})
            if bool in kinds and not numeric and not isinstance(value, bool) and str not in kinds:
                kind = type(value).__name__
                raise ValueError(f"{FIELD_MARK}{name}: must be true or false, not {kind}")
            if numeric and bool not in kinds and isinstance(value, bool):
                raise ValueError(f"{FIELD_MARK}{name}: must be a number, not a boolean")
            if numeric and str not in kinds and isinstance(value, str):
                raise ValueError(f"{FIELD_MARK}{name}: must be a number, not a string")
        return data


def _scalar_kinds(annotation: Any) -> set[type]:
    """The plain scalar types (bool, int, float, str) an annotation admits."""
    if annotation in (bool, int, float, str):
        return {annotation}
    found: set[type] = set()
    if get_origin(annotation) in (Union, UnionType):
        for member in get_args(annotation):
            found |= _scalar_kinds(member)
    elif get_origin(annotation) is Literal:
        found |= {type(choice) for choice in get_args(annotation)}
    return found


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
