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

from secmw.ratelimit.algorithms import Limit, Outcome

HEADER_MODES = ("draft", "legacy", "both", "none")


def rate_headers(
    mode: str,
    limits: Sequence[Limit],
    worst: tuple[Limit, int, float],
    now: float,
) -> tuple[tuple[bytes, bytes], ...]:
    """The header fields for ``mode``; ``worst`` is ``(limit, remaining, reset seconds)``."""
    limit, remaining, reset = worst
    seconds = max(0, math.ceil(reset))
    headers: list[tuple[bytes, bytes]] = []
    if mode in ("draft", "both"):
        seen: list[str] = []
        for item in limits:
            if item.descriptor not in seen:
                seen.append(item.descriptor)
        headers.append((b"ratelimit-policy", ", ".join(seen).encode("latin-1")))
        headers.append(
            (b"ratelimit", f'"{limit.policy}";r={max(0, remaining)};t={seconds}'.encode("latin-1"))
        )
    if mode in ("legacy", "both"):
        headers.append((b"x-ratelimit-limit", str(limit.amount).encode()))
        headers.append((b"x-ratelimit-remaining", str(max(0, remaining)).encode()))
        headers.append((b"x-ratelimit-reset", str(math.ceil(now + reset)).encode()))
    return tuple(headers)


def most_restrictive(
    limits: Sequence[Limit], outcomes: Sequence[Outcome]
) -> tuple[Limit, int, float] | None:
    """The enforced limit with the fewest remaining units (ties: the latest reset)."""
    worst: tuple[Limit, int, float] | None = None
    for limit, outcome in zip(limits, outcomes, strict=True):
        if limit.shadow:
            continue
        if (
            worst is None
            or outcome.remaining < worst[1]
            or (outcome.remaining == worst[1] and outcome.reset > worst[2])
        ):
            worst = (limit, outcome.remaining, outcome.reset)
    return worst
