"""Scoring text that does not arrive in a request: tool outputs, fetched pages, files.

Indirect prompt injection hides in what a tool returns rather than in what the
client sends. A proxy or a response-phase stage calls :func:`inspect_text` or
:func:`inspect_value` on that content before handing it to a model, and decides
with the returned score (for example, replace the tool result with an error when
``result.score >= 0.7``). Both use one shared, lazily built
:class:`~secmw.inspect.scanner.PromptInjectionScanner` unless given one.
"""

from __future__ import annotations

import threading
from typing import Any

from secmw.inspect.scanner import PromptInjectionScanner, ScanResult

_lock = threading.Lock()
_shared: PromptInjectionScanner | None = None


def default_scanner() -> PromptInjectionScanner:
    """The process-wide scanner with default settings, built on first use."""
    global _shared  # noqa: PLW0603 - one compiled scanner per process, built lazily
    if _shared is None:
        with _lock:
            if _shared is None:
                _shared = PromptInjectionScanner()
    return _shared


def inspect_text(
    text: str, source: str = "tool_output", *, scanner: PromptInjectionScanner | None = None
) -> ScanResult:
    """Score ``text`` (a tool output, a web page, a file) for prompt injection."""
    return (scanner or default_scanner()).scan(text, source)


def inspect_value(
    value: Any, source: str = "tool_output", *, scanner: PromptInjectionScanner | None = None
) -> ScanResult:
    """Score every string inside a JSON-like value, e.g. an MCP ``CallToolResult``."""
    return (scanner or default_scanner()).scan_value(value, source)


__all__ = ["default_scanner", "inspect_text", "inspect_value"]
