"""The authentication stage's protocol and its switched-off default."""

from __future__ import annotations

from typing import Protocol

from secmw.context import Principal, RequestContext


class Authenticator(Protocol):
    """Protocol: turn the credentials a request carries into a :class:`Principal`.

    Return ``None`` when the request carries no credential this authenticator
    recognises (the request stays anonymous); raise
    :class:`~secmw.errors.AuthenticationError` for a recognised credential that is
    invalid. A recognised-but-invalid credential must never fall through to
    anonymous access.
    """

    async def authenticate(self, ctx: RequestContext) -> Principal | None:
        """Authenticate the request described by ``ctx``."""
        ...


class NoAuthenticator:
    """Recognises no credential: every request stays anonymous."""

    __slots__ = ()

    async def authenticate(self, ctx: RequestContext) -> Principal | None:
        """Return ``None``: there is nothing to authenticate with."""
        return None
