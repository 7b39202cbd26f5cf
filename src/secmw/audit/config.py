"""Configuration model of the audit stage (the ``audit`` section)."""

from __future__ import annotations

from typing import Literal

from secmw._config_base import ConfigModel


class AuditConfig(ConfigModel):
    """Where audit events go."""

    sink: Literal["stdout", "stderr", "memory", "none"] = "stdout"
