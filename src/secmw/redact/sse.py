"""SSE-aware redaction: whole events, and LLM token deltas redacted as one text.

Events are sent only once complete (an event is never cut in two), with every
``data:`` line that holds JSON redacted JSON-aware. LLM APIs stream a message
as many small deltas, so a secret is usually spread over several events; the
delta fields below are therefore fed, per choice/block/tool call, through one
:class:`~secmw.redact.stream.TextStream` each, so the concatenated deltas equal
the one-shot redaction of the concatenated text. Held-back text is carried into
later events; what is left when a block ends (``finish_reason``,
``content_block_stop``, ``*.done``, ``[DONE]``, end of body) is sent in one extra
delta event cloned from the block's last one. Tool-call arguments are JSON
source, not text: their deltas are held until the call ends (up to
``max_event``) and redacted JSON-aware, so escapes (``\\n``, ``\\"``, ``\\/``,
``\\u0041``) cannot hide a secret; the events in between carry empty deltas.

An event whose JSON spans several ``data:`` lines (the client joins them with
``\\n``) is redacted as that one JSON value; a byte-order mark that opens the
stream is kept and skipped, as clients do.

* OpenAI Chat Completions (and compatible servers): ``choices[i].delta.content``,
  ``.reasoning_content``, ``.reasoning``, ``.refusal`` and
  ``choices[i].delta.tool_calls[j].function.arguments``;
* Gemini ``streamGenerateContent?alt=sse``: ``candidates[i].content.parts[j].text``;
* OpenAI Responses: ``response.*.delta`` events' ``delta``;
* Anthropic Messages: ``content_block_delta`` ``delta.text`` /
  ``delta.partial_json`` / ``delta.thinking``.

An event larger than ``max_event`` is not buffered further: the rest of it is
redacted as plain text while it streams.
"""

from __future__ import annotations

import bisect
import dataclasses
import json
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from secmw._jsonrpc import starts_like_json
from secmw.context import Finding
from secmw.redact._encode import json_text
from secmw.redact._held import Held
from secmw.redact.json_stream import JSONStream
from secmw.redact.sse_fields import Build, Key, fields, json_source
from secmw.redact.sse_fields import ending as block_ends
from secmw.redact.stream import TextStream

if TYPE_CHECKING:
    from secmw.redact.redactor import SecretRedactor

# The end of an SSE event: a blank line, with any of the three line endings.
EVENT_END = re.compile(r"(?:\r\n|\r(?!\n)|\n)(?:\r\n|\r(?!\n)|\n)")
_LINE = re.compile(r"([^\r\n]*)(\r\n|\r|\n|$)")
MAX_EVENT = 1024 * 1024


class _Delta:
    __slots__ = ("build", "event", "ident", "stream")

    def __init__(
        self, stream: TextStream | JSONStream, build: Build, event: str | None, ident: Any
    ) -> None:
        self.stream = stream
        self.build = build
        self.event = event
        self.ident = ident  # a tool call's id, when the server sends one


class SSEStream:
    """Redacts a ``text/event-stream`` body event by event (see the module docstring)."""

    __slots__ = (
        "_consumed",
        "_deltas",
        "_eol",
        "_event_findings",
        "_passthrough",
        "_passthrough_tail",
        "_pending",
        "_redactor",
        "findings",
        "max_event",
    )

    def __init__(self, redactor: SecretRedactor, max_event: int = MAX_EVENT) -> None:
        self._redactor = redactor
        # The unfinished event, as received: joined only once it ends, so an event
        # arriving in many small pieces costs linear, not quadratic, time.
        self._pending = Held()
        self._consumed = 0  # characters of the body before the pending event (finding offsets)
        self._deltas: dict[Key, _Delta] = {}
        self._eol = "\n"
        self._passthrough: TextStream | None = None
        self._passthrough_tail = ""  # its last characters: an event end may straddle pieces
        # Where findings of an event's own text go while its offsets are remapped.
        self._event_findings: list[Finding] | None = None
        self.max_event = max_event
        self.findings: list[Finding] = []

    def feed(self, chunk: str) -> str:
        """Take the next piece; return the complete events it finished, redacted."""
        if self._passthrough is not None:
            return self._oversized(chunk)
        if not chunk:
            return ""
        # Only the new piece (and the last 3 characters before it, for an end
        # split across pieces) can hold the end of the pending event.
        probe = self._pending.tail(3) + chunk
        match = EVENT_END.search(probe)
        if match is None or (match.end() == len(probe) and probe.endswith("\r")):
            self._pending.add(chunk)
            if self._pending.size <= self.max_event:
                return ""
            held = self._pending.take()
            self._passthrough = self._plain_stream()
            return self._oversized(held)
        text = self._pending.take() + chunk
        out: list[str] = []
        position = 0
        for match in EVENT_END.finditer(text):
            end = match.end()
            if end == len(text) and text.endswith("\r"):
                break  # "\r" then maybe "\n": the event may not be over yet
            out.append(self._event(text[position:end], self._consumed + position))
            position = end
        self._consumed += position
        rest = text[position:]
        if len(rest) > self.max_event:
            self._passthrough = self._plain_stream()
            out.append(self._oversized(rest))
        else:
            self._pending.add(rest)
        return "".join(out)

    def _plain_stream(self) -> TextStream:
        """The plain-text stream for an oversized event, its offsets counted in the body.

        Open delta blocks keep what they hold: the oversized event may belong to
        another block (another choice), whose text must not disturb them.
        """
        return TextStream(self._redactor, self._consumed)

    def _oversized(self, chunk: str) -> str:
        """Plain-text streaming for the rest of an event too large to buffer.

        The end of the event may straddle pieces ("...\n" then "\n..."): the last
        characters of the previous piece are searched with the new one.
        """
        stream = self._passthrough
        assert stream is not None
        tail = self._passthrough_tail
        probe = tail + chunk
        match = EVENT_END.search(probe)
        if match is None or (match.end() == len(probe) and probe.endswith("\r")):
            self._passthrough_tail = probe[-3:]
            return stream.feed(chunk)
        cut = max(0, match.end() - len(tail))
        out = stream.feed(chunk[:cut]) + stream.flush()
        self.findings.extend(stream.findings)
        self._consumed = stream.sent
        self._passthrough, self._passthrough_tail = None, ""
        return out + self.feed(chunk[cut:])

    def flush(self) -> str:
        """End of body: the last event (even unterminated) and all held delta text."""
        out = ""
        if self._passthrough is not None:
            out = self._passthrough.flush()
            self.findings.extend(self._passthrough.findings)
            self._passthrough, self._passthrough_tail = None, ""
        elif self._pending:
            out = self._event(self._pending.take(), self._consumed)
        return out + self._close(lambda key: True)

    # -- one event -------------------------------------------------------------

    def _event(self, event: str, base: int) -> str:
        """One complete event, redacted; ``base`` is its offset in the body."""
        if base == 0 and event.startswith("\ufeff"):
            # Clients skip a BOM that opens the stream: so does the redactor.
            return "\ufeff" + self._event(event[1:], 1)
        lines = [(m.group(1), m.group(2), m.start()) for m in _LINE.finditer(event)]
        name: str | None = None
        data_lines = 0
        for line, _, _ in lines:
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data_lines += 1
        if data_lines > 1:
            joined = self._joined_json(lines, name, base)
            if joined is not None:
                return joined
        before = ""
        out: list[str] = []
        for line, eol, start in lines:
            if not line and not eol:
                continue
            if eol:
                self._eol = eol
            if line.startswith("data:"):
                value = line[5:]
                lead = " " if value.startswith(" ") else ""
                offset = base + start + 5 + len(lead)
                closed, redacted = self._data(value[len(lead) :], name, offset)
                before += closed
                out.append("data:" + lead + redacted + eol)
            else:
                out.append(self._redactor.redact_text(line, self.findings, base + start) + eol)
        return before + "".join(out)

    def _joined_json(
        self, lines: list[tuple[str, str, int]], name: str | None, base: int
    ) -> str | None:
        """An event whose ``data:`` lines join into one JSON value, redacted as that value.

        ``None`` when they do not (each line is then redacted on its own). The
        redacted value is written back over as many ``data:`` lines as it has.
        """
        values: list[str] = []
        starts: list[int] = []  # body offset of each data line's value
        for line, _, start in lines:
            if line.startswith("data:"):
                lead = 6 if line.startswith("data: ") else 5
                values.append(line[lead:])
                starts.append(base + start + lead)
        joined = "\n".join(values)
        try:
            # Numbers kept as text: one past Python's digit limit is still JSON to a client.
            json.loads(joined, parse_int=str)
        except (ValueError, RecursionError):
            return None
        own: list[Finding] = []
        self._event_findings = own
        try:
            closed, redacted = self._data(joined, name, 0)
        finally:
            self._event_findings = None
        # Offsets in the joined value back to offsets in the body, line by line
        # (delta findings keep theirs: they count within their block's text).
        edges = [0]
        for value in values:
            edges.append(edges[-1] + len(value) + 1)
        for finding in own:
            self.findings.append(
                dataclasses.replace(
                    finding,
                    start=_in_body(finding.start, edges, starts),
                    end=_in_body(finding.end, edges, starts),
                )
            )
        head: list[str] = []
        eol = self._eol
        terminated = False
        for line, ending, start in lines:
            if ending:
                eol = self._eol = ending
            if not line:
                terminated = terminated or bool(ending)  # the blank line that ends it
            elif not line.startswith("data:"):
                head.append(self._redactor.redact_text(line, self.findings, base + start) + ending)
        data = "".join(f"data: {part}{eol}" for part in redacted.split("\n"))
        # Comment, event, id and retry lines first (their order among data lines
        # means nothing to a client), then the value, then the end if it had one.
        return closed + "".join(head) + data + (eol if terminated else "")

    def _data(self, value: str, name: str | None, offset: int) -> tuple[str, str]:
        """(synthetic events to send first, the redacted data value at ``offset``)."""
        if value.strip() == "[DONE]":
            return self._close(lambda key: True), value
        try:
            data = json.loads(value)
        except (ValueError, RecursionError):
            if starts_like_json(value):
                # JSON that Python will not read (an integer past its digit limit, too
                # deep) is still JSON to a client, which decodes the escapes text keeps.
                return "", self._json(value, offset)
            own = self.findings if self._event_findings is None else self._event_findings
            return "", self._redactor.redact_text(value, own, offset)
        if not isinstance(data, dict):
            return "", self._json(value, offset)
        ending = block_ends(data)
        changed = False
        started = ""
        here: dict[Key, tuple[dict[str, Any], str]] = {}  # fields of this event, by stream
        for key, holder, field, build, ident in fields(data):
            delta = self._deltas.get(key)
            if delta is not None and ident is not None and delta.ident not in (None, ident):
                # Another call in the slot of an unfinished one: servers that number
                # every parallel call 0, or not at all. The first one ends here: in
                # its own field when this event carries it, else in an event before.
                if key in here:
                    earlier, name_of = here[key]
                    earlier[name_of] += delta.stream.flush()
                    self.findings.extend(delta.stream.findings)
                    del self._deltas[key]
                    changed = True
                else:
                    started += self._close(lambda open_key, key=key: open_key == key)  # type: ignore[misc]
                delta = None
            if delta is None:
                stream: TextStream | JSONStream = (
                    JSONStream(self._redactor, self.max_event)
                    if json_source(key)
                    else TextStream(self._redactor)
                )
                delta = self._deltas[key] = _Delta(stream, build, name, ident)
            elif delta.ident is None:
                delta.ident = ident
            here[key] = (holder, field)
            piece = holder[field]
            safe = delta.stream.feed(piece)
            if ending(key):
                # This event ends its own block: what is held goes into it.
                safe += delta.stream.flush()
                self.findings.extend(delta.stream.findings)
                del self._deltas[key]
            if safe != piece:
                holder[field] = safe
                changed = True
        # Blocks that end here without a piece in this event: their rest first.
        closed = started + self._close(ending)
        if not changed:
            return closed, self._json(value, offset)
        # Delta findings count within their block's joined text (the secret may span events).
        return closed, self._json(json_text(data, compact=True), offset)

    def _json(self, value: str, offset: int) -> str:
        from secmw.redact.json_mode import redact_json  # noqa: PLC0415 - cycle

        out, findings = redact_json(self._redactor, value, offset)
        (self.findings if self._event_findings is None else self._event_findings).extend(findings)
        return out

    def _close(self, which: Callable[[Key], bool]) -> str:
        """Flush the delta streams ``which`` selects into synthetic events."""
        out: list[str] = []
        for key in [key for key in self._deltas if which(key)]:
            delta = self._deltas.pop(key)
            rest = delta.stream.flush()
            self.findings.extend(delta.stream.findings)
            if not rest:
                continue
            eol = self._eol
            head = f"event: {delta.event}{eol}" if delta.event else ""
            body = json_text(delta.build(rest), compact=True)
            out.append(f"{head}data: {body}{eol}{eol}")
        return "".join(out)


def _in_body(position: int | None, edges: list[int], starts: list[int]) -> int | None:
    """A position in joined ``data:`` values as an offset in the body."""
    if position is None:
        return None
    line = max(0, bisect.bisect_right(edges, position) - 1)
    line = min(line, len(starts) - 1)
    return starts[line] + position - edges[line]


__all__ = ["EVENT_END", "MAX_EVENT", "SSEStream"]
