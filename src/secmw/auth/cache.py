"""A bounded cache of verified credentials, and the revocation-hook protocol.

Entries are keyed by the SHA-256 digest of the credential, so the cache never
holds a token itself; each entry expires no later than the credential's own
``exp``; the least recently used entry goes first when the cache is full.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from secmw.context import Principal


def token_digest(token: str) -> bytes:
    """The cache key of a credential: its SHA-256 digest."""
    return hashlib.sha256(token.encode("latin-1", "replace")).digest()


class TokenCache:
    """Verified credentials by digest, bounded, each valid until its ``valid_until``.

    ``tag`` is what the credential was verified with (a key object); :meth:`evict`
    drops every entry whose tag fails a predicate, e.g. keys gone from a JWKS.
    """

    __slots__ = ("_entries", "max_entries")

    def __init__(self, max_entries: int = 10_000) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[bytes, tuple[float, Principal, Any]] = OrderedDict()

    def get(self, digest: bytes, now: float) -> Principal | None:
        """The cached principal, or ``None`` when absent or expired."""
        entry = self._entries.get(digest)
        if entry is None:
            return None
        if now >= entry[0]:
            del self._entries[digest]
            return None
        self._entries.move_to_end(digest)
        return entry[1]

    def put(self, digest: bytes, principal: Principal, valid_until: float, tag: Any = None) -> None:
        """Remember a verified credential until ``valid_until`` (an absolute time)."""
        if self.max_entries <= 0:
            return
        entries = self._entries
        entries[digest] = (valid_until, principal, tag)
        entries.move_to_end(digest)
        while len(entries) > self.max_entries:
            entries.popitem(last=False)

    def evict(self, keep: Callable[[Any], bool]) -> int:
        """Drop every entry whose tag ``keep`` rejects; returns how many went."""
        doomed = [digest for digest, entry in self._entries.items() if not keep(entry[2])]
        for digest in doomed:
            del self._entries[digest]
        return len(doomed)

    def discard(self, digest: bytes) -> None:
        """Forget one credential."""
        self._entries.pop(digest, None)

    def clear(self) -> None:
        """Forget everything."""
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


@runtime_checkable
class RevocationCheck(Protocol):
    """Protocol: is this principal's credential revoked? Asked on every request.

    Called for cached and freshly verified credentials alike, so a revocation
    takes effect on the next request. Typically a ``jti`` denylist; raise
    :class:`~secmw.errors.ComponentError` when the list cannot be read (503).
    """

    async def is_revoked(self, principal: Principal) -> bool:
        """True when the credential behind ``principal`` must be refused."""
        ...


class MemoryDenylist:
    """A :class:`RevocationCheck` holding revoked ``jti`` values in memory."""

    __slots__ = ("_jtis",)

    def __init__(self, jtis: tuple[str, ...] = ()) -> None:
        self._jtis: set[str] = set(jtis)

    def revoke(self, jti: str) -> None:
        """Refuse every token carrying ``jti`` from now on."""
        self._jtis.add(jti)

    async def is_revoked(self, principal: Principal) -> bool:
        """True when the principal's ``jti`` claim is on the list."""
        jti = principal.claims.get("jti")
        return isinstance(jti, str) and jti in self._jtis

    def __contains__(self, jti: object) -> bool:
        return jti in self._jtis

    def __len__(self) -> int:
        return len(self._jtis)


__all__ = ["MemoryDenylist", "RevocationCheck", "TokenCache", "token_digest"]
