"""Several authenticators in order: the first that recognises its credential wins.

A recognised-but-invalid credential is a 401 and stops there: it never falls
through to the next authenticator or to anonymous access. A request presenting
credentials of two different kinds (say a bearer token and an API key) is
refused with 400 before any of them is checked, because they could name two
different principals and the outcome would depend on the order.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from secmw.audit.base import AuditEvent
from secmw.auth.base import Authenticator
from secmw.context import Principal, RequestContext
from secmw.errors import AuthenticationError


class CompositeAuthenticator:
    """Try ``authenticators`` in order; see the module docstring for the rules.

    The kind check uses each member's optional ``credential`` attribute (a name
    such as ``bearer`` or ``api_key``) and ``presented(ctx)`` method; members
    without them take part in the ordering only.
    """

    __slots__ = ("_checked", "authenticators")

    def __init__(self, authenticators: Sequence[Authenticator]) -> None:
        if not authenticators:
            raise ValueError("a composite needs at least one authenticator")
        self.authenticators = tuple(authenticators)
        kinds: dict[str, Authenticator] = {}
        for member in self.authenticators:
            kind = getattr(member, "credential", None)
            if isinstance(kind, str) and callable(getattr(member, "presented", None)):
                kinds.setdefault(kind, member)
        # One member per credential kind is enough to see whether that kind is present.
        self._checked = tuple(kinds.values()) if len(kinds) > 1 else ()

    @property
    def fail_open_settings(self) -> tuple[str, ...]:
        """The members' fail-open settings (listed in ``sys_startup``)."""
        return tuple(
            setting
            for member in self.authenticators
            for setting in getattr(member, "fail_open_settings", ())
        )

    async def startup(self) -> None:
        """Start every member that has something to prepare."""
        for member in self.authenticators:
            start = getattr(member, "startup", None)
            if callable(start):
                await start()

    async def aclose(self) -> None:
        """Close every member that holds connections."""
        for member in self.authenticators:
            close = getattr(member, "aclose", None)
            if callable(close):
                await close()

    def bind_emitter(self, emit: Callable[[AuditEvent], Awaitable[None]]) -> None:
        """Pass the audit emitter to every member that can use one."""
        for member in self.authenticators:
            bind = getattr(member, "bind_emitter", None)
            if callable(bind):
                bind(emit)

    async def authenticate(self, ctx: RequestContext) -> Principal | None:
        """The principal of the first member that recognises the request's credential."""
        if self._checked:
            present = [member for member in self._checked if member.presented(ctx)]  # type: ignore[attr-defined]
            if len(present) > 1:
                raise AuthenticationError(
                    "The request carries more than one credential.",
                    error="invalid_request",
                    reason="credentials of several kinds: "
                    + ", ".join(member.credential for member in present),  # type: ignore[attr-defined]
                )
        for member in self.authenticators:
            principal = await member.authenticate(ctx)
            if principal is not None:
                return principal
        return None


__all__ = ["CompositeAuthenticator"]
