"""Secret redaction in response bodies and streams.

``SecretRedactor()`` uses the whole built-in catalogue; ``build_redactor`` builds
one from a ``redact`` configuration section; ``Scanner`` and ``SecretType`` let
you assemble your own catalogue.
"""

from secmw.redact.base import NoRedactor, Redactor, StreamRedactor
from secmw.redact.build import build_redactor
from secmw.redact.catalogue import BUILTIN, SecretType
from secmw.redact.config import CustomSecretConfig, RedactConfig
from secmw.redact.engine import Candidate, Scanner
from secmw.redact.redactor import SecretRedactor
from secmw.redact.styles import Styler

__all__ = [
    "BUILTIN",
    "Candidate",
    "CustomSecretConfig",
    "NoRedactor",
    "RedactConfig",
    "Redactor",
    "Scanner",
    "SecretRedactor",
    "SecretType",
    "StreamRedactor",
    "Styler",
    "build_redactor",
]
