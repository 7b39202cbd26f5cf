"""Request inspection: the prompt-injection scanner, inspector and indirect-injection API."""

from secmw.inspect.base import Inspector, NoInspector
from secmw.inspect.config import InspectConfig
from secmw.inspect.indirect import default_scanner, inspect_text, inspect_value
from secmw.inspect.inspector import (
    InspectionIncomplete,
    PromptInjectionDetected,
    PromptInjectionInspector,
)
from secmw.inspect.results import SIGNAL_KINDS, ScanResult, ScanState
from secmw.inspect.scanner import PromptInjectionScanner

__all__ = [
    "SIGNAL_KINDS",
    "InspectConfig",
    "InspectionIncomplete",
    "Inspector",
    "NoInspector",
    "PromptInjectionDetected",
    "PromptInjectionInspector",
    "PromptInjectionScanner",
    "ScanResult",
    "ScanState",
    "default_scanner",
    "inspect_text",
    "inspect_value",
]
