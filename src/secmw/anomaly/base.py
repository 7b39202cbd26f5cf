"""Anomaly detection: the detector and alert-sink protocols and the anomaly record."""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, Protocol

from secmw.audit.base import AuditEvent
from secmw.context import RequestContext

Response = Literal["alert", "step_up", "block"]
KeyKind = Literal["client", "subject", "credential"]
Phase = Literal["request", "outcome"]

_EMPTY: Mapping[str, Any] = MappingProxyType({})
# The ``ctx.state`` key the monitor sets (to the detector's name) when it refuses a
# request with a block or step-up: the refusal is its doing, not a stage's.
ENFORCED = "secmw.anomaly.enforced"


def client_key(address: str) -> str:
    """The key of a client address: an IPv6 address stands for its /64.

    One IPv6 subscriber holds at least a /64 and can pick a new address in it
    for every request; counting (and blocking) per address would let a guesser
    rotate past any threshold. An IPv6 address that carries an IPv4 client
    (mapped, translated, IPv4-compatible, NAT64, 6to4, Teredo) stands for that
    IPv4 address, and loopback and unspecified addresses stand for themselves.
    """
    if ":" not in address:
        return address
    try:
        parsed = ipaddress.IPv6Address(address.split("%", 1)[0])
    except ValueError:
        return address
    inner = _embedded_ipv4(parsed)
    if inner is not None:
        return str(inner)
    if parsed.is_loopback or parsed.is_unspecified:
        return str(parsed)
    return str(ipaddress.IPv6Network((int(parsed) >> 64 << 64, 64)))


_LONGEST_KEY = 100
_HEAD = 48


def bounded_key(key: str) -> str:
    """A key as per-key state holds it: over 100 characters, its head and a digest.

    Some keys are a client's to choose (a login form's claimed user name): held
    whole, each could cost as much memory as a request may carry, ``max_keys``
    times. The head keeps alerts and events recognisable, the SHA-256 of the
    whole keeps keys apart. A short key spelt like such a form stands for itself:
    whoever can choose it could as easily send the long key it aliases.
    """
    if len(key) <= _LONGEST_KEY:
        return key
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return key[:_HEAD] + "\u2026sha256:" + digest


_CARRIERS = tuple(
    ipaddress.IPv6Network(net) for net in ("::ffff:0:0/96", "::ffff:0:0:0/96", "64:ff9b::/96")
)
_COMPATIBLE = ipaddress.IPv6Network("::/96")


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 client an IPv6 address stands for, if it carries one."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.teredo is not None:
        return address.teredo[1]
    if address.sixtofour is not None:
        return address.sixtofour
    low = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if any(address in net for net in _CARRIERS):
        return low
    if address in _COMPATIBLE and int(address) > 1:  # not :: nor ::1
        return low
    return None


@dataclass(frozen=True, slots=True)
class Anomaly:
    """One detection: which detector, about which key, with the evidence.

    ``key`` is a client address, a subject or a credential id (a fingerprint,
    never the credential). ``evidence`` holds counts, the window and baselines.
    """

    detector: str
    event: str
    key_kind: KeyKind
    key: str
    response: Response
    reason: str
    evidence: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    time: float = 0.0
    request_id: str | None = None
    client: str | None = None
    subject: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form, for alert sinks."""
        return {
            "detector": self.detector,
            "event": self.event,
            "key_kind": self.key_kind,
            "key": self.key,
            "response": self.response,
            "reason": self.reason,
            "evidence": dict(self.evidence),
            "time": self.time,
            "request_id": self.request_id,
            "client": self.client,
            "subject": self.subject,
        }


class Detector(Protocol):
    """Protocol: one signal with a threshold.

    A ``request`` detector sees each request once its principal is known (the
    event is ``None``); an ``outcome`` detector sees each request's audit event.
    ``check`` returns an :class:`Anomaly` when the threshold is crossed.
    """

    name: str
    event: str
    phase: Phase
    key_kind: KeyKind
    response: Response
    cool_down: float

    def check(self, ctx: RequestContext, event: AuditEvent | None, now: float) -> Anomaly | None:
        """Update the state with this request and say whether it is anomalous."""
        ...

    def tracked_keys(self) -> int:
        """How many keys the detector holds state for (bounded by its cap)."""
        ...


@dataclass(frozen=True, slots=True)
class Alert:
    """What an alert sink receives: the anomaly and how many like it were folded in."""

    anomaly: Anomaly
    suppressed: int = 0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form (the webhook body)."""
        data = self.anomaly.to_dict()
        data["suppressed"] = self.suppressed
        return data


class AlertSink(Protocol):
    """Protocol: deliver an alert (after de-duplication) somewhere a human looks."""

    async def send(self, alert: Alert) -> None:
        """Deliver or queue ``alert``; must not block the request for long."""
        ...

    async def aclose(self) -> None:
        """Flush what is queued and release resources."""
        ...
