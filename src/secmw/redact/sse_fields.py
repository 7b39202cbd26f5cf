"""Where the LLM delta text of an SSE event is, and when its block ends.

Each API streams a message as small deltas in its own JSON shape (see the
table in :mod:`secmw.redact.sse`); this module finds those text fields in one
event, builds a follow-up event of the same shape for text held back, and
tells which open blocks an event ends.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_ANTHROPIC_FIELDS = ("text", "partial_json", "thinking")
# OpenAI-compatible chat deltas: the answer, the reasoning some servers stream
# (DeepSeek and vLLM ``reasoning_content``, OpenRouter ``reasoning``), a refusal.
_CHAT_FIELDS = ("content", "reasoning_content", "reasoning", "refusal")

Key = tuple[Any, ...]
Build = Callable[[str], dict[str, Any]]
# A delta field of an event: its stream's key, the dict holding it, its name, a
# builder for a follow-up event, and the tool call's id when one is sent.
Field = tuple[Key, dict[str, Any], str, Build, Any]


def json_source(key: Key) -> bool:
    """True for the delta streams that carry JSON source (tool-call arguments)."""
    if key[0] == "anthropic":
        return bool(key[2] == "partial_json")
    if key[0] == "chat":
        return bool(key[2] == "tool")
    return key[0] == "responses" and isinstance(key[1], str) and "arguments" in key[1]


def _anthropic(index: Any, kind: Any, field: str) -> Build:
    def build(text: str) -> dict[str, Any]:
        return {"type": "content_block_delta", "index": index, "delta": {"type": kind, field: text}}

    return build


def _responses(template: dict[str, Any]) -> Build:
    def build(text: str) -> dict[str, Any]:
        return {**template, "delta": text}

    return build


def _chat(frame: dict[str, Any], index: Any, delta: Callable[[str], dict[str, Any]]) -> Build:
    def build(text: str) -> dict[str, Any]:
        return {**frame, "choices": [{"index": index, "delta": delta(text), "finish_reason": None}]}

    return build


def _text_field(field: str) -> Callable[[str], dict[str, Any]]:
    def delta(text: str) -> dict[str, Any]:
        return {field: text}

    return delta


def _gemini(index: Any, thought: bool) -> Build:
    def build(text: str) -> dict[str, Any]:
        part: dict[str, Any] = {"text": text, "thought": True} if thought else {"text": text}
        return {"candidates": [{"index": index, "content": {"role": "model", "parts": [part]}}]}

    return build


def _arguments(slot: Any) -> Callable[[str], dict[str, Any]]:
    def delta(text: str) -> dict[str, Any]:
        return {"tool_calls": [{"index": slot, "function": {"arguments": text}}]}

    return delta


def fields(data: dict[str, Any]) -> list[Field]:
    """The delta text fields of one event, with a builder for a follow-up event."""
    found: list[Field] = []
    kind = data.get("type")
    delta = data.get("delta")
    if kind == "content_block_delta" and isinstance(delta, dict):
        index = data.get("index")
        for field in _ANTHROPIC_FIELDS:
            if isinstance(delta.get(field), str):
                build = _anthropic(index, delta.get("type"), field)
                found.append((("anthropic", index, field), delta, field, build, None))
    elif (
        isinstance(kind, str)
        and kind.startswith("response.")
        and kind.endswith(".delta")
        and isinstance(delta, str)
    ):
        key = ("responses", kind, data.get("item_id"), data.get("content_index"))
        template = {k: v for k, v in data.items() if k not in ("delta", "sequence_number")}
        found.append((key, data, "delta", _responses(template), None))
    candidates = data.get("candidates")
    if isinstance(candidates, list):
        for number, candidate in enumerate(candidates):
            content = candidate.get("content") if isinstance(candidate, dict) else None
            parts = content.get("parts") if isinstance(content, dict) else None
            index = candidate.get("index", number) if isinstance(candidate, dict) else number
            # Clients join a candidate's text parts in order, whatever their position
            # (a thought or a function call may come first): one stream per kind of
            # text, not per position, or a secret moving between positions leaks.
            for part in parts if isinstance(parts, list) else ():
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    thought = part.get("thought") is True
                    stream: Key = ("gemini", index, "thought" if thought else "text")
                    found.append((stream, part, "text", _gemini(index, thought), None))
    choices = data.get("choices")
    if isinstance(choices, list):
        frame = {k: v for k, v in data.items() if k in ("id", "object", "created", "model")}
        for choice in choices:
            if isinstance(choice, dict) and isinstance(choice.get("delta"), dict):
                found.extend(_chat_fields(frame, choice))
    return found


def _chat_fields(frame: dict[str, Any], choice: dict[str, Any]) -> list[Field]:
    found: list[Field] = []
    delta = choice["delta"]
    index = choice.get("index")
    for field in _CHAT_FIELDS:
        if isinstance(delta.get(field), str):
            build = _chat(frame, index, _text_field(field))
            found.append((("chat", index, field), delta, field, build, None))
    calls = delta.get("tool_calls")
    for call in calls if isinstance(calls, list) else ():
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict) and isinstance(function.get("arguments"), str):
            slot = call.get("index")
            build = _chat(frame, index, _arguments(slot))
            ident = call.get("id")
            found.append((("chat", index, "tool", slot), function, "arguments", build, ident))
    return found


def ending(data: dict[str, Any]) -> Callable[[Key], bool]:
    """Which open delta streams end before this event is sent."""
    kind = data.get("type")
    if kind == "message_stop":
        return lambda key: key[0] == "anthropic"
    if kind == "content_block_stop":
        index = data.get("index")
        return lambda key: key[0] == "anthropic" and key[1] == index
    if isinstance(kind, str) and kind.endswith(".done"):
        # Only the item (and content part) that is done: items may stream interleaved.
        item = data.get("item")
        ident = data.get("item_id", item.get("id") if isinstance(item, dict) else None)
        if ident is not None:
            part = data.get("content_index")
            return lambda key: (
                key[0] == "responses" and key[2] == ident and (part is None or key[3] == part)
            )
        return lambda key: key[0] == "responses"
    if kind == "response.completed":
        return lambda key: key[0] == "responses"
    finished = {
        choice.get("index")
        for choice in data.get("choices") or ()
        if isinstance(choice, dict) and choice.get("finish_reason") is not None
    }
    if finished:
        return lambda key: key[0] == "chat" and key[1] in finished
    candidates = data.get("candidates")
    done = {
        candidate.get("index", number)
        for number, candidate in enumerate(candidates if isinstance(candidates, list) else ())
        if isinstance(candidate, dict) and candidate.get("finishReason") is not None
    }
    if done:
        return lambda key: key[0] == "gemini" and key[1] in done
    return lambda key: False


__all__ = ["Build", "Field", "Key", "ending", "fields", "json_source"]
