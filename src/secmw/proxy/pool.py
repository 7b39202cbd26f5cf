"""An upstream: several targets, a balancing rule, a breaker per target, retries.

Passive health comes from the breakers: a target whose circuit is open is
skipped until its open duration has passed; when every target is open the
request fails fast with :class:`~secmw.breaker.CircuitOpen` (503, ``Retry-After``
the shortest wait). Active health checks, when configured, mark a target down
after consecutive failed probes and up after a successful one.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

import httpx

from secmw.breaker.circuit import Breaker
from secmw.breaker.state import CircuitOpen

IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})


@dataclass(slots=True, eq=False)
class Target:
    """One upstream base URL with its breaker and load counters."""

    url: httpx.URL
    breaker: Breaker
    outstanding: int = 0
    healthy: bool = True
    probe_failures: int = 0
    label: str = field(default="")

    def __post_init__(self) -> None:
        if not isinstance(self.breaker, Breaker):
            # The pool reads the circuit's state (available, acquire, record), which
            # the CircuitBreaker protocol does not have: NoBreaker cannot stand in.
            raise TypeError(
                f"Target needs a secmw.breaker.Breaker, not {type(self.breaker).__name__}"
            )
        if not self.label:
            # Scheme, host and port only: userinfo (a password) or a query would reach
            # every audit line as ``details.target``.
            origin = self.url.copy_with(userinfo=b"", path="/", query=None, fragment=None)
            self.label = str(origin).rstrip("/")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounded retries with full-jitter exponential backoff, idempotent requests only."""

    attempts: int = 0
    backoff: float = 0.05
    max_backoff: float = 1.0
    statuses: frozenset[int] = frozenset({502, 503, 504})

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based)."""
        ceiling = min(self.max_backoff, self.backoff * (2 ** (attempt - 1)))
        return random.uniform(0, ceiling)  # noqa: S311 - jitter, not security


class UpstreamPool:
    """The targets of one upstream and the rule that picks one per attempt.

    ``balance`` is ``round_robin`` or ``least_outstanding`` (fewest requests in
    flight, ties broken round-robin). ``inject`` are headers every request to
    this upstream gets: its own credentials, never the client's (a followed
    redirect to another origin drops them: ``credentials`` are their names).
    """

    __slots__ = ("_next", "balance", "credentials", "inject", "name", "retry", "targets")

    def __init__(
        self,
        name: str,
        targets: Sequence[Target],
        *,
        balance: str = "round_robin",
        retry: RetryPolicy | None = None,
        inject: Sequence[tuple[bytes, bytes]] = (),
    ) -> None:
        if not targets:
            raise ValueError("an upstream needs at least one target")
        if balance not in ("round_robin", "least_outstanding"):
            raise ValueError("balance must be round_robin or least_outstanding")
        self.name = name
        self.targets = tuple(targets)
        self.balance = balance
        self.retry = retry or RetryPolicy()
        self.inject = tuple(inject)
        self.credentials = frozenset(name.lower() for name, _ in self.inject)
        self._next = 0

    def pick(self, exclude: Target | None = None) -> Target:
        """The target for the next attempt; raises :class:`CircuitOpen` when none is usable."""
        targets = self.targets
        count = len(targets)
        start = self._next
        self._next = (start + 1) % count
        best: Target | None = None
        for offset in range(count):
            target = targets[(start + offset) % count]
            if not target.healthy or not target.breaker.available():
                continue
            if target is exclude and count > 1:
                continue
            if self.balance == "round_robin":
                return target
            if best is None or target.outstanding < best.outstanding:
                best = target
        if best is not None:
            return best
        if exclude is not None and exclude.healthy and exclude.breaker.available():
            return exclude
        for target in targets:
            if not target.breaker.available():
                target.breaker.refused()
        waits = [t.breaker.retry_after() for t in targets]
        known = [wait for wait in waits if wait is not None]
        raise CircuitOpen(self.name, min(known) if known else 1.0)


__all__ = ["IDEMPOTENT", "RetryPolicy", "Target", "UpstreamPool"]
