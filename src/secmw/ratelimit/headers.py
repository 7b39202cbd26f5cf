"""Response header fields that describe the limits (draft-ietf-httpapi-ratelimit-headers-11).

``RateLimit-Policy`` lists every limit the request was counted against as an
RFC 8941 List (``"burst";q=100;w=60, "daily";q=1000;w=86400``); ``RateLimit``
gives the most restrictive one's state (``"burst";r=50;t=30``): the fewest
remaining units, and of equals the one that resets last. The legacy
``X-RateLimit-Limit``/``-Remaining``/``-Reset`` (epoch seconds, as GitHub and
slowapi send it) describe that same limit. On a 429 the violated limit is the one
reported, with ``r=0`` and ``t`` equal to ``Retry-After``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from secmw.ratelimit.algorithms import Limit


def policy_field(limits: Sequence[Limit]) -> bytes:
    """The ``RateLimit-Policy`` value for ``limits`` (each descriptor once, in order)."""
    seen: list[str] = []
    for item in limits:
        if item.descriptor not in seen:
            seen.append(item.descriptor)
    return ", ".join(seen).encode("latin-1")


# '"name"' as bytes, by policy name: names come from the configuration, so this stays small.
_QUOTED: dict[str, bytes] = {}


def _quoted(name: str) -> bytes:
    found = _QUOTED.get(name)
    if found is None:
        found = _QUOTED[name] = f'"{name}"'.encode("latin-1")
    return found


def rate_headers(
    mode: str,
    policy: bytes,
    worst: tuple[Limit, int, float],
    now: float,
) -> tuple[tuple[bytes, bytes], ...]:
    """The header fields for ``mode``; ``worst`` is ``(limit, remaining, reset seconds)``."""
    limit, remaining, reset = worst
    remaining = max(0, remaining)
    if mode == "draft":
        seconds = max(0, math.ceil(reset))
        value = b"%b;r=%d;t=%d" % (_quoted(limit.policy), remaining, seconds)
        return ((b"ratelimit-policy", policy), (b"ratelimit", value))
    headers: list[tuple[bytes, bytes]] = []
    if mode == "both":
        seconds = max(0, math.ceil(reset))
        headers.append((b"ratelimit-policy", policy))
        headers.append(
            (b"ratelimit", f'"{limit.policy}";r={remaining};t={seconds}'.encode("latin-1"))
        )
    headers.append((b"x-ratelimit-limit", str(limit.amount).encode()))
    headers.append((b"x-ratelimit-remaining", str(remaining).encode()))
    # The Redis script reports whole milliseconds, rounded up: the memory store's
    # seconds are rounded the same way, so both give the same epoch second.
    in_ms = math.ceil(reset * 1000 - 1e-6) / 1000
    headers.append((b"x-ratelimit-reset", str(math.ceil(now + in_ms)).encode()))
    return tuple(headers)
