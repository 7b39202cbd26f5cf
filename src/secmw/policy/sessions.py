"""MCP sessions bound to the principal that opened them.

In the MCP Streamable HTTP transport's sessions (protocol 2025-11-25), the server
names a session in the ``Mcp-Session-Id`` header of its ``initialize`` answer, and
whoever sends that id drives the session: reads its GET stream (and so what the
server sends its owner), calls tools in it, ends it with ``DELETE``. The server
behind secmw never learns who is calling, so the binding is made here: an id is
bound to the principal whose request got it in an answer, and a request that
sends it as anyone else is answered 404, as for a session that does not exist
(the MCP specification has the client start a new session then).

Modes: ``strict`` (the default) also answers 404 to an id this process never saw
bound (issued before it started, or to another replica, or evicted);
``known`` lets those through and binds them to their first user (a fail-open,
listed in ``sys_startup``).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Literal

from secmw.context import Principal, RequestContext
from secmw.errors import BadRequest, Denial

SessionMode = Literal["strict", "known"]
HEADER = "mcp-session-id"
_HEADER_BYTES = HEADER.encode("latin-1")
# ctx.state key: the session id the request sent (the answer may end or confirm it).
SENT = "secmw.mcp_session"

Owner = tuple[str, str, str]


class SessionNotFound(Denial):
    """An MCP session id sent by someone it is not bound to (404, as the spec's unknown session)."""

    status = 404
    title = "Not Found"
    event = "authz_fail"


def owner_of(principal: Principal) -> Owner:
    """Who a session belongs to: issuer (or authentication method), tenant, subject.

    Not the credential: a refreshed token of the same user keeps the session.
    """
    issuer = principal.claims.get("iss")
    source = issuer if isinstance(issuer, str) and issuer else principal.auth_method
    return (source, principal.tenant or "", principal.subject)


class SessionBinding:
    """Binds ``Mcp-Session-Id`` values to principals; at most ``max_sessions``, least recent out."""

    __slots__ = ("_owners", "max_sessions", "mode")

    def __init__(self, mode: SessionMode = "strict", max_sessions: int = 100_000) -> None:
        if mode not in ("strict", "known"):
            raise ValueError("mode must be 'strict' or 'known'")
        if max_sessions < 1:
            raise ValueError("max_sessions must be at least 1")
        self.mode = mode
        self.max_sessions = max_sessions
        self._owners: OrderedDict[str, Owner] = OrderedDict()

    def __len__(self) -> int:
        return len(self._owners)

    def check(self, ctx: RequestContext) -> None:
        """Refuse a request whose session id is bound to another principal (or unknown, strict)."""
        values = ctx.headers.get_all(HEADER)
        if not values:
            return
        if len(values) > 1:
            raise BadRequest(
                "The Mcp-Session-Id header is sent more than once.",
                reason="duplicate mcp-session-id header",
            )
        session = values[0]
        ctx.state[SENT] = session
        owner = self._owners.get(session)
        if owner is None:
            if self.mode == "strict":
                raise SessionNotFound(
                    "Session not found.", reason="MCP session id not bound here (strict)"
                )
            return
        if owner != owner_of(ctx.principal):
            raise SessionNotFound("Session not found.", reason="MCP session of another principal")
        self._owners.move_to_end(session)

    def observe(self, ctx: RequestContext, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        """The app's answer: bind a session id it names, forget one it ended."""
        sent = ctx.state.get(SENT)
        if sent is not None and (status == 404 or (ctx.method == "DELETE" and status < 300)):
            # The session is gone (ended by its owner, or unknown to the server).
            self._owners.pop(sent, None)
            return
        if status >= 400:
            return
        for name, value in headers:
            if name.lower() == _HEADER_BYTES:
                self._bind(value.decode("latin-1"), ctx.principal)

    def _bind(self, session: str, principal: Principal) -> None:
        owners = self._owners
        if session in owners:
            # Never rebound: the first owner keeps it.
            owners.move_to_end(session)
            return
        owners[session] = owner_of(principal)
        while len(owners) > self.max_sessions:
            owners.popitem(last=False)


__all__ = ["HEADER", "SessionBinding", "SessionMode", "SessionNotFound", "owner_of"]
