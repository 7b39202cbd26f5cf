"""Building the configured inspector from the ``inspect`` section."""

from __future__ import annotations

from secmw.inspect.config import InspectConfig
from secmw.inspect.inspector import PromptInjectionInspector
from secmw.inspect.scanner import PromptInjectionScanner


def build_inspector(config: InspectConfig) -> PromptInjectionInspector:
    """The :class:`PromptInjectionInspector` the section describes (every regex compiled now)."""
    scanner = PromptInjectionScanner(
        weights=config.weights,
        max_chars=config.max_chars,
        max_decode_depth=config.max_decode_depth,
        quoted_discount=config.quoted_discount,
        fail_closed=config.fail_closed,
    )
    return PromptInjectionInspector(
        scanner,
        threshold=config.threshold,
        action=config.action,
        scan=tuple(config.scan),
        skip_tools=tuple(config.skip_tools),
        max_strings=config.max_strings,
        max_depth=config.max_depth,
    )
