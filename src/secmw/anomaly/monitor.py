"""The anomaly monitor: runs the detectors, enforces their responses, publishes anomalies.

It plugs into the pipeline twice. As an *observer* it sees every request's
audit event (outcome detectors: authentication failures, refusals). As the
*guard* it runs before authentication (blocks keyed by client address, so a
blocked address gets the block whatever credentials it sends) and right after
it (request detectors, blocks and step-ups keyed by subject or credential).

Anomalies become audit events and alerts. Observers are synchronous, so both
are queued and published by :class:`AnomalyAuditSink`, which wraps the
pipeline's audit sink and flushes the queue right after the request's own
event: the anomaly lines follow the line of the request that caused them.
"""

from __future__ import annotations

import math
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Literal

from secmw.anomaly.alerts import AlertDeduplicator
from secmw.anomaly.base import (
    ENFORCED,
    Alert,
    AlertSink,
    Anomaly,
    Detector,
    KeyKind,
    bounded_key,
    client_key,
)
from secmw.anomaly.routing import route_outcomes
from secmw.anomaly.shared import SharedState
from secmw.anomaly.state import KeyedState
from secmw.audit.base import AuditEvent, AuditSink
from secmw.auth.stepup import step_up_needed
from secmw.context import RequestContext
from secmw.errors import AccessDenied, Denial, RateLimited, StepUpRequired

# draft-ietf-httpapi-ratelimit-headers: the problem type for a quota cut on abuse.
ABNORMAL_USAGE = "https://iana.org/assignments/http-problem-types#abnormal-usage-detected"
_BLOCKED = "Requests are temporarily refused after unusual activity."

Enforcement = tuple[float, Anomaly]


class AnomalyMonitor:
    """Detectors plus their responses: ``alert``, ``step_up`` (RFC 9470) or ``block``.

    A ``block`` refuses the key for the detector's ``cool_down`` seconds with
    ``block_status`` (429 with ``Retry-After`` and the ``abnormal-usage-detected``
    problem type, or 403 with ``Retry-After``). A ``step_up`` answers the key's
    requests for ``cool_down`` seconds with an RFC 9470 challenge until the
    principal shows an authentication newer than the anomaly (``max_age``) and,
    when ``step_up_acr_values`` is set, one of those ``acr`` values. With
    ``shared`` (a :class:`~secmw.anomaly.shared.SharedState`) the attack counts
    and every block and step-up live in Redis, shared by several instances.
    """

    __slots__ = (
        "_always",
        "_block_data",
        "_blocks",
        "_clock",
        "_dedup",
        "_on_401",
        "_on_failure",
        "_outcome",
        "_pending_alerts",
        "_pending_events",
        "_request",
        "_step_data",
        "_step_ups",
        "alert_sinks",
        "block_status",
        "detectors",
        "dropped",
        "on_anomaly",
        "shared",
        "step_up_acr_values",
    )

    @property
    def needs_body(self) -> bool:
        """True when a detector reads the request body (tool names of a ``tools/call``)."""
        return any(getattr(detector, "needs_body", False) for detector in self.detectors)

    def __init__(
        self,
        detectors: Sequence[Detector],
        *,
        alert_sinks: Sequence[AlertSink] = (),
        dedup_window: float = 300.0,
        block_status: Literal[403, 429] = 429,
        step_up_acr_values: Sequence[str] = (),
        clock: Callable[[], float] = time.time,
        max_enforced: int = 100_000,
        max_pending: int = 1000,
        on_anomaly: Callable[[Anomaly], None] | None = None,
        shared: SharedState | None = None,
    ) -> None:
        names = [detector.name for detector in detectors]
        if len(set(names)) != len(names):
            raise ValueError("detector names must be unique")
        self.detectors = tuple(detectors)
        self._request = tuple(d for d in detectors if d.phase == "request")
        self._outcome = tuple(d for d in detectors if d.phase == "outcome")
        self._always, self._on_failure, self._on_401 = route_outcomes(self._outcome)
        self.alert_sinks = tuple(alert_sinks)
        self.block_status = block_status
        self.step_up_acr_values = tuple(step_up_acr_values)
        self._clock = clock
        self._dedup = AlertDeduplicator(dedup_window)
        longest = max((d.cool_down for d in detectors), default=1.0)
        self._blocks: KeyedState[Enforcement] = KeyedState(max_enforced, longest)
        self._step_ups: KeyedState[Enforcement] = KeyedState(max_enforced, longest)
        # The tables' dicts, tested for emptiness on every request without a method call.
        self._block_data = self._blocks.data
        self._step_data = self._step_ups.data
        self._pending_events: deque[AuditEvent] = deque(maxlen=max_pending)
        self._pending_alerts: deque[Alert] = deque(maxlen=max_pending)
        self.dropped = 0
        self.on_anomaly = on_anomaly
        self.shared = shared
        if shared is not None:
            shared.attach(self.detectors)

    # -- the guard ---------------------------------------------------------

    async def before(self, ctx: RequestContext) -> None:
        """Refuse a request from a blocked client address, whatever its credentials."""
        if ctx.client is None:
            return
        client = bounded_key(client_key(ctx.client))
        if self._block_data:
            self._check_block(ctx, "client", client, self._clock())
        if self.shared is not None:
            now = self._clock()
            await self.shared.before(self, ctx, client, now)
            if self._block_data:
                self._check_block(ctx, "client", client, now)

    async def after_authentication(self, ctx: RequestContext) -> None:
        """Run the request detectors, then refuse a blocked or stepped-up principal."""
        now = self._clock()
        fired = False
        shared = self.shared
        for detector in self._request:
            if shared is not None and detector in shared.detectors:
                continue
            anomaly = detector.check(ctx, None, now)
            if anomaly is not None:
                self.act(anomaly, detector.cool_down, now)
                fired = True
        if shared is not None and await shared.after_authentication(self, ctx, now):
            fired = True
        if not (self._block_data or self._step_data):
            return
        principal = ctx.principal
        # Keys as the detectors hold them (long ones bounded), so lookups find them.
        subject = bounded_key(principal.subject) if principal.subject else ""
        credential = bounded_key(principal.credential_id) if principal.credential_id else ""
        client = bounded_key(client_key(ctx.client)) if ctx.client is not None else ""
        if self._block_data:
            if subject:
                self._check_block(ctx, "subject", subject, now)
            if credential:
                self._check_block(ctx, "credential", credential, now)
            # The address was checked before authentication, unless a detector just fired.
            if fired and client:
                self._check_block(ctx, "client", client, now)
        if self._step_data:
            if subject:
                self._check_step_up(ctx, "subject", subject, now)
            if credential:
                self._check_step_up(ctx, "credential", credential, now)
            if client:
                self._check_step_up(ctx, "client", client, now)

    def _check_block(self, ctx: RequestContext, kind: KeyKind, key: str, now: float) -> None:
        entry = self._blocks.get((kind, key), now)
        if entry is None:
            return
        until, anomaly = entry
        if until <= now:
            self._blocks.pop((kind, key))
            return
        ctx.state[ENFORCED] = anomaly.detector
        raise self._block_denial(anomaly, until - now)

    def _block_denial(self, anomaly: Anomaly, remaining: float) -> Denial:
        reason = f"{anomaly.key_kind} blocked by {anomaly.detector} for {remaining:.0f} s more"
        denial: Denial
        if self.block_status == 429:
            denial = RateLimited(remaining, _BLOCKED, problem_type=ABNORMAL_USAGE, reason=reason)
        else:
            seconds = str(max(1, math.ceil(remaining))).encode()
            denial = AccessDenied(_BLOCKED, reason=reason, headers=[(b"retry-after", seconds)])
        denial.event = anomaly.event
        return denial

    def _check_step_up(self, ctx: RequestContext, kind: KeyKind, key: str, now: float) -> None:
        entry = self._step_ups.get((kind, key), now)
        if entry is None:
            return
        until, anomaly = entry
        if until <= now:
            self._step_ups.pop((kind, key))
            return
        # Only an authentication newer than the anomaly satisfies the challenge.
        max_age = max(0, math.floor(now - anomaly.time))
        if not step_up_needed(
            ctx.principal, acr_values=self.step_up_acr_values, max_age=max_age, now=now
        ):
            return
        ctx.state[ENFORCED] = anomaly.detector
        denial = StepUpRequired(
            acr_values=self.step_up_acr_values,
            max_age=max_age,
            reason=f"step-up required by {anomaly.detector} for {until - now:.0f} s more",
        )
        denial.event = anomaly.event
        raise denial

    # -- the observer ------------------------------------------------------

    def observe(self, ctx: RequestContext, event: AuditEvent) -> None:
        """Feed the request's audit event to the outcome detectors that can count it."""
        if event.outcome == "failure":
            detectors = self._on_failure.get(event.name, self._always)
        elif event.status == 401 and event.outcome == "success":
            detectors = self._on_401
        else:
            detectors = self._always
        if not detectors:
            return
        now = self._clock()
        shared = self.shared
        for detector in detectors:
            if shared is not None and detector in shared.detectors:
                shared.count(detector, ctx, event, now)  # type: ignore[arg-type]
                continue
            anomaly = detector.check(ctx, event, now)
            if anomaly is not None:
                self.act(anomaly, detector.cool_down, now)

    # -- responses and publication ----------------------------------------

    def act(self, anomaly: Anomaly, cool_down: float, now: float, *, stored: bool = False) -> None:
        """Enforce ``anomaly``'s response and queue its audit event and alert.

        ``stored``: the shared state already holds the enforcement (set by the
        same Redis script that counted); otherwise it is sent there too.
        """
        key = (anomaly.key_kind, bounded_key(anomaly.key))  # a custom detector's key too
        if anomaly.response == "block":
            self._blocks.put(key, now, (now + cool_down, anomaly))
        elif anomaly.response == "step_up":
            self._step_ups.put(key, now, (now + cool_down, anomaly))
        if self.shared is not None and anomaly.response != "alert" and not stored:
            self.shared.publish(anomaly, now + cool_down)
        if len(self._pending_events) == self._pending_events.maxlen:
            self.dropped += 1
        self._pending_events.append(_audit_event(anomaly, cool_down))
        if self.alert_sinks:
            alert = self._dedup.admit(anomaly, now)
            if alert is not None:
                self._pending_alerts.append(alert)
        if self.on_anomaly is not None:
            self.on_anomaly(anomaly)

    def remember(self, anomaly: Anomaly, until: float) -> None:
        """Keep an enforcement read from the shared state until it ends (no new event)."""
        table = self._blocks if anomaly.response == "block" else self._step_ups
        now = self._clock()
        table.put((anomaly.key_kind, bounded_key(anomaly.key)), now, (until, anomaly))

    def queue_event(self, event: AuditEvent) -> None:
        """Queue an audit event (the shared state's outage and recovery) for the next flush."""
        if len(self._pending_events) == self._pending_events.maxlen:
            self.dropped += 1
        self._pending_events.append(event)

    def active(self, kind: KeyKind, key: str) -> str | None:
        """The response in force for a key (``block``, ``step_up``), or ``None``."""
        now = self._clock()
        key = bounded_key(key)
        for name, table in (("block", self._blocks), ("step_up", self._step_ups)):
            entry = table.get((kind, key), now)
            if entry is not None and entry[0] > now:
                return name
        return None

    def tracked_keys(self) -> dict[str, int]:
        """Keys held per detector (each bounded by its ``max_keys``), idle ones dropped first.

        Read at each metrics scrape: the one time every key is looked at, so keys
        left idle by a burst long over do not stay in memory until new ones push
        them out. Custom detectors without ``expire(now)`` are counted as they are.
        """
        now = self._clock()
        for detector in self.detectors:
            expire = getattr(detector, "expire", None)
            if callable(expire):
                expire(now)
        return {detector.name: detector.tracked_keys() for detector in self.detectors}

    def evicted_keys(self) -> dict[str, int]:
        """Live keys each detector dropped to stay under its ``max_keys`` (since start)."""
        evicted: dict[str, int] = {}
        for detector in self.detectors:
            count = getattr(detector, "evicted_keys", None)
            if callable(count):
                evicted[detector.name] = count()
        return evicted

    async def flush(self, audit: AuditSink | None) -> None:
        """Publish the queued anomaly events to ``audit`` and alerts to the sinks."""
        if self.shared is not None:
            await self.shared.flush(self)
        events = self._pending_events
        while events:
            event = events.popleft()
            if audit is None:
                continue
            try:
                await audit.emit(event)
            except Exception as exc:
                print(
                    f"secmw: audit sink failed with {type(exc).__name__}; event {event.name} lost",
                    file=sys.stderr,
                )
        alerts = self._pending_alerts
        while alerts:
            alert = alerts.popleft()
            for sink in self.alert_sinks:
                try:
                    await sink.send(alert)
                except Exception as exc:
                    print(
                        f"secmw: alert sink {type(sink).__name__} failed with {type(exc).__name__}",
                        file=sys.stderr,
                    )

    async def startup(self) -> None:
        """Open the alert sinks again after :meth:`aclose` (a pipeline started once more)."""
        for sink in self.alert_sinks:
            start = getattr(sink, "startup", None)
            if callable(start):
                await start()

    async def aclose(self) -> None:
        """Close every alert sink (a webhook delivers what it has queued) and the shared state."""
        if self.shared is not None:
            await self.shared.aclose()
        for sink in self.alert_sinks:
            try:
                await sink.aclose()
            except Exception as exc:
                print(
                    f"secmw: closing alert sink {type(sink).__name__} failed with "
                    f"{type(exc).__name__}",
                    file=sys.stderr,
                )

    def audit_sink(self, inner: AuditSink | None) -> AnomalyAuditSink:
        """Wrap the pipeline's audit sink so anomaly events follow each request's event."""
        return AnomalyAuditSink(inner, self)


def _audit_event(anomaly: Anomaly, cool_down: float) -> AuditEvent:
    details: dict[str, Any] = {
        "detector": anomaly.detector,
        "key_kind": anomaly.key_kind,
        "key": anomaly.key,
        "response": anomaly.response,
        "evidence": dict(anomaly.evidence),
    }
    if anomaly.response != "alert":
        details["cool_down_s"] = cool_down
    return AuditEvent(
        name=anomaly.event,
        outcome="failure",
        severity="error" if anomaly.response == "block" else "warning",
        request_id=anomaly.request_id,
        client=anomaly.client,
        subject=anomaly.subject,
        reason=anomaly.reason,
        details=details,
    )


class AnomalyAuditSink:
    """An audit sink that passes events on, then publishes the monitor's anomalies."""

    __slots__ = ("inner", "monitor")

    def __init__(self, inner: AuditSink | None, monitor: AnomalyMonitor) -> None:
        self.inner = inner
        self.monitor = monitor

    async def emit(self, event: AuditEvent) -> None:
        """Emit ``event``, then any anomaly events and alerts queued meanwhile."""
        try:
            if self.inner is not None:
                await self.inner.emit(event)
        finally:
            await self.monitor.flush(self.inner)

    def __getattr__(self, name: str) -> Any:
        # Other attributes (a file sink's queue depth, its failure policy) are the inner sink's.
        if self.inner is None:
            raise AttributeError(name)
        return getattr(self.inner, name)

    async def startup(self) -> None:
        """Open the wrapped sink and the alert sinks again (a pipeline started once more)."""
        start = getattr(self.inner, "startup", None)
        if callable(start):
            await start()
        await self.monitor.startup()

    async def aclose(self) -> None:
        """Publish what is queued, close the alert sinks, then the wrapped sink."""
        await self.monitor.flush(self.inner)
        await self.monitor.aclose()
        if self.inner is not None:
            await self.inner.aclose()
