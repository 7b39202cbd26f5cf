"""Walking JSON-like values to the strings a scanner should read, within limits."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from secmw._jsonrpc import may_be_json, starts_like_json
from secmw.inspect.results import ScanState

if TYPE_CHECKING:
    from secmw.inspect.scanner import PromptInjectionScanner

# Object keys longer than this are scanned too: a key can carry text as well as a value.
LONG_KEY = 16


def scan_tree(
    scanner: PromptInjectionScanner,
    state: ScanState,
    value: Any,
    path: str,
    *,
    max_strings: int,
    max_depth: int,
    skip_keys: frozenset[str] = frozenset(),
) -> None:
    """Scan the strings of ``value`` (and its long keys) into ``state``, within the limits.

    Iterative, so deep nesting cannot exhaust the Python stack; past
    ``max_strings`` or ``max_depth`` the walk stops with a ``scan_limit`` finding.
    """
    stack: list[tuple[Any, str, int, frozenset[str]]] = [(value, path, 0, skip_keys)]
    strings = 0
    while stack:
        item, where, depth, skipped = stack.pop()
        if isinstance(item, str):
            strings += 1
            if strings > max_strings:
                scanner.limit(state, f"more than {max_strings} strings")
                return
            scanner.scan_into(state, item, where or None)
            # A string holding a JSON array or object reaches the tool decoded: the
            # MCP SDK parses it for any parameter not declared as a string, so
            # escapes ("ign\\u006fre", "ignore\\tall") hide nothing from the model.
            decoded = _NOT_JSON if state.budget.exhausted else _json_in(item)
            if decoded is _TOO_DEEP:
                scanner.limit(state, "JSON in a string nested too deeply")
                return
            if decoded is not _NOT_JSON:
                stack.append((decoded, f"{where}/json", depth + 1, _NONE))
        elif isinstance(item, Mapping | list):
            if depth >= max_depth:
                scanner.limit(state, f"nesting deeper than {max_depth}")
                return
            if isinstance(item, list):
                stack.extend(
                    (v, f"{where}[{i}]", depth + 1, skipped)
                    for i, v in reversed(list(enumerate(item)))
                )
                continue
            free = _free_form(item) if skipped else None
            for key, v in reversed(list(item.items())):
                if key in skipped and not _text_source(item, v):
                    continue
                child = f"{where}.{key}" if where else str(key)
                # A tool call's own arguments are free-form: every member is read.
                stack.append((v, child, depth + 1, _NONE if key == free else skipped))
                if isinstance(key, str) and len(key) > LONG_KEY:
                    stack.append((key, child, depth + 1, skipped))
        if state.budget.exhausted:
            return


def _text_source(holder: Mapping[Any, Any], value: Any) -> bool:
    """A skipped member that holds text a model reads all the same.

    Anthropic's plain-text documents: ``"source": {"type": "text", "data": "..."}``
    and ``"source": {"type": "content", "content": [...]}``. Only a string
    ``type`` counts, so a skipped member cannot be reopened by anything else.
    """
    if isinstance(value, Mapping) and value.get("type") in _TEXT_SOURCES:
        return True
    return holder.get("type") == "text" and isinstance(value, str)


_TEXT_SOURCES = ("text", "content")
_NOT_JSON = object()
_TOO_DEEP = object()


def _json_in(text: str) -> Any:
    """The JSON array or object ``text`` holds (as servers pre-parse tool arguments).

    ``_NOT_JSON`` for anything else, ``_TOO_DEEP`` for JSON nested past what the
    parser reads here (a server parsing on a shallower stack may read it).
    """
    if not starts_like_json(text):
        return _NOT_JSON
    try:
        value = json.loads(text)
    except RecursionError:
        return _TOO_DEEP if may_be_json(text) else _NOT_JSON
    except ValueError:
        return _NOT_JSON
    return value if isinstance(value, (list, dict)) else _NOT_JSON


_NONE: frozenset[str] = frozenset()


def _free_form(holder: Mapping[Any, Any]) -> str | None:
    """The member of a tool-call block that holds the call's arguments, if any.

    Anthropic ``tool_use`` (and ``server_tool_use``, ``mcp_tool_use``) blocks carry
    them as ``input``; chat and Responses calls as ``arguments`` (a JSON string
    there, an object in some clients). Their keys are the tool's own names, so a
    ``data`` or ``type`` argument is text a model reads back, not media or markup.
    """
    kind = holder.get("type")
    if isinstance(kind, str) and kind.endswith(("tool_use", "_call")) and "input" in holder:
        return "input"
    if "arguments" in holder:
        return "arguments"
    return None


__all__ = ["LONG_KEY", "scan_tree"]
