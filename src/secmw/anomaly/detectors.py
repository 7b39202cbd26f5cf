"""Count-in-a-window detectors: authentication-failure bursts, token reuse, repeated denials.

Each detector names its signal, its threshold and why (see ``docs/anomaly.md``).
All state is per key, capped at ``max_keys`` and dropped after ``window`` idle.
"""

from __future__ import annotations

from collections.abc import Collection

from secmw.anomaly.base import Anomaly, KeyKind, Phase, Response, bounded_key, client_key
from secmw.anomaly.state import EventWindow, KeyedDetector, KeyedState
from secmw.audit.base import AuditEvent
from secmw.context import RequestContext

# Failures that mean "a credential was tried and was wrong". A missing token is
# a client that has not logged in yet and an expired one usually refreshes.
AUTH_FAILURE_EVENTS = ("authn_login_fail", "authn_token_invalid")
DENIAL_EVENTS = ("authz_fail", "excess_rate_limit_exceeded")


class _Windowed(KeyedDetector):
    """Shared settings of the threshold-in-a-window detectors."""

    __slots__ = ("_state", "cool_down", "name", "response", "threshold", "window")

    event = ""
    phase: Phase = "outcome"
    key_kind: KeyKind = "client"

    def __init__(
        self,
        *,
        name: str,
        threshold: int,
        window: float,
        response: Response = "alert",
        cool_down: float = 900.0,
        max_keys: int = 100_000,
    ) -> None:
        if threshold < 1 or window <= 0:
            raise ValueError("threshold must be at least 1 and window positive")
        self.name = name
        self.threshold = threshold
        self.window = window
        self.response: Response = response
        self.cool_down = cool_down
        self._state: KeyedState[EventWindow] = KeyedState(max_keys, window)

    def _count(self, key: str, now: float) -> bool:
        window = self._state.get(key, now)
        if window is None:
            window = EventWindow(self.threshold)
            self._state.put(key, now, window)
        return window.add(now, self.window)


class AuthFailureBurst(_Windowed):
    """``threshold`` failed authentications from one key within ``window`` seconds.

    Keyed by client address it catches brute force and credential stuffing from
    one source; keyed by subject it catches many sources guessing one account.
    A failure is an audit event named in ``failure_events``, or (with
    ``count_app_401``) an admitted request the app itself answered with 401, such
    as a failed login form.
    """

    __slots__ = ("count_app_401", "failure_events", "key_kind")

    event = "authn_brute_force"

    def __init__(
        self,
        *,
        key_kind: KeyKind = "client",
        failure_events: Collection[str] = AUTH_FAILURE_EVENTS,
        count_app_401: bool = True,
        name: str | None = None,
        threshold: int = 20,
        window: float = 300.0,
        response: Response = "alert",
        cool_down: float = 900.0,
        max_keys: int = 100_000,
    ) -> None:
        if key_kind not in ("client", "subject"):
            raise ValueError("an authentication-failure burst is keyed by client or subject")
        super().__init__(
            name=name or f"auth_failures_by_{key_kind}",
            threshold=threshold,
            window=window,
            response=response,
            cool_down=cool_down,
            max_keys=max_keys,
        )
        self.key_kind: KeyKind = key_kind
        self.failure_events = frozenset(failure_events)
        self.count_app_401 = count_app_401

    def check(self, ctx: RequestContext, event: AuditEvent | None, now: float) -> Anomaly | None:
        """Count a failed authentication against its client or subject."""
        key = self.counted_key(ctx, event)
        if not key or not self._count(key, now):
            return None
        return self.anomaly(ctx, event, key, now)  # type: ignore[arg-type]

    def counted_key(self, ctx: RequestContext, event: AuditEvent | None) -> str | None:
        """The key this event counts against, or ``None`` when it is not a failure."""
        if event is None:
            return None
        failed = (event.outcome == "failure" and event.name in self.failure_events) or (
            self.count_app_401 and event.status == 401 and event.outcome == "success"
        )
        if not failed:
            return None
        if self.key_kind == "client":
            return bounded_key(client_key(event.client)) if event.client else None
        claimed = ctx.state.get("claimed_subject")
        subject = event.subject or (claimed if isinstance(claimed, str) else None)
        return bounded_key(subject) if subject else None

    def anomaly(self, ctx: RequestContext, event: AuditEvent, key: str, now: float) -> Anomaly:
        """The anomaly of a burst that just reached the threshold."""
        return Anomaly(
            detector=self.name,
            event=self.event,
            key_kind=self.key_kind,
            key=key,
            response=self.response,
            reason=f"{self.threshold} failed authentications within {self.window:g} s",
            evidence={"count": self.threshold, "window_s": self.window, "last": event.name},
            time=now,
            request_id=ctx.request_id,
            client=event.client,
            subject=event.subject,
        )


class RepeatedDenials(_Windowed):
    """``threshold`` policy denials or rate-limit rejections of one principal in ``window``.

    An authenticated principal that keeps hitting refusals is probing what it may
    reach, or is a misbehaving client; either way someone should look.
    """

    __slots__ = ("failure_events",)

    event = "anomaly_repeated_denials"
    key_kind: KeyKind = "subject"

    def __init__(
        self,
        *,
        denial_events: Collection[str] = DENIAL_EVENTS,
        name: str = "repeated_denials",
        threshold: int = 20,
        window: float = 300.0,
        response: Response = "alert",
        cool_down: float = 900.0,
        max_keys: int = 100_000,
    ) -> None:
        super().__init__(
            name=name,
            threshold=threshold,
            window=window,
            response=response,
            cool_down=cool_down,
            max_keys=max_keys,
        )
        self.failure_events = frozenset(denial_events)

    def check(self, ctx: RequestContext, event: AuditEvent | None, now: float) -> Anomaly | None:
        """Count a refusal against the principal that received it."""
        subject = self.counted_key(ctx, event)
        if not subject or not self._count(subject, now):
            return None
        return self.anomaly(ctx, event, subject, now)  # type: ignore[arg-type]

    def counted_key(self, ctx: RequestContext, event: AuditEvent | None) -> str | None:
        """The subject this event counts against, or ``None`` when it is not a refusal."""
        if event is None or event.outcome != "failure" or event.name not in self.failure_events:
            return None
        if getattr(ctx.state.get("rate"), "shared", False):
            # Only a tier counting everyone together refused: anyone can fill that one,
            # so it says nothing about this caller (and must not get a victim blocked).
            return None
        return bounded_key(event.subject) if event.subject else None

    def anomaly(self, ctx: RequestContext, event: AuditEvent, subject: str, now: float) -> Anomaly:
        """The anomaly of refusals that just reached the threshold."""
        return Anomaly(
            detector=self.name,
            event=self.event,
            key_kind="subject",
            key=subject,
            response=self.response,
            reason=f"{self.threshold} refusals within {self.window:g} s",
            evidence={"count": self.threshold, "window_s": self.window, "last": event.name},
            time=now,
            request_id=ctx.request_id,
            client=event.client,
            subject=event.subject,
        )


class TokenReuse(KeyedDetector):
    """One credential seen from ``threshold`` distinct client addresses within ``window``.

    A bearer token or API key normally lives on one machine; many addresses in a
    short time suggest it was copied (theft or sharing). Mobile clients and
    load-balanced egress change addresses too, hence a threshold above 2.
    """

    __slots__ = ("_data", "_state", "cool_down", "name", "response", "threshold", "window")

    event = "authn_token_reuse"
    phase: Phase = "request"
    key_kind: KeyKind = "credential"

    def __init__(
        self,
        *,
        name: str = "token_reuse",
        threshold: int = 5,
        window: float = 600.0,
        response: Response = "alert",
        cool_down: float = 900.0,
        max_keys: int = 100_000,
    ) -> None:
        if threshold < 2 or window <= 0:
            raise ValueError("threshold must be at least 2 and window positive")
        self.name = name
        self.threshold = threshold
        self.window = window
        self.response: Response = response
        self.cool_down = cool_down
        # Per credential: client address -> last seen (at most ``threshold`` of them).
        self._state: KeyedState[dict[str, float]] = KeyedState(max_keys, window)
        self._data = self._state.data

    def check(self, ctx: RequestContext, event: AuditEvent | None, now: float) -> Anomaly | None:
        """Add the request's client to its credential's set of addresses."""
        credential = ctx.principal.credential_id
        client = ctx.client
        if credential is None or client is None:
            return None
        credential = bounded_key(credential)
        client = bounded_key(client_key(client))
        # KeyedState.get inlined: this runs on every request.
        item = self._data.get(credential)
        if item is None or now - item[0] > self.window:
            self._state.put(credential, now, {client: now})
            return None
        item[0] = now
        seen: dict[str, float] = item[1]
        if client in seen:
            seen[client] = now
            return None
        horizon = now - self.window
        for address in [a for a, t in seen.items() if t <= horizon]:
            del seen[address]
        seen[client] = now
        if len(seen) < self.threshold:
            return None
        count = len(seen)
        seen.clear()
        seen[client] = now
        return self.anomaly(ctx, credential, client, count, now)

    def anomaly(
        self, ctx: RequestContext, credential: str, client: str, count: int, now: float
    ) -> Anomaly:
        """The anomaly of a credential just seen from ``count`` addresses."""
        return Anomaly(
            detector=self.name,
            event=self.event,
            key_kind="credential",
            key=credential,
            response=self.response,
            reason=f"one credential used from {count} addresses within {self.window:g} s",
            evidence={"addresses": count, "window_s": self.window},
            time=now,
            request_id=ctx.request_id,
            client=client,
            subject=ctx.principal.subject or None,
        )
