"""Building the configured audit sink."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from secmw.audit.base import AuditSink, MemoryAuditSink, StreamAuditSink
from secmw.audit.config import AuditConfig, FileSinkConfig
from secmw.audit.format import AuditFormatter, StructlogAuditSink
from secmw.errors import ComponentError, ConfigError, ConfigIssue

if TYPE_CHECKING:
    from secmw.audit.hashchain import CheckpointSigner


def build_sink(config: AuditConfig) -> AuditSink | None:
    """The sink the ``audit`` section names; ``None`` when audit is off."""
    ocsf = config.format == "ocsf"
    if config.sink == "stdout":
        return StreamAuditSink(formatter=AuditFormatter(ocsf=ocsf))
    if config.sink == "stderr":
        return StreamAuditSink(sys.stderr, formatter=AuditFormatter(ocsf=ocsf))
    if config.sink == "memory":
        return MemoryAuditSink()
    if config.sink == "structlog":
        return StructlogAuditSink()
    if config.sink == "file" and config.file is not None:
        return build_file_sink(config.file, ocsf=ocsf)
    return None


def load_signer(path: str) -> CheckpointSigner:
    """The checkpoint signer of ``audit.file.checkpoint_key``; ConfigError names that key."""
    from secmw.audit.hashchain import CheckpointSigner  # noqa: PLC0415 - cryptography on demand

    try:
        return CheckpointSigner.from_pem_file(path)
    except (OSError, ValueError, TypeError) as exc:
        reason = (exc.strerror if isinstance(exc, OSError) else None) or str(exc)
        raise ConfigError(
            [ConfigIssue("file.checkpoint_key", f"cannot load the key: {reason}")]
        ) from None


def build_file_sink(config: FileSinkConfig, *, ocsf: bool = False) -> AuditSink:
    """The JSONL file sink of an ``audit.file`` section; ConfigError keys are ``file.*``."""
    from secmw.audit.file import JSONLFileSink  # noqa: PLC0415 - starts a thread; only on demand

    signer = load_signer(config.checkpoint_key) if config.checkpoint_key is not None else None
    fallback = {"stderr": "stderr", "stdout": sys.stdout, "none": None}[config.fallback]
    try:
        return JSONLFileSink(
            config.path,
            fsync=config.fsync,
            fsync_every=config.fsync_every,
            fsync_interval=config.fsync_interval_ms / 1000,
            batch_interval=config.batch_interval_ms / 1000,
            rotate_bytes=config.rotate_bytes,
            rotate_seconds=config.rotate_seconds,
            keep=config.keep,
            queue_size=config.queue_size,
            on_failure=config.on_failure,
            block_timeout=config.block_timeout_ms / 1000,
            retry_interval=config.retry_interval_ms / 1000,
            signer=signer,
            checkpoint_every=config.checkpoint_every,
            ocsf=ocsf,
            fallback=fallback,  # type: ignore[arg-type]
            handle_sigterm=config.handle_sigterm,
            mode=config.mode,
        )
    except ComponentError as exc:
        raise ConfigError([ConfigIssue("file.path", str(exc))]) from None
