"""Configuration model of the redaction stage (the ``redact`` section)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from secmw._config_base import ConfigModel

_NAME = re.compile(r"[a-z][a-z0-9_]{1,63}")


def _regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"not a valid regular expression: {exc}") from None
    return value


class CustomSecretConfig(ConfigModel):
    """A user-defined secret type (``[[redact.custom]]``)."""

    name: str
    pattern: str
    anchors: list[str] = Field(min_length=1)
    max_len: int = Field(default=256, ge=1, le=65536)
    back: int = Field(default=0, ge=0, le=256)
    ignore_case: bool = False
    min_entropy: float | None = Field(default=None, ge=0, le=8)
    priority: int = Field(default=70, ge=0, le=100)

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not _NAME.fullmatch(value):
            raise ValueError("must be 2-64 of a-z, 0-9, _ and start with a letter")
        return value

    @field_validator("pattern")
    @classmethod
    def _check_pattern(cls, value: str) -> str:
        return _regex(value)

    @field_validator("anchors")
    @classmethod
    def _check_anchors(cls, value: list[str]) -> list[str]:
        if any(not anchor for anchor in value):
            raise ValueError("anchors must be non-empty literal strings")
        return value


class RedactConfig(ConfigModel):
    """Secret redaction of response bodies (off unless ``enabled``)."""

    enabled: bool = False
    style: Literal["placeholder", "mask", "partial", "hash"] = "placeholder"
    salt: str | None = Field(default=None, min_length=16, repr=False)
    disabled_types: list[str] = Field(default_factory=list)
    custom: list[CustomSecretConfig] = Field(default_factory=list)
    allow: list[str] = Field(default_factory=list)
    allow_patterns: list[str] = Field(default_factory=list)
    json_keys: list[str] = Field(default_factory=list)
    max_holdback: int = Field(default=65536, ge=1024, le=16 * 1024 * 1024)
    max_event: int = Field(default=1024 * 1024, ge=1024)
    compressed: Literal["refuse", "pass"] = "refuse"

    @field_validator("allow_patterns")
    @classmethod
    def _check_patterns(cls, value: list[str]) -> list[str]:
        return [_regex(pattern) for pattern in value]
