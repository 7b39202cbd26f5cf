"""MCP session ids bound to the principal that opened them (``mcp.session_binding``)."""

from __future__ import annotations

import itertools
import time
import uuid
from dataclasses import replace
from typing import Any

import anyio
import pytest

from secmw import SecurityMiddleware
from secmw.config import load_config
from secmw.context import ANONYMOUS, Principal
from secmw.errors import ConfigError
from secmw.policy.sessions import SessionBinding, owner_of
from secmw.testing import AuditCapture, TokenIssuer
from tests.support import Receiver, call, http_scope

pytestmark = pytest.mark.anyio

ISSUER = TokenIssuer()


class SessionServer:
    """A stand-in MCP server: POST without a session opens one, DELETE ends it.

    Like the MCP SDK, it names the session in every answer within it.
    """

    def __init__(self) -> None:
        self.ids = (f"session-{n}" for n in itertools.count(1))
        self.open: set[str] = set()
        self.seen: list[str | None] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        headers = dict(scope["headers"])
        session = headers.get(b"mcp-session-id", b"").decode() or None
        self.seen.append(session)
        extra: list[tuple[bytes, bytes]] = []
        status = 200
        if session is None and scope["method"] == "POST":
            session = next(self.ids)
            self.open.add(session)
            extra.append((b"mcp-session-id", session.encode()))
        elif session is not None and session not in self.open:
            status = 404
        elif session is not None and scope["method"] == "DELETE":
            self.open.discard(session)
        elif session is not None:
            extra.append((b"mcp-session-id", session.encode()))
        await send({"type": "http.response.start", "status": status, "headers": extra})
        await send({"type": "http.response.body", "body": b"{}"})


def build(**mcp: Any) -> tuple[Any, SessionServer, AuditCapture]:
    server = SessionServer()
    audit = AuditCapture()
    config: dict[str, Any] = {"auth": {"jwt": ISSUER.jwt_config()}}
    if mcp:
        config["mcp"] = mcp
    return SecurityMiddleware(server, config, audit=audit), server, audit


async def request(
    app: Any, who: str | None, method: str = "POST", session: str | None = None, **more: str
) -> Any:
    headers = [("content-type", "application/json"), *more.items()]
    if who is not None:
        headers.append(("authorization", f"Bearer {who}"))
    if session is not None:
        headers.append(("mcp-session-id", session))
    return await call(app, http_scope("/mcp", method=method, headers=headers), Receiver.body(b"{}"))


async def open_session(app: Any, token: str) -> str:
    opened = await request(app, token)
    assert opened.status == 200
    session = opened.header("mcp-session-id")
    assert session is not None
    return session


async def test_only_the_opener_can_use_get_or_end_a_session() -> None:
    app, server, audit = build()
    alice, bob = ISSUER.mint("alice"), ISSUER.mint("bob")
    session = await open_session(app, alice)
    for method in ("POST", "GET", "DELETE"):
        refused = await request(app, bob, method, session)
        assert refused.status == 404
        assert refused.json()["detail"] == "Session not found."
    assert server.seen == [None]  # none of bob's requests reached the server
    # A new token of alice's (a refresh) keeps her session.
    assert (await request(app, ISSUER.mint("alice", scopes=["x"]), "GET", session)).status == 200
    foreign = [e for e in audit.events if e.status == 404]
    assert [e.subject for e in foreign] == ["bob", "bob", "bob"]
    assert {e.name for e in foreign} == {"authz_fail"}
    assert {e.reason for e in foreign} == {"MCP session of another principal"}


async def test_strict_refuses_unknown_ids_and_forgets_ended_ones() -> None:
    app, server, audit = build()
    alice = ISSUER.mint("alice")
    unknown = await request(app, alice, "POST", "session-404")
    assert unknown.status == 404
    assert server.seen == []
    assert audit.events[-1].reason == "MCP session id not bound here (strict)"
    session = await open_session(app, alice)
    assert (await request(app, alice, "DELETE", session)).status == 200
    assert (await request(app, alice, "GET", session)).status == 404
    assert server.seen == [None, session]


async def test_a_session_the_server_no_longer_knows_is_forgotten() -> None:
    app, server, _ = build()
    alice = ISSUER.mint("alice")
    session = await open_session(app, alice)
    server.open.clear()  # the server restarted
    assert (await request(app, alice, "GET", session)).status == 404
    assert (await request(app, alice, "GET", session)).status == 404
    assert server.seen == [None, session]  # the second one never reached it


async def test_known_mode_binds_unseen_ids_to_their_first_user_and_is_a_listed_fail_open() -> None:
    app, server, _ = build(session_binding="known")
    alice, bob = ISSUER.mint("alice"), ISSUER.mint("bob")
    server.open.add("made-elsewhere")  # e.g. by another replica
    assert (await request(app, alice, "GET", "made-elsewhere")).status == 200
    assert (await request(app, bob, "GET", "made-elsewhere")).status == 404
    assert (await request(app, alice, "GET", "made-elsewhere")).status == 200
    assert "mcp.session_binding" in app.pipeline.fail_open
    assert build()[0].pipeline.fail_open == ()


async def test_off_checks_nothing() -> None:
    app, server, _ = build(session_binding="off")
    alice, bob = ISSUER.mint("alice"), ISSUER.mint("bob")
    session = await open_session(app, alice)
    assert (await request(app, bob, "GET", session)).status == 200
    assert app.pipeline.sessions is None
    assert "mcp.session_binding" in app.pipeline.fail_open


async def test_a_repeated_session_header_is_a_bad_request() -> None:
    app, server, _ = build()
    alice = ISSUER.mint("alice")
    session = await open_session(app, alice)
    headers = [
        ("authorization", f"Bearer {alice}"),
        ("mcp-session-id", session),
        ("mcp-session-id", "another"),
    ]
    answer = await call(app, http_scope("/mcp", method="GET", headers=headers))
    assert answer.status == 400
    assert server.seen == [None]


def test_the_owner_is_issuer_or_method_tenant_and_subject_not_the_credential() -> None:
    alice = Principal("alice", claims={"iss": "https://a.example"}, auth_method="jwt")
    assert owner_of(alice) == owner_of(
        replace(alice, credential_id="refreshed", roles=frozenset({"x"}))
    )
    assert owner_of(alice) == owner_of(replace(alice, auth_method="introspection"))
    assert owner_of(alice) != owner_of(replace(alice, claims={"iss": "https://b.example"}))
    assert owner_of(alice) != owner_of(replace(alice, tenant="t2"))
    assert owner_of(alice) != owner_of(replace(alice, claims={}, auth_method="api_key"))
    assert owner_of(alice) != owner_of(ANONYMOUS)


def test_the_table_is_bounded_least_recent_out() -> None:
    binding = SessionBinding(max_sessions=2)
    for session in ("a", "b", "c"):
        binding._bind(session, ANONYMOUS)
    assert len(binding) == 2
    assert list(binding._owners) == ["b", "c"]


def test_config_is_checked() -> None:
    with pytest.raises(ConfigError) as raised:
        load_config({"mcp": {"session_binding": "loose", "max_sessions": 0}})
    keys = {issue.key for issue in raised.value.issues}
    assert keys == {"mcp.session_binding", "mcp.max_sessions"}
    with pytest.raises(ValueError):
        SessionBinding("loose")  # type: ignore[arg-type]


class SseTransportServer:
    """A stand-in for the MCP SDK's HTTP+SSE transport (``sse_app``).

    A session lives while its GET stream is open; the stream sends the
    ``endpoint`` event in pieces of ``piece`` bytes, after ``noise``.
    """

    def __init__(self, piece: int = 20, noise: bytes = b": hello\r\n\r\n") -> None:
        self.piece = piece
        self.noise = noise
        self.posted: list[str] = []
        self.ended = anyio.Event()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["method"] == "GET":
            session = uuid.uuid4().hex
            body = self.noise + (
                f"event: endpoint\r\ndata: /messages/?session_id={session}\r\n\r\n".encode()
            )
            headers = [(b"content-type", b"text/event-stream; charset=utf-8")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            for i in range(0, len(body), self.piece):
                await send(
                    {
                        "type": "http.response.body",
                        "body": body[i : i + self.piece],
                        "more_body": True,
                    }
                )
            await self.ended.wait()  # the session lives as long as its stream
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        self.posted.append(scope["query_string"].decode())
        await send({"type": "http.response.start", "status": 202, "headers": []})
        await send({"type": "http.response.body", "body": b"Accepted"})


class _Collect:
    def __init__(self) -> None:
        self.body = b""
        self.got = anyio.Event()

    async def __call__(self, message: dict[str, Any]) -> None:
        self.body += message.get("body", b"")
        if b"\r\n\r\n" in self.body.split(b"event: endpoint", 1)[-1]:
            self.got.set()


async def _sse_session(app: Any, token: str, group: Any) -> str:
    """Open an HTTP+SSE session in ``group``; its id once the endpoint event arrived."""
    collect = _Collect()
    scope = http_scope("/sse", headers=[("authorization", f"Bearer {token}")])
    group.start_soon(app, scope, Receiver.body(b""), collect)
    with anyio.fail_after(5):
        await collect.got.wait()
    return collect.body.decode().split("session_id=")[1].split()[0]


def _poster(app: Any) -> Any:
    async def post(token: str, query: str) -> int:
        headers = [("authorization", f"Bearer {token}"), ("content-type", "application/json")]
        scope = http_scope(
            "/messages/", method="POST", headers=headers, query_string=query.encode()
        )
        return int((await call(app, scope, Receiver.body(b"{}"))).status)

    return post


@pytest.mark.parametrize("piece", [1, 7, 40, 4096])
async def test_the_http_sse_transports_session_id_is_bound_too(piece: int) -> None:
    server = SseTransportServer(piece=piece)
    audit = AuditCapture()
    app = SecurityMiddleware(server, {"auth": {"jwt": ISSUER.jwt_config()}}, audit=audit)
    alice, bob = ISSUER.mint("alice"), ISSUER.mint("bob")
    post = _poster(app)
    async with anyio.create_task_group() as group:
        session = await _sse_session(app, alice, group)
        spelled = uuid.UUID(hex=session)
        # Every spelling the SDK reads as the same id (UUID(hex=...)) is alice's,
        # and so is every spelling of the parameter's name.
        for query in (
            f"session_id={session}",
            f"session_id={session.upper()}",
            f"session_id={spelled}",
            f"session_id=urn:uuid:{spelled}",
            f"session_id=%7B{spelled}%7D",
            f"session%5Fid={session}",
            f"%73ession_id={session}",
        ):
            assert await post(bob, query) == 404, query
        assert await post(bob, f"session_id={uuid.uuid4().hex}&session_id={session}") == 400
        assert await post(alice, f"session_id={spelled}") == 202
        # An id never seen bound is a plain query parameter elsewhere: it passes.
        assert await post(bob, f"session_id={uuid.uuid4().hex}") == 202
        server.ended.set()
    assert len(server.posted) == 2
    assert {e.reason for e in audit.events if e.status == 404} == {
        "MCP session of another principal"
    }
    # The stream ended, and so did the session and its binding.
    assert len(app.pipeline.sessions) == 0


async def test_a_stream_that_never_names_its_endpoint_costs_linear_time() -> None:
    # Lines that look like the start of an endpoint event, with no data line.
    noise = b"event: endpoint\r\n: x\r\n" * 400
    server = SseTransportServer(piece=1, noise=noise)
    app = SecurityMiddleware(server, {"auth": {"jwt": ISSUER.jwt_config()}})
    started = time.perf_counter()
    async with anyio.create_task_group() as group:
        await _sse_session(app, ISSUER.mint("alice"), group)
        server.ended.set()
    assert time.perf_counter() - started < 5


async def test_an_evicted_streams_session_is_refused_to_everyone_until_it_ends() -> None:
    server = SseTransportServer()
    app = SecurityMiddleware(
        server,
        {"auth": {"jwt": ISSUER.jwt_config()}, "mcp": {"max_sessions_per_principal": 1}},
    )
    alice, bob = ISSUER.mint("alice"), ISSUER.mint("bob")
    post = _poster(app)
    async with anyio.create_task_group() as group:
        first = await _sse_session(app, alice, group)
        second = await _sse_session(app, alice, group)  # pushes the first out
        assert await post(bob, f"session_id={first}") == 404
        assert await post(alice, f"session_id={first}") == 404
        assert await post(alice, f"session_id={second}") == 202
        server.ended.set()


def test_one_principal_cannot_push_the_others_sessions_out() -> None:
    binding = SessionBinding(max_sessions=100, max_per_principal=2)
    alice = Principal("alice", auth_method="jwt")
    mallory = Principal("mallory", auth_method="jwt")
    binding._bind("alice-1", alice)
    for n in range(50):
        binding._bind(f"mallory-{n}", mallory)
    assert list(binding._owners) == ["alice-1", "mallory-48", "mallory-49"]
