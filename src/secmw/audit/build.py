"""Building the configured audit sink."""

from __future__ import annotations

import sys

from secmw.audit.base import AuditSink, MemoryAuditSink, StreamAuditSink
from secmw.audit.config import AuditConfig


def build_sink(config: AuditConfig) -> AuditSink | None:
    """The sink the ``audit`` section names; ``None`` when audit is off."""
    if config.sink == "stdout":
        return StreamAuditSink()
    if config.sink == "stderr":
        return StreamAuditSink(sys.stderr)
    if config.sink == "memory":
        return MemoryAuditSink()
    return None
