"""Audit: one structured event per security decision."""

from secmw.audit.base import (
    AuditEvent,
    AuditSink,
    MemoryAuditSink,
    NullAuditSink,
    StreamAuditSink,
    utc_now,
)

__all__ = [
    "AuditEvent",
    "AuditSink",
    "MemoryAuditSink",
    "NullAuditSink",
    "StreamAuditSink",
    "utc_now",
]
