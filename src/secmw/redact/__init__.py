"""Secret redaction in response bodies and streams."""

from secmw.redact.base import NoRedactor, Redactor, StreamRedactor

__all__ = ["NoRedactor", "Redactor", "StreamRedactor"]
