"""The audit stage: the event record, the sink protocol and the simple sinks."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from math import isfinite
from types import MappingProxyType
from typing import IO, Any, Protocol

_MAX_FIELD = 512
_TEXT_FIELDS = (
    "request_id",
    "transport",
    "method",
    "path",
    "client",
    "subject",
    "tenant",
    "auth_method",
    "rpc_method",
    "tool",
    "reason",
)
_ENCODER = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"), default=str)

_escape = json.encoder.encode_basestring_ascii  # the C implementation when available


def _text(value: Any) -> str:
    """A JSON string (ASCII-escaped), or any other value encoded as JSON."""
    return _escape(value) if isinstance(value, str) else _ENCODER.encode(value)


def _plain_value(value: Any, depth: int) -> Any:
    """A details value fit for one JSON line: strings and keys clipped at every depth, no NaN.

    ``NaN`` and infinities are not JSON (RFC 8259): they become strings. Nesting
    deeper than 8 levels is cut to a clipped string, and so is any value JSON has
    no type for (bytes, a set, an object), which would otherwise be written whole.
    """
    if isinstance(value, str):
        return _clip(value)
    if isinstance(value, float):
        return value if isfinite(value) else repr(value)
    if isinstance(value, (int, bool)) or value is None:
        return value
    if depth >= _MAX_DEPTH:
        return _clip(str(value))
    if isinstance(value, Mapping):
        return {_plain_key(key): _plain_value(item, depth + 1) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain_value(item, depth + 1) for item in value]
    return _clip(str(value))


def _plain_key(key: Any) -> Any:
    """A details key as JSON writes it (a string, clipped); numbers and ``None`` stay."""
    if isinstance(key, (int, float)) or key is None:
        return key  # bool is an int; JSON writes all of these as short strings
    return _clip(key if isinstance(key, str) else str(key))


_MAX_DEPTH = 8


def _clip(value: str | None) -> str | None:
    if value is None or len(value) <= _MAX_FIELD:
        return value
    return value[: _MAX_FIELD - 1] + "\u2026"


_second: tuple[int, str] = (-1, "")


def utc_now() -> str:
    """The current time as an ISO 8601 UTC timestamp with offset.

    Every event takes one, on the request path: the date and time of the current
    second are formatted once per second, the microseconds each time.
    """
    global _second  # noqa: PLW0603 - a one-entry cache; a tuple swap is atomic
    second, rest = divmod(time.time_ns(), 1_000_000_000)
    cached, prefix = _second
    if second != cached:
        prefix = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _second = (second, prefix)
    return f"{prefix}.{rest // 1000:06d}+00:00"


_EMPTY: Mapping[str, Any] = MappingProxyType({})
_set = object.__setattr__


@dataclass(frozen=True, slots=True, init=False)
class AuditEvent:
    """One security decision, as it is written to the trail.

    Names follow the OWASP logging vocabulary style (``category_action``). No field
    ever holds a credential: ``subject`` and ``credential_id`` identify, they do
    not authenticate. User-supplied strings are clipped to 512 characters; the
    JSON rendering escapes control characters, so they cannot break a line.
    ``time`` defaults to now (:func:`utc_now`).
    """

    name: str
    outcome: str
    severity: str = "info"
    time: str = field(default_factory=utc_now)
    request_id: str | None = None
    transport: str | None = None
    method: str | None = None
    path: str | None = None
    client: str | None = None
    subject: str | None = None
    tenant: str | None = None
    auth_method: str | None = None
    rpc_method: str | None = None
    tool: str | None = None
    rule_ids: tuple[str, ...] = ()
    reason: str | None = None
    status: int | None = None
    latency_ms: float | None = None
    details: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)

    # Written out because every request builds at least one event: the generated
    # __init__ of a frozen dataclass looks ``object.__setattr__`` up once per field.
    # tests/unit/audit/test_event.py checks that it matches the fields.
    def __init__(  # noqa: PLR0917 - positional, like the generated one (events are built so)
        self,
        name: str,
        outcome: str,
        severity: str = "info",
        time: str | None = None,
        request_id: str | None = None,
        transport: str | None = None,
        method: str | None = None,
        path: str | None = None,
        client: str | None = None,
        subject: str | None = None,
        tenant: str | None = None,
        auth_method: str | None = None,
        rpc_method: str | None = None,
        tool: str | None = None,
        rule_ids: tuple[str, ...] = (),
        reason: str | None = None,
        status: int | None = None,
        latency_ms: float | None = None,
        details: Mapping[str, Any] = _EMPTY,
    ) -> None:
        put = _set
        put(self, "name", name)
        put(self, "outcome", outcome)
        put(self, "severity", severity)
        put(self, "time", utc_now() if time is None else time)
        put(self, "request_id", request_id)
        put(self, "transport", transport)
        put(self, "method", method)
        put(self, "path", path)
        put(self, "client", client)
        put(self, "subject", subject)
        put(self, "tenant", tenant)
        put(self, "auth_method", auth_method)
        put(self, "rpc_method", rpc_method)
        put(self, "tool", tool)
        put(self, "rule_ids", rule_ids)
        put(self, "reason", reason)
        put(self, "status", status)
        put(self, "latency_ms", latency_ms)
        put(self, "details", details)

    def to_dict(self) -> dict[str, Any]:
        """The event as a JSON-ready dict, without empty fields."""
        data: dict[str, Any] = {"time": self.time, "event": self.name, "outcome": self.outcome}
        data["severity"] = self.severity
        for key in _TEXT_FIELDS:
            value = _clip(getattr(self, key))
            if value is not None and value != "":
                data[key] = value
        if self.rule_ids:
            data["rule_ids"] = list(self.rule_ids)
        if self.status is not None:
            data["status"] = self.status
        if self.latency_ms is not None:
            data["latency_ms"] = round(self.latency_ms, 3)
        if self.details:
            data["details"] = self._details()
        return data

    def to_json(self) -> str:
        """One JSON line (ASCII only, so CR, LF and U+2028 stay escaped).

        The same text as encoding :meth:`to_dict` compactly, built directly: this
        runs once per event on the audit writer, where the dict costs as much as
        the encoding.
        """
        parts = [
            '{"time":',
            _text(self.time),
            ',"event":',
            _text(self.name),
            ',"outcome":',
            _text(self.outcome),
            ',"severity":',
            _text(self.severity),
        ]
        for key in _TEXT_FIELDS:  # _clip and _text, inlined: this loop is the hot one
            value = getattr(self, key)
            if value is not None and value != "":
                if len(value) > _MAX_FIELD:
                    value = value[: _MAX_FIELD - 1] + "\u2026"
                text = _escape(value) if type(value) is str else _ENCODER.encode(value)
                parts += (',"', key, '":', text)
        if self.rule_ids:
            parts += (',"rule_ids":[', ",".join(map(_text, self.rule_ids)), "]")
        if self.status is not None:
            status = self.status
            parts += (',"status":', str(status) if type(status) is int else _ENCODER.encode(status))
        if self.latency_ms is not None:
            latency = round(self.latency_ms, 3)
            # float.__repr__ is what json writes for a finite float.
            parts += (',"latency_ms":', repr(latency) if isfinite(latency) else _text(latency))
        if self.details:
            parts += (',"details":', _ENCODER.encode(self._details()))
        parts.append("}")
        return "".join(parts)

    def _details(self) -> dict[str, Any]:
        return {_plain_key(key): _plain_value(value, 0) for key, value in self.details.items()}


class AuditSink(Protocol):
    """Protocol: record audit events; ``aclose`` flushes what is pending.

    The pipeline gives ``emit`` 30 s (``secmw.pipeline.SINK_DEADLINE``) unless the
    sink's class itself sets ``bounded_emit = True``, its promise to return within
    a bound of its own (the built-in sinks make it: the deadline's cancel scope
    costs ~10 µs). A subclass must set it again: it may have changed ``emit``.
    """

    async def emit(self, event: AuditEvent) -> None:
        """Record ``event``."""
        ...

    async def aclose(self) -> None:
        """Flush and release resources; called once at shutdown."""
        ...


class NullAuditSink:
    """Discards every event (audit switched off)."""

    # emit returns within its own bound: the pipeline needs no deadline around it.
    bounded_emit = True

    __slots__ = ()

    async def emit(self, event: AuditEvent) -> None:
        """Drop ``event``."""

    async def aclose(self) -> None:
        """Nothing to flush."""


class MemoryAuditSink:
    """Keeps events in a list, for tests and for embedding."""

    # emit returns within its own bound: the pipeline needs no deadline around it.
    bounded_emit = True

    __slots__ = ("closed", "events")

    def __init__(self) -> None:
        self.events: list[AuditEvent] = []
        self.closed = False

    async def emit(self, event: AuditEvent) -> None:
        """Append ``event``."""
        self.events.append(event)

    async def aclose(self) -> None:
        """Mark the sink closed; events stay readable."""
        self.closed = True

    def names(self) -> list[str]:
        """The event names, in order."""
        return [event.name for event in self.events]

    def clear(self) -> None:
        """Forget every event."""
        self.events.clear()


class LineFormatter(Protocol):
    """Protocol: render an event as one line, or ``None`` to drop it."""

    def render(self, event: AuditEvent) -> str | None:
        """The event's line, without a newline."""
        ...


class StreamAuditSink:
    """Writes each event as one JSON line to a text stream (stdout by default).

    ``formatter`` (an :class:`~secmw.audit.format.AuditFormatter`) runs the
    processor chain; without one the line is :meth:`AuditEvent.to_json`.
    """

    # emit returns within its own bound: the pipeline needs no deadline around it.
    bounded_emit = True

    __slots__ = ("_formatter", "_stream")

    def __init__(
        self, stream: IO[str] | None = None, *, formatter: LineFormatter | None = None
    ) -> None:
        self._stream = stream
        self._formatter = formatter

    async def emit(self, event: AuditEvent) -> None:
        """Write ``event`` as a JSON line."""
        stream = self._stream or sys.stdout
        line = self._formatter.render(event) if self._formatter is not None else event.to_json()
        if line is not None:
            stream.write(line + "\n")

    async def aclose(self) -> None:
        """Flush the stream."""
        (self._stream or sys.stdout).flush()
