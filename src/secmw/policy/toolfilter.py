"""Filtering MCP ``tools/list`` results down to the tools the principal may call.

The filter has the redactor's shape (``redact`` for a whole body, ``stream`` for
a body in pieces), so the adapter's response phase runs it before the redactor
and fixes ``Content-Length`` for it. It rewrites only JSON-RPC responses whose
``id`` is one of the request's ``tools/list`` calls; everything else passes
unchanged. In an SSE body each event is held until complete (a blank line) and
rewritten whole, so no event is ever split or mangled.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from secmw.context import Finding
from secmw.redact._held import Held
from secmw.redact.sse import EVENT_END

Visible = Callable[[Iterable[str]], set[str]]
_MAX_HELD = 8 * 1024 * 1024  # a body (or SSE event) larger than this passes unfiltered


class ToolListFilter:
    """Removes tools the principal may not call from ``tools/list`` results."""

    __slots__ = ("_ids", "_visible")

    def __init__(self, ids: Sequence[str | int], visible: Visible) -> None:
        self._ids = frozenset(ids)
        self._visible = visible

    def redact(self, text: str, media_type: str | None = None) -> tuple[str, Sequence[Finding]]:
        """Filter a whole body (JSON, or SSE events)."""
        if media_type == "text/event-stream":
            stream = self.stream(media_type)
            return stream.feed(text) + stream.flush(), stream.findings
        return self._rewrite_json(text)

    def stream(self, media_type: str | None = None) -> _FilterStream:
        """Filter a body that arrives in pieces."""
        return _FilterStream(self, sse=media_type == "text/event-stream")

    def _rewrite_json(self, text: str) -> tuple[str, list[Finding]]:
        try:
            document = json.loads(text)
        except ValueError:
            return text, []
        removed = self._filter(document)
        if not removed:
            return text, []
        finding = Finding("policy", "tools_hidden", detail=f"{removed} tool(s) hidden")
        return json.dumps(document, ensure_ascii=False, separators=(",", ":")), [finding]

    def _filter(self, document: Any) -> int:
        messages = document if isinstance(document, list) else [document]
        removed = 0
        for message in messages:
            if not isinstance(message, dict) or message.get("id") not in self._ids:
                continue
            result = message.get("result")
            if not isinstance(result, dict) or not isinstance(result.get("tools"), list):
                continue
            tools = result["tools"]
            names = [tool.get("name") for tool in tools if isinstance(tool, dict)]
            allowed = self._visible(name for name in names if isinstance(name, str))
            kept = [
                tool for tool in tools if isinstance(tool, dict) and tool.get("name") in allowed
            ]
            result["tools"] = kept
            removed += len(tools) - len(kept)
        return removed


class _FilterStream:
    __slots__ = ("_filter", "_held", "_passthrough", "_sse", "findings")

    def __init__(self, tool_filter: ToolListFilter, *, sse: bool) -> None:
        self._filter = tool_filter
        self._sse = sse
        self._held = Held()  # the unfinished event, or the body
        self._passthrough = False
        self.findings: list[Finding] = []

    def feed(self, chunk: str) -> str:
        if self._passthrough:
            return chunk
        if self._sse:
            # Only the new piece (and the last 3 characters before it, for an end
            # split across pieces) can hold the end of the held event.
            end, _ = _event_end(self._held.tail(3) + chunk)
            if end >= 0:
                return self._events(self._held.take() + chunk)
        self._held.add(chunk)
        if self._held.size <= _MAX_HELD:
            return ""
        # Too large to hold: the rest passes as it came (the filter only hides names).
        self._passthrough = True
        return self._held.take()

    def flush(self) -> str:
        rest = self._held.take()
        if self._passthrough:
            return rest
        if not self._sse:
            text, found = self._filter.redact(rest, "application/json")
            self.findings.extend(found)
            return text
        return self._rewrite_event(rest) if rest else ""

    def _events(self, text: str) -> str:
        """Rewrite the complete events of ``text``; hold what follows them."""
        pieces: list[str] = []
        while True:
            end, size = _event_end(text)
            if end < 0:
                break
            event, text = text[: end + size], text[end + size :]
            pieces.append(self._rewrite_event(event))
        self._held.add(text)
        return "".join(pieces)

    def _rewrite_event(self, event: str) -> str:
        lines = event.splitlines(keepends=True)
        data = [line for line in lines if line.startswith("data:")]
        if not data:
            return event
        payload = "".join(line[5:].removeprefix(" ").rstrip("\r\n") + "\n" for line in data)
        text, found = self._filter.redact(payload.rstrip("\n"), "application/json")
        if not found:
            return event
        self.findings.extend(found)
        ending = "\r\n" if lines[-1].endswith("\r\n") else "\n"
        kept = [line for line in lines if not line.startswith("data:") and line.strip()]
        return "".join(kept) + f"data: {text}{ending}{ending}"


def _event_end(text: str) -> tuple[int, int]:
    r"""Index and length of the first event terminator (a blank line), or (-1, 0).

    Any line ending may close the last line and any may make the blank one
    (``"\n\r\n"`` too); a final ``"\r"`` may still be followed by ``"\n"``.
    """
    match = EVENT_END.search(text)
    if match is None or (match.end() == len(text) and text.endswith("\r")):
        return -1, 0
    return match.start(), match.end() - match.start()
