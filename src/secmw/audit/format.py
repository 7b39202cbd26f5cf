"""Rendering audit events: a structlog processor chain ending in one JSON line.

Every sink that writes text runs an event through an :class:`AuditFormatter`:
``AuditEvent.to_dict()``, then the processors (structlog's
``(logger, method_name, event_dict) -> event_dict`` contract, so structlog's own
processors and users' ones plug in), then a renderer. The default renderer is
the standard library's ``json`` with ``ensure_ascii``: orjson would be faster but
writes U+2028 and other non-ASCII characters raw, and the trail promises lines
that are plain ASCII, whatever a client put in a path or header.

The request is bound to the context with :func:`bind_request` (structlog's
contextvars, key ``request_id``), so the app's own structlog lines carry the
same id, and an event emitted without ``request_id`` inside a request gets it
from the context (:func:`fill_request_id`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from contextvars import ContextVar
from typing import Any, Protocol

import structlog
from structlog.contextvars import (
    bind_contextvars,
    get_contextvars,
    unbind_contextvars,
)

from secmw.audit.base import AuditEvent, _plain_value

EventDict = MutableMapping[str, Any]
Processor = Callable[[Any, str, EventDict], Any]
Renderer = Callable[[Any, str, EventDict], str]

# Keys the hash chain owns; a processor cannot forge them.
_CHAIN_KEYS = ("seq", "prev")
_LEVELS = {"info": "info", "warning": "warning", "error": "error", "critical": "critical"}


class _Bindable(Protocol):
    request_id: str
    state: dict[str, Any]


_STATE_KEY = "secmw.audit.contextvar"
# structlog's own ContextVar for ``request_id``, taken from the first binding's token:
# later bindings set it directly (a ``set`` instead of structlog's per-call lookups).
_request_var: ContextVar[Any] | None = None


def bind_request(ctx: _Bindable) -> None:
    """Bind ``ctx.request_id`` as ``request_id`` in structlog's contextvars.

    The ASGI adapter calls the app in the task that built the context, so the
    app's structlog loggers (with ``merge_contextvars``) see the same id.
    """
    global _request_var  # noqa: PLW0603 - created once, by structlog
    if _request_var is None:
        token = bind_contextvars(request_id=ctx.request_id)["request_id"]
        _request_var = token.var
    else:
        token = _request_var.set(ctx.request_id)
    ctx.state[_STATE_KEY] = token


def unbind_request(ctx: _Bindable) -> None:
    """Restore what ``request_id`` was before :func:`bind_request` (an outer binding stays)."""
    token = ctx.state.pop(_STATE_KEY, None)
    if token is None:
        return
    try:
        token.var.reset(token)
    except ValueError:  # recorded from another context than the one that bound it
        unbind_contextvars("request_id")


def fill_request_id(logger: Any, method_name: str, event_dict: EventDict) -> EventDict:
    """Processor: take ``request_id`` from the context when the event has none."""
    if "request_id" not in event_dict:
        request_id = get_contextvars().get("request_id")
        if request_id is not None:
            event_dict["request_id"] = request_id
    return event_dict


# Built once: json.dumps with options builds a new encoder on every call.
_ENCODER = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"), default=str)


def json_line(logger: Any, method_name: str, event_dict: EventDict) -> str:
    """Renderer: compact, ASCII-only JSON (CR, LF, NUL and U+2028 stay escaped)."""
    return _ENCODER.encode(event_dict)


class AuditFormatter:
    """Runs an event through the processor chain and renders one line (without newline).

    ``processors`` run after the built-in ones (``fill_request_id``, then the OCSF
    shaping when ``ocsf`` is true); a processor may raise ``structlog.DropEvent``,
    and :meth:`render` then returns ``None``.
    """

    __slots__ = ("_chain", "_plain", "_renderer", "ocsf")

    def __init__(
        self,
        processors: Sequence[Processor] = (),
        *,
        ocsf: bool = False,
        renderer: Renderer = json_line,
    ) -> None:
        chain: list[Processor] = [fill_request_id]
        if ocsf:
            from secmw.audit.ocsf import ocsf_shape  # noqa: PLC0415 - only when asked for

            chain.append(ocsf_shape)
        chain.extend(processors)
        self._chain = tuple(chain)
        self._renderer = renderer
        self.ocsf = ocsf
        # Nothing but the built-ins: AuditEvent.to_json renders the same text faster.
        self._plain = not processors and not ocsf and renderer is json_line

    def needs_context(self, event: AuditEvent) -> bool:
        """True when rendering ``event`` may read context variables (so a copy must go along)."""
        return not self._plain or event.request_id is None

    def render(self, event: AuditEvent) -> str | None:
        """The event's line, or ``None`` when a processor dropped it."""
        if self._plain and event.request_id is not None:
            return event.to_json()
        data: Any = event.to_dict()
        method = _LEVELS.get(event.severity, "info")
        try:
            for processor in self._chain:
                data = processor(None, method, data)
        except structlog.DropEvent:
            return None
        if isinstance(data, Mapping):
            for key in _CHAIN_KEYS:
                if key in data:
                    data = dict(data)
                    del data[key]
            return _one_line(self._renderer(None, method, data), method)
        text = data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data)
        return _one_line(text, method)


def plain_line(event: AuditEvent) -> str:
    """The event without processors; a bare record when even that cannot render."""
    try:
        return event.to_json()
    except Exception:  # e.g. a details value that refers to itself
        return AuditEvent(
            name=event.name,
            outcome=event.outcome,
            severity=event.severity,
            time=event.time,
            request_id=event.request_id,
            reason="event could not be rendered",
        ).to_json()


def _one_line(text: str, method: str) -> str:
    """A rendered event as one ASCII JSON object without chain fields.

    A renderer at the end of the processors may write non-ASCII text (a lone
    surrogate from a client cannot even be encoded), set ``seq``/``prev`` (two of
    each on the line), or write something that is not one JSON object (kept as a
    value). Such text is parsed and written again with the built-in renderer.
    """
    if (
        text.startswith("{")
        and text.endswith("}")
        and text.isascii()
        and "\n" not in text
        and '"seq"' not in text
        and '"prev"' not in text
    ):
        return text
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict):
        for key in _CHAIN_KEYS:
            data.pop(key, None)
        return json_line(None, method, data)
    return json_line(None, method, {"message": text})


# C0 and C1 controls, DEL, line and paragraph separators, bidi controls and marks,
# invisible characters (zero-width, word joiner, BOM), surrogates.
_UNPRINTABLE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff\ud800-\udfff]"
)


def _escaped(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def _printable(value: Any) -> Any:
    """``value`` with every string (and key) holding no unprintable character."""
    if isinstance(value, str):
        return _UNPRINTABLE.sub(_escaped, value) if _UNPRINTABLE.search(value) else value
    if isinstance(value, Mapping):
        return {_printable(key): _printable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_printable(item) for item in value]
    return value


def printable_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    """``fields`` fit for an app's log renderer: clipped as in the trail, and printable.

    For client-chosen text bound for a structlog logger (a console renderer
    writes terminal escapes as they are; a lone surrogate makes the write fail).
    """
    plain: dict[str, Any] = _printable(_plain_value(fields, 0))
    return plain


class StructlogAuditSink:
    """Sends each event through a structlog logger, so the app's structlog setup applies.

    The event name is the log message (``event`` key), the level follows the
    severity, and the fields are the event's ``to_dict()``.
    """

    # emit returns within its own bound: the pipeline needs no deadline around it.
    bounded_emit = True

    __slots__ = ("_logger",)

    def __init__(self, logger: Any = None) -> None:
        self._logger = logger if logger is not None else structlog.get_logger("secmw.audit")

    async def emit(self, event: AuditEvent) -> None:
        """Log ``event`` at the level its severity names.

        Client-chosen text (paths, tool names, claims) is made printable first:
        the app's renderer may write it as is (a console renderer would pass on
        terminal escapes, and a lone surrogate makes the write fail, losing the
        record). Control, bidi and surrogate characters become ``\\uXXXX``.
        """
        data = _printable(event.to_dict())
        name = data.pop("event")
        getattr(self._logger, _LEVELS.get(event.severity, "info"))(name, **data)

    async def aclose(self) -> None:
        """Nothing to flush: the logger's own output handles it."""


__all__ = [
    "AuditFormatter",
    "EventDict",
    "Processor",
    "StructlogAuditSink",
    "bind_request",
    "fill_request_id",
    "json_line",
    "plain_line",
    "printable_fields",
    "unbind_request",
]
