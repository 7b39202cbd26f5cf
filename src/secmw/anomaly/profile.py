"""Learned-profile detectors: first use of a tool or route, and access outside usual hours.

Both learn each principal's habits for a ``learning_period`` (and at least
``min_requests`` requests) before they say anything, and both are off by
default: a profile needs weeks of normal traffic to mean something. After an
alert the new tool, route, day or hour joins the profile, so each novelty
alerts once.
"""

from __future__ import annotations

import re
from datetime import datetime, tzinfo
from zoneinfo import ZoneInfo

from secmw.anomaly.base import Anomaly, KeyKind, Phase, Response, bounded_key
from secmw.anomaly.state import KeyedDetector, KeyedState
from secmw.audit.base import AuditEvent
from secmw.context import RequestContext

# Paths and path prefixes whose target is remembered, at most (a few hundred kB:
# every remembered string is cut at _MAX_TARGET characters, paths are the client's).
_ROUTE_CACHE = 4096
_MAX_TARGET = 256
# A path segment holding a run of 16 or more token characters (the redactor's own
# prefilter), wherever the run starts: "/bot<digits>:<token>" is one.
_TOKEN_SEGMENT = re.compile(r"/[^/]*?[A-Za-z0-9_+=.~-]{16,}[^/]*")
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_SLOT = 900.0  # the UTC offset is looked up once per quarter hour (see OffHours._local)


class _Targets:
    __slots__ = ("count", "first_seen", "targets")

    def __init__(self, now: float) -> None:
        self.first_seen = now
        self.count = 0
        self.targets: set[str] = set()


class NewTarget(KeyedDetector):
    """A principal calls an MCP tool (or a route) it never used after its learning period.

    The target is the tool name of a ``tools/call``, else the method and the
    first ``route_depth`` path segments (so ids deeper in the path do not count
    as new routes). A profile holds at most ``max_targets`` targets; a full one
    stops alerting rather than growing.
    """

    __slots__ = (
        "_cached",
        "_routes",
        "_state",
        "_whole_paths",
        "cool_down",
        "learning_period",
        "max_targets",
        "min_requests",
        "name",
        "response",
        "route_depth",
    )

    event = "anomaly_new_target"
    phase: Phase = "request"
    key_kind: KeyKind = "subject"
    # Tool names are in the body: the pipeline must read it (as for tool rules).
    needs_body = True

    def __init__(
        self,
        *,
        name: str = "new_target",
        learning_period: float = 7 * 86_400.0,
        min_requests: int = 50,
        route_depth: int = 2,
        max_targets: int = 256,
        idle_expiry: float = 30 * 86_400.0,
        response: Response = "alert",
        cool_down: float = 900.0,
        max_keys: int = 100_000,
    ) -> None:
        self.name = name
        self.learning_period = learning_period
        self.min_requests = min_requests
        self.route_depth = route_depth
        # method -> path (or path prefix) -> target: most traffic repeats a few
        # paths, routes repeat even when ids in paths do not, and a cached target
        # string keeps its hash for the profile's set lookup.
        self._routes: dict[str, dict[str, str]] = {}
        self._cached = 0
        self._whole_paths = True
        self.max_targets = max_targets
        self.response: Response = response
        self.cool_down = cool_down
        self._state: KeyedState[_Targets] = KeyedState(max_keys, idle_expiry)

    def _route(self, method: str, path: str) -> str:
        """The target of ``method`` on ``path``, remembered for the path and its prefix."""
        end = 0
        depth = self.route_depth
        while depth:
            end = path.find("/", end + 1)
            if end < 0:
                break
            depth -= 1
        prefix = (path if end < 0 else path[:end])[:_MAX_TARGET]
        if _TOKEN_SEGMENT.search(prefix):
            # A long token in the path is an id or a credential (/tokens/ghp_.../revoke):
            # not a route of its own, and never written into an alert.
            prefix = _TOKEN_SEGMENT.sub("/*", prefix)
        if self._cached >= _ROUTE_CACHE:
            # Paths are the client's to choose: start over rather than grow, and
            # stop remembering whole paths (ids in paths would only churn the cache).
            self._routes.clear()
            self._cached = 0
            self._whole_paths = False
        routes = self._routes.setdefault(method, {})
        route = routes.get(prefix)
        if route is None:
            route = routes[prefix] = method + " " + prefix
            self._cached += 1
        # The whole path too, so the next request for it skips the scan; once the
        # cache has filled up, prefixes only.
        if self._whole_paths and path is not prefix and len(path) <= _MAX_TARGET:
            routes[path] = route
            self._cached += 1
        return route

    def check(self, ctx: RequestContext, event: AuditEvent | None, now: float) -> Anomaly | None:
        """Learn the request's targets; past the learning period, report a new one."""
        subject = ctx.principal.subject
        if not subject:
            return None
        key = bounded_key(subject)
        profile = self._state.setdefault(key, now, _Targets)
        profile.count += 1
        known = profile.targets
        found = None
        tools = ctx.tools if ctx.rpc else None
        if not tools:
            # The usual case, one route: no tuple, and a known route ends here.
            routes = self._routes.get(ctx.method)
            route = routes.get(ctx.path) if routes is not None else None
            if route is None:
                route = self._route(ctx.method, ctx.path)
            if route in known or len(known) >= self.max_targets:
                return None
            known.add(route)
            found = route
        else:
            new: list[str] = []
            for tool in tools:
                target = "tool:" + tool[:_MAX_TARGET]
                if target in known or len(known) >= self.max_targets:
                    continue
                known.add(target)
                new.append(target)
            # Every new tool of a batch is named: one learned silently would never alert.
            found = ", ".join(new) if new else None
        if found is None or not (
            now - profile.first_seen >= self.learning_period and profile.count > self.min_requests
        ):
            return None
        return Anomaly(
            detector=self.name,
            event=self.event,
            key_kind="subject",
            key=key,
            response=self.response,
            reason=f"first use of {found} after the learning period",
            evidence={
                "target": found,
                "known_targets": len(profile.targets) - found.count(", ") - 1,
            },
            time=now,
            request_id=ctx.request_id,
            client=ctx.client,
            subject=subject,
        )


class _Hours:
    __slots__ = ("count", "days", "first_seen", "hours")

    def __init__(self, now: float) -> None:
        self.first_seen = now
        self.count = 0
        self.days = 0
        self.hours = 0


class OffHours(KeyedDetector):
    """A principal calls on a weekday or at an hour of the day it never used before.

    The profile is two bit sets in ``timezone``: the days of the week and the
    hours of the day seen during learning. A request on an unseen day or at an
    unseen hour is an anomaly (a weekday-only account used on a Saturday, a
    9-to-5 account at 3 a.m.).
    """

    __slots__ = (
        "_bits",
        "_offset",
        "_offset_hour",
        "_span_end",
        "_span_start",
        "_state",
        "cool_down",
        "learning_period",
        "min_requests",
        "name",
        "response",
        "tz",
    )

    event = "anomaly_off_hours"
    phase: Phase = "request"
    key_kind: KeyKind = "subject"

    def __init__(
        self,
        *,
        name: str = "off_hours",
        learning_period: float = 14 * 86_400.0,
        min_requests: int = 50,
        timezone: str | tzinfo = "UTC",
        idle_expiry: float = 30 * 86_400.0,
        response: Response = "alert",
        cool_down: float = 900.0,
        max_keys: int = 100_000,
    ) -> None:
        self.name = name
        self.learning_period = learning_period
        self.min_requests = min_requests
        self.tz = ZoneInfo(timezone) if isinstance(timezone, str) else timezone
        self._offset_hour = -1
        self._offset = 0.0
        # The UTC span in which the local weekday and hour stay the same, and their bits.
        self._span_start = self._span_end = 0.0
        self._bits = (0, 0, 0, 0)
        self.response: Response = response
        self.cool_down = cool_down
        self._state: KeyedState[_Hours] = KeyedState(max_keys, idle_expiry)

    def _local(self, now: float) -> tuple[int, int]:
        """Weekday (Monday 0) and hour in ``tz``; the UTC offset is looked up per quarter hour.

        A quarter, not an hour: zones with :30 and :45 offsets change DST in the
        middle of a UTC hour (St. John's at 05:30 UTC, Chatham at :45).
        """
        slot = int(now // _SLOT)
        if slot != self._offset_hour:
            offset = datetime.fromtimestamp(slot * _SLOT, self.tz).utcoffset()
            self._offset = offset.total_seconds() if offset is not None else 0.0
            self._offset_hour = slot
        local = int(now + self._offset)
        # 1970-01-01 was a Thursday (weekday 3).
        return (local // 86_400 + 3) % 7, local % 86_400 // 3600

    def _new_span(self, now: float) -> None:
        """Work out the local weekday and hour of ``now`` and how long they hold."""
        weekday, hour_of_day = self._local(now)
        slot_start = self._offset_hour * _SLOT
        # The local hour starts where the local clock shows a whole hour; the offset
        # (looked up per UTC quarter hour) holds until the next quarter.
        local = now + self._offset
        local_hour_start = local - local % 3600 - self._offset
        self._span_start = max(slot_start, local_hour_start)
        self._span_end = min(slot_start + _SLOT, local_hour_start + 3600.0)
        self._bits = (weekday, hour_of_day, 1 << weekday, 1 << hour_of_day)

    def check(self, ctx: RequestContext, event: AuditEvent | None, now: float) -> Anomaly | None:
        """Learn the request's day and hour; past the learning period, report new ones."""
        subject = ctx.principal.subject
        if not subject:
            return None
        key = bounded_key(subject)
        profile = self._state.setdefault(key, now, _Hours)
        profile.count += 1
        if not self._span_start <= now < self._span_end:
            self._new_span(now)
        weekday, hour_of_day, day, hour = self._bits
        if profile.days & day and profile.hours & hour:
            return None
        learned = (
            now - profile.first_seen >= self.learning_period and profile.count > self.min_requests
        )
        known_days, known_hours = profile.days, profile.hours
        profile.days |= day
        profile.hours |= hour
        if not learned:
            return None
        return Anomaly(
            detector=self.name,
            event=self.event,
            key_kind="subject",
            key=key,
            response=self.response,
            reason=f"access on {_DAYS[weekday]} at {hour_of_day:02d}h, outside usual hours",
            evidence={
                "day": _DAYS[weekday],
                "hour": hour_of_day,
                "usual_days": [name for i, name in enumerate(_DAYS) if known_days >> i & 1],
                "usual_hours": [h for h in range(24) if known_hours >> h & 1],
            },
            time=now,
            request_id=ctx.request_id,
            client=ctx.client,
            subject=subject,
        )
