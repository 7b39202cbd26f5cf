"""Anomaly state shared through Redis, so several instances count and enforce together.

What is shared: the authentication-failure bursts (by client and by subject),
repeated denials, token reuse across addresses, and every ``block`` and
``step_up`` in force, whoever set it. What stays per instance: the rate-spike
baselines and the learned profiles (``new_target``, ``off_hours``), which are
habits rather than attack counts. Enforcements read from Redis are also kept
in the instance's own tables until they end, so a blocked key costs a round
trip once per instance, not once per request.

Round trips: ``before`` asks for the client address's block and step-up (one
``EVALSHA``); ``after_authentication`` sends, in one ``EVALSHA``, the token-reuse
update, the subject's and credential's enforcements and any enforcement a local
detector decided; an outcome that counts (a failed authentication, a refusal)
is counted in one more after the request's audit event. An ordinary
authenticated request therefore costs two, an anonymous one one.

When Redis does not answer (``on_failure``): ``local_fallback`` counts and
enforces in this instance's memory, as without Redis; ``fail_closed`` answers
503 until Redis is back (outcome counts still fall back: a response that is
already sent cannot be refused). Either way the first failure is audited as
``sys_monitor_disabled`` and the recovery as ``sys_monitor_enabled`` with the
number of operations done without Redis; Redis is retried at most every
``retry_interval`` seconds.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Literal

from secmw.anomaly.base import Anomaly, Detector, KeyKind, bounded_key, client_key
from secmw.anomaly.detectors import AuthFailureBurst, RepeatedDenials, TokenReuse
from secmw.anomaly.redis_lua import SCRIPT, SCRIPT_SHA
from secmw.audit.base import AuditEvent
from secmw.context import RequestContext
from secmw.errors import ComponentError
from secmw.ratelimit.redis_store import RedisStore, StorageUnavailable

if TYPE_CHECKING:
    from secmw.anomaly.monitor import AnomalyMonitor

FailureMode = Literal["local_fallback", "fail_closed"]
Windowed = AuthFailureBurst | RepeatedDenials
# Queued outcome counts: (detector, context, event, key, time).
Count = tuple[Windowed, RequestContext, AuditEvent, str, float]
# Enforcements this instance decided, not yet in Redis: (Redis key, record, until).
Outgoing = tuple[str, str, float]
# An enforcement to look up: (table "b" or "s", key kind, key).
Wanted = tuple[str, KeyKind, str]


class AnomalyStorageUnavailable(ComponentError):
    """The shared anomaly state did not answer (connection refused, timeout, error reply)."""


def _integer(value: Any) -> int:
    """A count or TTL from the script's reply; 0 for anything else."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _record(value: Any) -> dict[str, Any]:
    """An enforcement record, or ``{}`` when it is not the JSON object this module writes."""
    try:
        record = json.loads(value)
    except (TypeError, ValueError, RecursionError):
        return {}
    return record if isinstance(record, dict) else {}


def _time(value: Any, default: float) -> float:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else default


class _Connection(RedisStore):
    """The rate limiter's Redis connection handling (URL forms, timeouts, trio), another script."""

    __slots__ = ()

    async def run(self, keys: list[str], args: list[Any]) -> list[Any]:
        """Run the anomaly script; :class:`AnomalyStorageUnavailable` on any failure."""
        from redis.exceptions import RedisError  # noqa: PLC0415

        # Subjects and tool names come from tokens and bodies: a lone surrogate has
        # no UTF-8 form, so keys are sent as bytes with it escaped.
        encoded: list[Any] = [key.encode("utf-8", "backslashreplace") for key in keys]
        keys = encoded
        try:
            reply: list[Any] = await self.run_script(SCRIPT, SCRIPT_SHA, keys, args)
        except (RedisError, OSError, TimeoutError, StorageUnavailable) as exc:
            raise AnomalyStorageUnavailable(
                f"anomaly storage failed: {type(exc).__name__}"
            ) from None
        return reply


def _part(kind: KeyKind | str, key: str) -> str:
    """A key as it appears in a Redis key: credentials (and overlong keys) are hashed."""
    if kind == "credential" or len(key) > 100:
        # A claim may hold a lone surrogate (a JSON escape): no strict UTF-8 form.
        return "h:" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return key


def _ms(seconds: float) -> str:
    return repr(seconds * 1000.0)


class SharedState:
    """Redis-backed counting and enforcement for an :class:`AnomalyMonitor`."""

    __slots__ = (
        "_next_probe",
        "_outbox",
        "_pending",
        "connection",
        "degraded",
        "detectors",
        "down",
        "enforced",
        "mode",
        "prefix",
        "retry_interval",
        "reuse",
    )

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "secmw:anomaly",
        connect_timeout: float = 0.25,
        timeout: float = 0.25,
        on_failure: FailureMode = "local_fallback",
        retry_interval: float = 0.5,
        max_pending: int = 1000,
    ) -> None:
        if on_failure not in ("local_fallback", "fail_closed"):
            raise ValueError(f"unknown failure mode {on_failure!r}")
        self.connection = _Connection(
            url, prefix=prefix, connect_timeout=connect_timeout, timeout=timeout
        )
        self.prefix = self.connection.prefix  # "{prefix}:": one hash slot on a Cluster
        self.mode: FailureMode = on_failure
        self.retry_interval = retry_interval
        self.down = False
        self.degraded = 0
        self._next_probe = 0.0
        self.detectors: frozenset[Detector] = frozenset()
        self.enforced: frozenset[tuple[str, str]] = frozenset()
        self.reuse: tuple[TokenReuse, ...] = ()
        self._pending: deque[Count] = deque(maxlen=max_pending)
        self._outbox: deque[Outgoing] = deque(maxlen=max_pending)

    def attach(self, detectors: Iterable[Detector]) -> None:
        """Pick the detectors whose state is shared (the monitor calls this once)."""
        shared = [d for d in detectors if isinstance(d, AuthFailureBurst | RepeatedDenials)]
        self.reuse = tuple(d for d in detectors if isinstance(d, TokenReuse))
        self.detectors = frozenset([*shared, *self.reuse])
        # Which enforcements can exist, by table and key kind: only those are asked for
        # (every instance is expected to run the same detector settings).
        self.enforced = frozenset(
            (_table(d), d.key_kind) for d in detectors if d.response != "alert"
        )

    def enforcement_key(self, table: str, kind: KeyKind, key: str) -> str:
        """The Redis key of a block (``b``) or step-up (``s``) of one key."""
        return f"{self.prefix}{table}:{kind}:{_part(kind, key)}"

    # -- the guard ---------------------------------------------------------

    async def before(
        self, monitor: AnomalyMonitor, ctx: RequestContext, client: str, now: float
    ) -> None:
        """Bring the client address's block and step-up in force elsewhere into the monitor."""
        wanted: list[Wanted] = [
            (table, "client", client) for table in ("b", "s") if (table, "client") in self.enforced
        ]
        if not (wanted or self._outbox):
            return
        keys = [self.enforcement_key(table, kind, key) for table, kind, key in wanted]
        args: list[Any] = [_ms(now)] + ["g"] * len(wanted)
        sent = self._add_outbox(keys, args, now)
        reply = await self._call(monitor, ctx, keys, args, sent=sent, now=now, guard=True)
        if reply is not None:
            self._adopt(monitor, reply, wanted, now)

    async def after_authentication(
        self, monitor: AnomalyMonitor, ctx: RequestContext, now: float
    ) -> bool:
        """Token reuse and the principal's enforcements, in one round trip; true if one fired."""
        principal = ctx.principal
        # Keys as the detectors count them (long ones bounded), so both meet in Redis.
        credential = bounded_key(principal.credential_id) if principal.credential_id else ""
        client = bounded_key(client_key(ctx.client)) if ctx.client else ""
        subject = bounded_key(principal.subject) if principal.subject else ""
        named: tuple[tuple[KeyKind, str], ...] = (("subject", subject), ("credential", credential))
        wanted: list[Wanted] = [
            (table, kind, key)
            for kind, key in named
            if key
            for table in ("b", "s")
            if (table, kind) in self.enforced
        ]
        reusing = self.reuse if credential and client else ()
        if not (wanted or reusing or self._outbox):
            return False
        keys: list[str] = []
        args: list[Any] = [_ms(now)]
        for detector in reusing:
            value, px = _enforcement(detector, "credential", credential, now)
            keys += (
                f"{self.prefix}r:{detector.name}:{_part('credential', credential)}",
                self.enforcement_key(_table(detector), "credential", credential),
            )
            args += ("r", client, _ms(detector.window), detector.threshold, value, px)
        for table, kind, key in wanted:
            keys.append(self.enforcement_key(table, kind, key))
            args.append("g")
        sent = self._add_outbox(keys, args, now)
        reply = await self._call(monitor, ctx, keys, args, sent=sent, now=now, guard=True)
        fired = False
        if reply is None:  # counted here, as without Redis
            for detector in reusing:
                anomaly = detector.check(ctx, None, now)
                if anomaly is not None:
                    monitor.act(anomaly, detector.cool_down, now)
                    fired = True
            return fired
        for index, detector in enumerate(reusing):
            count = _integer(reply[index * 2])
            if count:
                anomaly = detector.anomaly(ctx, credential, client, count, now)
                monitor.act(anomaly, detector.cool_down, now, stored=True)
                fired = True
        self._adopt(monitor, reply[len(reusing) * 2 :], wanted, now)
        return fired

    # -- outcome counts ----------------------------------------------------

    def count(self, detector: Windowed, ctx: RequestContext, event: AuditEvent, now: float) -> None:
        """Queue an outcome for counting in Redis (observers cannot wait for a round trip)."""
        key = detector.counted_key(ctx, event)
        if key:
            self._pending.append((detector, ctx, event, key, now))

    async def flush(self, monitor: AnomalyMonitor) -> None:
        """Count the queued outcomes in one round trip (locally when Redis is down)."""
        if not self._pending:
            return
        items = list(self._pending)
        now = items[-1][4]
        keys: list[str] = []
        args: list[Any] = [_ms(now)]
        for detector, _, _, key, at in items:
            value, px = _enforcement(detector, detector.key_kind, key, at)
            keys += (
                f"{self.prefix}w:{detector.name}:{_part(detector.key_kind, key)}",
                self.enforcement_key(_table(detector), detector.key_kind, key),
            )
            args += ("w", _ms(at), _ms(detector.window), detector.threshold, value, px)
        # Taken only once the round trip is built: if that failed, the counts stay queued.
        self._pending.clear()
        sent = self._add_outbox(keys, args, now)
        reply = await self._call(monitor, items[-1][1], keys, args, sent=sent, now=now, guard=False)
        for index, (detector, ctx, event, key, at) in enumerate(items):
            if reply is None:
                anomaly = detector.check(ctx, event, at)
                if anomaly is not None:
                    monitor.act(anomaly, detector.cool_down, at)
            elif int(reply[index * 2]):
                anomaly = detector.anomaly(ctx, event, key, at)
                monitor.act(anomaly, detector.cool_down, at, stored=True)

    def publish(self, anomaly: Anomaly, until: float) -> None:
        """Queue an enforcement decided here for Redis (sent with the next round trip)."""
        table = "b" if anomaly.response == "block" else "s"
        value, _ = _enforcement(anomaly, anomaly.key_kind, anomaly.key, anomaly.time)
        key = self.enforcement_key(table, anomaly.key_kind, anomaly.key)
        self._outbox.append((key, value, until))

    # -- plumbing ----------------------------------------------------------

    def _add_outbox(self, keys: list[str], args: list[Any], now: float) -> list[Outgoing]:
        sent = []
        while self._outbox:
            item = self._outbox.popleft()
            key, value, until = item
            if until > now:
                keys.append(key)
                args += ("s", value, max(1, int((until - now) * 1000)))
                sent.append(item)
        return sent

    def _adopt(
        self, monitor: AnomalyMonitor, reply: list[Any], wanted: list[Wanted], now: float
    ) -> None:
        for index, (table, kind, key) in enumerate(wanted):
            if index * 2 >= len(reply):
                break
            value, remaining = reply[index * 2], _integer(reply[index * 2 + 1])
            if not value or remaining <= 0:
                continue
            # An entry in force is enforced even when its record cannot be read (a
            # stray or foreign value): failing closed for that key, never crashing.
            record = _record(value)
            anomaly = Anomaly(
                detector=str(record.get("detector", "shared")),
                event=str(record.get("event", "anomaly_shared_enforcement")),
                key_kind=kind,
                key=key,
                response="block" if table == "b" else "step_up",
                reason="in force on another instance",
                time=_time(record.get("time"), now),
            )
            monitor.remember(anomaly, now + remaining / 1000.0)

    async def _call(
        self,
        monitor: AnomalyMonitor,
        ctx: RequestContext,
        keys: list[str],
        args: list[Any],
        *,
        sent: list[Outgoing],
        now: float,
        guard: bool,
    ) -> list[Any] | None:
        """The script's reply, or ``None`` when Redis is down (after auditing the change)."""
        if self.down and now < self._next_probe:
            self._outbox.extend(sent)  # not sent: kept for the round trip after recovery
            self._degraded(guard)
            return None
        try:
            reply = await self.connection.run(keys, args)
        except AnomalyStorageUnavailable:
            self._next_probe = now + self.retry_interval
            if not self.down:
                self.down = True
                self.degraded = 0
                monitor.queue_event(self._event(ctx, down=True))
            self._outbox.extend(sent)  # lost with the batch: sent again with the next one
            self._degraded(guard)
            return None
        if self.down:
            self.down = False
            monitor.queue_event(self._event(ctx, down=False))
        return reply

    def _degraded(self, guard: bool) -> None:
        self.degraded += 1
        if guard and self.mode == "fail_closed":
            raise AnomalyStorageUnavailable("anomaly storage unavailable")

    def _event(self, ctx: RequestContext, *, down: bool) -> AuditEvent:
        details: dict[str, Any] = {"component": "anomaly", "on_failure": self.mode}
        if not down:
            details["decided_without_storage"] = self.degraded
        return AuditEvent(
            name="sys_monitor_disabled" if down else "sys_monitor_enabled",
            outcome="failure" if down else "success",
            severity=("error" if self.mode == "fail_closed" else "warning") if down else "info",
            request_id=ctx.request_id,
            reason=(
                f"anomaly storage unavailable; on_failure={self.mode}"
                if down
                else "anomaly storage answers again"
            ),
            details=details,
        )

    async def aclose(self) -> None:
        """Close the Redis connections."""
        await self.connection.aclose()


def _table(detector: Detector) -> str:
    return "b" if detector.response == "block" else "s"


def _enforcement(
    source: Windowed | TokenReuse | Anomaly, kind: KeyKind, key: str, now: float
) -> tuple[str, str]:
    """The stored record of an enforcement (no key, no credential) and its expiry in ms."""
    if source.response == "alert":
        return "", "0"
    if isinstance(source, Anomaly):
        name, event, px = source.detector, source.event, "0"
    else:
        name, event, px = source.name, source.event, str(max(1, int(source.cool_down * 1000)))
    record = {"detector": name, "event": event, "key_kind": kind, "time": now}
    return json.dumps(record, separators=(",", ":")), px
