"""Audit: one structured, hash-chained event per security decision."""

from secmw.audit.base import (
    AuditEvent,
    AuditSink,
    MemoryAuditSink,
    NullAuditSink,
    StreamAuditSink,
    utc_now,
)
from secmw.audit.file import JSONLFileSink
from secmw.audit.format import AuditFormatter, StructlogAuditSink, bind_request, fill_request_id
from secmw.audit.hashchain import CheckpointSigner
from secmw.audit.ocsf import ocsf_shape
from secmw.audit.verify import VerifyResult, verify_files

__all__ = [
    "AuditEvent",
    "AuditFormatter",
    "AuditSink",
    "CheckpointSigner",
    "JSONLFileSink",
    "MemoryAuditSink",
    "NullAuditSink",
    "StreamAuditSink",
    "StructlogAuditSink",
    "VerifyResult",
    "bind_request",
    "fill_request_id",
    "ocsf_shape",
    "utc_now",
    "verify_files",
]
