"""MCP sessions bound to the principal that opened them.

In the MCP Streamable HTTP transport's sessions (protocol 2025-11-25), the server
names a session in the ``Mcp-Session-Id`` header of its ``initialize`` answer, and
whoever sends that id drives the session: reads its GET stream (and so what the
server sends its owner), calls tools in it, ends it with ``DELETE``. The older
HTTP+SSE transport (the SDK's ``sse_app``) names it in the ``endpoint`` event
that opens the GET stream (``/messages/?session_id=<uuid>``), and messages are
posted there. The server behind secmw never learns who is calling, so the
binding is made here: an id is bound to the principal whose request got it, and
a request that sends it as anyone else is answered 404, as for a session that
does not exist (the MCP specification has the client start a new session then).

Modes: ``strict`` (the default) also answers 404 to an ``Mcp-Session-Id`` this
process never saw bound (issued before it started, or to another replica, or
evicted); ``known`` lets those through and binds them to their first user (a
fail-open, listed in ``sys_startup``). A ``session_id`` query parameter is a
common name outside MCP, so one never seen bound passes in both modes. Each
principal holds at most ``max_per_principal`` bindings (its least recent go
first), so one principal cannot push the others' out of the table.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from typing import Literal
from urllib.parse import parse_qsl, urlsplit

from secmw.context import Principal, RequestContext
from secmw.errors import BadRequest, Denial

SessionMode = Literal["strict", "known"]
HEADER = "mcp-session-id"
_HEADER_BYTES = HEADER.encode("latin-1")
# ctx.state key: the session id the request sent (the answer may end or confirm it).
SENT = "secmw.mcp_session"
# How much of an SSE answer is read for the HTTP+SSE transport's endpoint event.
WATCH_BYTES = 8192
# ctx.state key: the HTTP+SSE session id bound from this request's event stream.
STREAMED = "secmw.mcp_sse_session"


class Watch:
    """Where the reading of one event stream's start stands (complete lines only)."""

    __slots__ = ("endpoint", "pending", "read")

    def __init__(self) -> None:
        self.pending = b""
        self.read = 0
        self.endpoint = False


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


def _query_session(value: str) -> str:
    """A ``session_id`` as the MCP SDK reads it (``UUID(hex=...)``: braces, dashes,
    ``urn:uuid:`` and case are all one id); other values as they are."""
    try:
        return "sse:" + uuid.UUID(hex=value).hex
    except ValueError:
        return "sse:" + value


class SessionBinding:
    """Binds MCP session ids to principals; at most ``max_sessions``, least recent out."""

    __slots__ = ("_by_owner", "_evicted", "_owners", "max_per_principal", "max_sessions", "mode")

    def __init__(
        self,
        mode: SessionMode = "strict",
        max_sessions: int = 100_000,
        max_per_principal: int = 100,
    ) -> None:
        if mode not in ("strict", "known"):
            raise ValueError("mode must be 'strict' or 'known'")
        if max_sessions < 1 or max_per_principal < 1:
            raise ValueError("max_sessions and max_per_principal must be at least 1")
        self.mode = mode
        self.max_sessions = max_sessions
        self.max_per_principal = max_per_principal
        self._owners: OrderedDict[str, Owner] = OrderedDict()
        self._by_owner: dict[Owner, OrderedDict[str, None]] = {}
        # HTTP+SSE ids pushed out of the table while their stream is open: refused
        # for everyone (an unbound query id would pass) until the stream ends.
        self._evicted: OrderedDict[str, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._owners)

    def check(self, ctx: RequestContext) -> None:
        """Refuse a request whose session id is bound to another principal (or unknown, strict)."""
        values = ctx.mcp_sessions
        if len(values) > 1:
            raise BadRequest(
                "The Mcp-Session-Id header is sent more than once.",
                reason="duplicate mcp-session-id header",
            )
        if values:
            session = values[0]
            ctx.state[SENT] = session
            self._check(ctx, session, strict=self.mode == "strict")
        query = ctx.query_string
        if b"session_id" in query or (b"%" in query and b"=" in query):
            # Percent-encoded too: "session%5Fid" is "session_id" to the app.
            self._check_query(ctx)

    def _check_query(self, ctx: RequestContext) -> None:
        # Parsed as Starlette parses it (the SDK's message endpoint reads it so).
        pairs = parse_qsl(ctx.query_string.decode("latin-1"), keep_blank_values=True)
        sessions = {_query_session(value) for name, value in pairs if name == "session_id"}
        if len(sessions) > 1:
            raise BadRequest(
                "The session_id parameter is sent more than once.",
                reason="several session_id parameters",
            )
        for session in sessions:
            if session in self._evicted:
                raise SessionNotFound(
                    "Session not found.", reason="MCP session pushed out of the binding table"
                )
            self._check(ctx, session, strict=False)

    def _check(self, ctx: RequestContext, session: str, *, strict: bool) -> None:
        owner = self._owners.get(session)
        if owner is None:
            if strict:
                raise SessionNotFound(
                    "Session not found.", reason="MCP session id not bound here (strict)"
                )
            return
        if owner != owner_of(ctx.principal):
            raise SessionNotFound("Session not found.", reason="MCP session of another principal")
        self._owners.move_to_end(session)
        self._by_owner[owner].move_to_end(session)

    def observe(
        self, ctx: RequestContext, status: int, headers: list[tuple[bytes, bytes]]
    ) -> Watch | None:
        """The app's answer: bind a session id it names, forget one it ended.

        A :class:`Watch` when its body should be read (:meth:`watch`) for the
        HTTP+SSE transport's ``endpoint`` event: a GET answered with an event stream.
        """
        sent = ctx.state.get(SENT)
        if sent is not None and (status == 404 or (ctx.method == "DELETE" and status < 300)):
            # The session is gone (ended by its owner, or unknown to the server).
            self._forget(sent)
            return None
        if status >= 400:
            return None
        stream = False
        for name, value in headers:
            lowered = name.lower()
            if lowered == _HEADER_BYTES:
                self._bind(value.decode("latin-1"), ctx.principal)
            elif lowered == b"content-type":
                stream = value.split(b";", 1)[0].strip().lower() == b"text/event-stream"
        return Watch() if stream and ctx.method == "GET" and status == 200 else None

    def watch(self, ctx: RequestContext, state: Watch, chunk: bytes) -> bool:
        """Read the start of an event stream for its ``endpoint`` event; False once done.

        Complete lines only (an id cut by a chunk boundary must not be bound as
        its prefix), each byte once, at most :data:`WATCH_BYTES` of them.
        """
        chunk = chunk[: WATCH_BYTES - state.read]
        state.read += len(chunk)
        lines = (state.pending + chunk).split(b"\n")
        state.pending = lines.pop()
        for raw in lines:
            line = raw[:-1] if raw.endswith(b"\r") else raw
            if not line:
                state.endpoint = False  # an event ends
            elif line.startswith(b"event:"):
                state.endpoint = line[6:].strip() == b"endpoint"
            elif state.endpoint and line.startswith(b"data:"):
                target = line[5:].strip().decode("latin-1")
                for name, value in parse_qsl(urlsplit(target).query, keep_blank_values=True):
                    if name == "session_id":
                        session = _query_session(value)
                        self._bind(session, ctx.principal)
                        ctx.state[STREAMED] = session
                return False
        return state.read < WATCH_BYTES

    def stream_ended(self, ctx: RequestContext) -> None:
        """The event stream that bound an HTTP+SSE session ended: so did the session."""
        session = ctx.state.pop(STREAMED, None)
        if session is not None:
            self._forget(session)
            self._evicted.pop(session, None)

    def _bind(self, session: str, principal: Principal) -> None:
        owners = self._owners
        if session in owners:
            # Never rebound: the first owner keeps it.
            owners.move_to_end(session)
            self._by_owner[owners[session]].move_to_end(session)
            return
        owner = owner_of(principal)
        owners[session] = owner
        mine = self._by_owner.setdefault(owner, OrderedDict())
        mine[session] = None
        if len(mine) > self.max_per_principal:
            self._forget(next(iter(mine)), evicted=True)
        while len(owners) > self.max_sessions:
            self._forget(next(iter(owners)), evicted=True)

    def _forget(self, session: str, *, evicted: bool = False) -> None:
        owner = self._owners.pop(session, None)
        if owner is None:
            return
        mine = self._by_owner[owner]
        del mine[session]
        if not mine:
            del self._by_owner[owner]
        if evicted and session.startswith("sse:"):
            self._evicted[session] = None
            while len(self._evicted) > self.max_sessions:
                self._evicted.popitem(last=False)


__all__ = ["HEADER", "SessionBinding", "SessionMode", "SessionNotFound", "owner_of"]
