"""Configuration model of the audit stage (the ``audit`` section)."""

from __future__ import annotations

import os
import stat
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from secmw._config_base import ConfigModel


class FileSinkConfig(ConfigModel):
    """The JSONL file sink (``audit.file``): chain, fsync, rotation and failure policy."""

    path: str = Field(min_length=1)
    fsync: Literal["always", "batch", "never"] = "batch"
    fsync_every: int = Field(default=1000, ge=1)
    fsync_interval_ms: int = Field(default=200, ge=1)
    batch_interval_ms: int = Field(default=0, ge=0, le=1000)
    rotate_bytes: int | None = Field(default=64 * 1024 * 1024, ge=4096)
    rotate_seconds: int | None = Field(default=None, ge=1)
    keep: int | None = Field(default=None, ge=0)
    queue_size: int = Field(default=65536, ge=1)
    on_failure: Literal["fail_closed", "block", "fail_open"] = "fail_closed"
    # Bounded well below the pipeline's 30 s SINK_DEADLINE, which would cut the wait.
    block_timeout_ms: int = Field(default=200, ge=0, le=10_000)
    retry_interval_ms: int = Field(default=1000, ge=10)
    checkpoint_key: str | None = None
    checkpoint_every: int = Field(default=10000, ge=1)
    fallback: Literal["stderr", "stdout", "none"] = "stderr"
    handle_sigterm: bool = True
    mode: int = Field(default=0o600, ge=0, le=0o777)

    @field_validator("path")
    @classmethod
    def _regular(cls, value: str) -> str:
        # /dev/null would swallow the trail without a word; a FIFO would block.
        try:
            info = os.stat(value)
        except OSError:
            return value  # created at start-up (a missing directory is reported then)
        if not stat.S_ISREG(info.st_mode):
            raise ValueError(f"{value!r} exists and is not a regular file")
        return value

    @field_validator("mode")
    @classmethod
    def _private_enough(cls, value: int) -> int:
        if value & 0o002:
            raise ValueError("a world-writable audit trail is no trail: drop o+w")
        if value & 0o600 != 0o600:
            raise ValueError("the owner must be able to read and write the trail (0o600)")
        return value


class AuditConfig(ConfigModel):
    """Where audit events go and how they are rendered."""

    sink: Literal["stdout", "stderr", "memory", "none", "structlog", "file"] = "stdout"
    format: Literal["secmw", "ocsf"] = "secmw"
    file: FileSinkConfig | None = None

    @model_validator(mode="after")
    def _file_needs_section(self) -> AuditConfig:
        if self.sink == "file" and self.file is None:
            raise ValueError("sink = 'file' needs an [audit.file] section with a path")
        if self.file is not None and self.sink != "file":
            # An [audit.file] section that would be ignored is a mistake, not a choice.
            raise ValueError(f"[audit.file] is set but sink = {self.sink!r}; use sink = 'file'")
        return self

    @model_validator(mode="before")
    @classmethod
    def _file_section_means_file_sink(cls, data: Any) -> Any:
        """An ``[audit.file]`` section without a ``sink`` means ``sink = "file"``."""
        if isinstance(data, dict) and data.get("file") is not None and "sink" not in data:
            return {**data, "sink": "file"}
        return data
