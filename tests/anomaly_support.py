"""Helpers for the anomaly and metrics tests: a fake clock, contexts and events."""

from __future__ import annotations

from typing import Any

from secmw.audit.base import AuditEvent
from secmw.context import Principal, RequestContext
from tests.support import http_scope

# Monday 2026-11-02 10:00:00 UTC.
MONDAY_10H = 1793613600.0


class FakeClock:
    """A clock tests move by hand."""

    def __init__(self, now: float = MONDAY_10H) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def principal(
    subject: str = "alice", credential: str | None = "jti:abc", **extra: Any
) -> Principal:
    return Principal(subject=subject, auth_method="jwt", credential_id=credential, **extra)


def context(
    path: str = "/api/items",
    *,
    client: str = "198.51.100.1",
    who: Principal | None = None,
    method: str = "GET",
) -> RequestContext:
    ctx = RequestContext.from_scope(http_scope(path, method=method, client=(client, 5000)))
    if who is not None:
        ctx.principal = who
    return ctx


def event(
    name: str = "authz_allow",
    *,
    outcome: str | None = None,
    client: str | None = "198.51.100.1",
    subject: str | None = None,
    status: int | None = None,
) -> AuditEvent:
    if outcome is None:
        outcome = "success" if name == "authz_allow" else "failure"
    if status is None:
        status = 200 if outcome == "success" else 401
    return AuditEvent(
        name=name, outcome=outcome, client=client, subject=subject, status=status, transport="http"
    )
