"""Alert sinks and the de-duplication in front of them.

An attack repeats: the same detector fires for the same key again and again.
:class:`AlertDeduplicator` lets one alert per (detector, key) through per
window and folds the rest into the next alert's ``suppressed`` count, so an
attack does not become an alert flood. The audit trail still gets every event.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from secmw.anomaly.base import Alert, Anomaly, bounded_key
from secmw.anomaly.state import KeyedState
from secmw.audit.format import printable_fields


class AlertDeduplicator:
    """One alert per (detector, key) per ``window`` seconds; the rest are counted."""

    __slots__ = ("_seen", "window")

    def __init__(self, window: float = 300.0, max_keys: int = 100_000) -> None:
        self.window = window
        # (detector, key) -> [window start, alerts suppressed since]
        self._seen: KeyedState[list[float]] = KeyedState(max_keys, max(window, 1.0) * 2)

    def admit(self, anomaly: Anomaly, now: float) -> Alert | None:
        """The alert to send for ``anomaly``, or ``None`` when it is a duplicate."""
        key = (anomaly.detector, bounded_key(anomaly.key))
        entry = self._seen.get(key, now)
        if entry is not None and now - entry[0] < self.window:
            entry[1] += 1
            return None
        suppressed = int(entry[1]) if entry is not None else 0
        self._seen.put(key, now, [now, 0.0])
        return Alert(anomaly, suppressed)


class CallbackAlertSink:
    """Calls a function (plain or ``async``) with each :class:`Alert`."""

    __slots__ = ("_callback",)

    def __init__(self, callback: Callable[[Alert], Awaitable[None] | None]) -> None:
        self._callback = callback

    async def send(self, alert: Alert) -> None:
        """Call the callback, awaiting it when it returns an awaitable."""
        result = self._callback(alert)
        if inspect.isawaitable(result):
            await result

    async def aclose(self) -> None:
        """Nothing to release."""


class MemoryAlertSink:
    """Keeps alerts in a list, for tests."""

    __slots__ = ("alerts", "closed")

    def __init__(self) -> None:
        self.alerts: list[Alert] = []
        self.closed = False

    async def send(self, alert: Alert) -> None:
        """Append ``alert``."""
        self.alerts.append(alert)

    async def aclose(self) -> None:
        """Mark the sink closed."""
        self.closed = True


class StructlogAlertSink:
    """Logs each alert as a structlog ``warning`` event named ``secmw_anomaly``."""

    __slots__ = ("_logger",)

    def __init__(self, logger: Any = None) -> None:
        self._logger = logger if logger is not None else structlog.get_logger("secmw.anomaly")

    async def send(self, alert: Alert) -> None:
        """Log ``alert`` with its fields as key-value pairs (its event name as ``anomaly``).

        Keys, subjects and evidence may be a client's text (a claimed login name):
        clipped and made printable as the structlog audit sink does.
        """
        fields = printable_fields(alert.to_dict())
        fields["anomaly"] = fields.pop("event")
        self._logger.warning("secmw_anomaly", **fields)

    async def aclose(self) -> None:
        """Nothing to release."""
