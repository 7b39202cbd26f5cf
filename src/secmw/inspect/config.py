"""Configuration model of the inspection stage (the ``inspect`` section)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from secmw._config_base import ConfigModel
from secmw.inspect.results import SIGNAL_KINDS

ScanTarget = Literal["tool_arguments", "prompt_arguments", "llm_messages"]


def _all_targets() -> list[ScanTarget]:
    return ["tool_arguments", "prompt_arguments", "llm_messages"]


class InspectConfig(ConfigModel):
    """Prompt-injection inspection of request bodies; present means on, with ``deny``."""

    action: Literal["deny", "flag", "audit"] = "deny"
    threshold: float = Field(default=0.7, gt=0.0, le=1.0)
    scan: list[ScanTarget] = Field(
        default_factory=_all_targets,
        min_length=1,
    )
    skip_tools: list[str] = Field(default_factory=list)
    max_chars: int = Field(default=262_144, ge=1024, le=16 * 1024 * 1024)
    max_strings: int = Field(default=4096, ge=1, le=1_000_000)
    max_depth: int = Field(default=32, ge=1, le=256)
    max_decode_depth: int = Field(default=2, ge=0, le=4)
    quoted_discount: float = Field(default=0.5, ge=0.0, le=1.0)
    fail_closed: bool = True
    weights: dict[str, float] = Field(default_factory=dict)

    @field_validator("weights")
    @classmethod
    def _weights(cls, value: dict[str, float]) -> dict[str, float]:
        for kind, weight in value.items():
            if kind not in SIGNAL_KINDS:
                raise ValueError(f"unknown signal {kind!r} (known: {', '.join(SIGNAL_KINDS)})")
            if not 0.0 <= weight <= 2.0:
                raise ValueError(f"weight of {kind!r} must be between 0 and 2")
        return value
