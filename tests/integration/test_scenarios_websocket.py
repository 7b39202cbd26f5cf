"""Scenarios, full chain on websockets: handshake checks, per-message limits, expiry, isolation."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from secmw.testing import InMemoryJWKS, TokenIssuer
from tests.scenario_support import AUDIENCE, ISSUER, Service, assert_no_credentials
from tests.support import Sender, ws_scope

pytestmark = pytest.mark.anyio


class Client:
    """A scripted websocket client: connect, the given frames, then stays until closed."""

    def __init__(self, *frames: dict[str, Any], hang_up: bool = False) -> None:
        self.frames = [{"type": "websocket.connect"}, *frames]
        if hang_up:
            self.frames.append({"type": "websocket.disconnect", "code": 1000})

    async def __call__(self) -> dict[str, Any]:
        if self.frames:
            return self.frames.pop(0)
        await anyio.sleep(5)  # the session ends long before: the chain cancels this read
        raise AssertionError("the session was never closed")


def text(value: str) -> dict[str, Any]:
    return {"type": "websocket.receive", "text": value}


def replies(sent: Sender) -> list[str]:
    return [m["text"] for m in sent.messages if m["type"] == "websocket.send"]


@pytest.fixture
def signer() -> TokenIssuer:
    return TokenIssuer(issuer=ISSUER, audience=AUDIENCE)


@pytest.fixture
def service(signer: TokenIssuer) -> Service:
    return Service(signer, InMemoryJWKS(signer))


async def session(
    service: Service, client: Client, token: str | None, request_id: str, **scope: Any
) -> Sender:
    headers = [("x-request-id", request_id)]
    if token is not None:
        headers.append(("authorization", f"Bearer {token}"))
    sent = Sender()
    with anyio.fail_after(5):
        await service.app(ws_scope("/ws", headers=headers, **scope), client, sent)
    return sent


async def test_authenticated_session(service: Service, signer: TokenIssuer) -> None:
    token = signer.mint("alice", tenant="acme")
    client = Client(text("hello"), {"type": "websocket.receive", "bytes": b"bin"}, hang_up=True)
    sent = await session(service, client, token, "ws-ok")

    assert _without_headers(sent.messages[0]) == {"type": "websocket.accept"}
    assert replies(sent) == ["alice: hello", "alice: bin"]
    (event,) = service.audit.for_request("ws-ok")
    assert (event.name, event.transport, event.status, event.subject, event.tenant) == (
        "authz_allow",
        "websocket",
        101,
        "alice",
        "acme",
    )
    assert event.rule_ids == ("signed-in",)
    assert_no_credentials(service.audit.lines(), token)


@pytest.mark.parametrize(
    ("token_kind", "event_name"),
    [
        pytest.param("none", "authn_token_missing", id="no-token"),
        pytest.param("expired", "authn_token_expired", id="expired"),
        pytest.param("foreign", "authn_token_invalid", id="foreign-issuer"),
    ],
)
@pytest.mark.parametrize("extension", [False, True], ids=["close", "http-response"])
async def test_rejected_handshake(
    service: Service, signer: TokenIssuer, token_kind: str, event_name: str, extension: bool
) -> None:
    token = {
        "none": None,
        "expired": signer.mint("alice", expires_in=-600),
        "foreign": TokenIssuer(issuer="https://elsewhere.test", audience=AUDIENCE).mint("alice"),
    }[token_kind]
    extensions = {"websocket.http.response": {}} if extension else None
    sent = await session(service, Client(), token, "ws-no", extensions=extensions)

    assert not any(m["type"] == "websocket.accept" for m in sent.messages)
    assert service.inner.calls == []
    (event,) = service.audit.for_request("ws-no")
    assert (event.name, event.transport, event.subject) == (event_name, "websocket", None)
    if extension:  # the real answer: status, challenge and problem body
        assert sent.status == 401
        assert (sent.header("www-authenticate") or "").startswith('Bearer realm="scenario"')
        assert sent.json()["status"] == 401
    else:  # a close before accept, which servers turn into HTTP 403
        assert sent.messages == [{"type": "websocket.close", "code": 1008, "reason": ""}]
    # The audit line records what the client saw: 401 with the extension, 403 for a close.
    assert event.status == (401 if extension else 403)
    assert_no_credentials(service.audit.lines(), *([token] if token else []))


async def test_per_message_rate_limit_closes_the_session(
    service: Service, signer: TokenIssuer
) -> None:
    token = signer.mint("bob")
    frames = [text(f"m{n}") for n in range(7)]  # the tier allows 5 per connection
    sent = await session(service, Client(*frames), token, "ws-rate")

    assert _without_headers(sent.messages[0]) == {"type": "websocket.accept"}
    assert sent.messages[-1]["type"] == "websocket.close"
    assert sent.messages[-1]["code"] == 1008
    # The app got the admitted messages in order, then the close, unless a reply of
    # its own found the session closed first (that send raised and ended it); the
    # sixth message never reached it.
    got = service.inner.frames["ws-rate"]
    admitted = [m for m in got if m["type"] == "websocket.receive"]
    assert admitted == frames[: len(admitted)] and len(admitted) <= 5
    assert got[len(admitted) :] in ([], [{"type": "websocket.disconnect", "code": 1008}])
    # Replies the app sent after the close never reached the client (the pump reads ahead).
    assert replies(sent) == [f"bob: m{n}" for n in range(len(replies(sent)))]
    refused, session_event = service.audit.for_request("ws-rate")
    assert (refused.name, refused.status, refused.subject) == (
        "excess_rate_limit_exceeded",
        1008,
        "bob",
    )
    assert "ws-messages" in (refused.reason or "")
    assert (session_event.name, session_event.status) == ("authz_allow", 101)


async def test_oversized_message_closes_with_1009(service: Service, signer: TokenIssuer) -> None:
    sent = await session(
        service, Client(text("small"), text("x" * 5000)), signer.mint("bob"), "ws-big"
    )
    assert sent.messages[-1]["code"] == 1009
    refused = service.audit.for_request("ws-big")[0]
    assert (refused.name, refused.status) == ("input_validation_fail", 1009)


async def test_session_is_closed_when_the_token_expires(
    service: Service, signer: TokenIssuer
) -> None:
    issued = 1_900_000_000.0
    token = signer.mint("carol", now=issued, expires_in=60)
    # The chain's clocks read 50 ms before the token's expiry.
    service.app.pipeline.clock = lambda: issued + 59.95
    service.app.pipeline.authenticator._clock = lambda: issued  # type: ignore[union-attr]
    sent = await session(service, Client(), token, "ws-exp")

    assert _without_headers(sent.messages[0]) == {"type": "websocket.accept"}
    assert sent.messages[-1] == {
        "type": "websocket.close",
        "code": 1008,
        "reason": "credential expired",
    }
    expired, session_event = service.audit.for_request("ws-exp")
    assert (expired.name, expired.status, expired.subject) == ("session_expired", 1008, "carol")
    assert (session_event.name, session_event.status) == ("authz_allow", 101)
    assert_no_credentials(service.audit.lines(), token)


async def test_sessions_of_one_user_are_isolated(service: Service, signer: TokenIssuer) -> None:
    token = signer.mint("dave")
    results: dict[str, Sender] = {}

    async def run(name: str, count: int, hang_up: bool) -> None:
        client = Client(*(text(f"{name}-{n}") for n in range(count)), hang_up=hang_up)
        results[name] = await session(service, client, token, f"ws-{name}")

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(run, "a", 6, False)  # one over its own budget of 5
        tasks.start_soon(run, "b", 5, True)
        tasks.start_soon(run, "c", 5, True)

    for name in "abc":  # each session hears only its own messages
        got = [m["text"] for m in service.inner.frames[f"ws-{name}"] if "text" in m]
        expected = [f"{name}-{n}" for n in range(5)]
        # "a" may stop early: once its sixth message closed the session, the
        # app's next reply raised (ASGI: send on a closed session) and ended it.
        assert got == expected if name != "a" else got == expected[: len(got)]
        echoed = replies(results[name])
        assert echoed == [f"dave: {name}-{n}" for n in range(len(echoed))]
    assert len(replies(results["b"])) == len(replies(results["c"])) == 5
    assert results["a"].messages[-1]["code"] == 1008
    for name in "bc":  # the other sessions of the same user were not closed
        assert not any(m["type"] == "websocket.close" for m in results[name].messages)
    refused = service.audit.named("excess_rate_limit_exceeded")
    assert [event.request_id for event in refused] == ["ws-a"]
    sessions = {e.request_id: e for e in service.audit.named("authz_allow")}
    assert set(sessions) == {"ws-a", "ws-b", "ws-c"}
    assert {e.subject for e in sessions.values()} == {"dave"}


def _without_headers(message: dict[str, Any]) -> dict[str, Any]:
    """The accept without the response headers secmw adds (request id, RateLimit)."""
    assert any(name == b"x-request-id" for name, _ in message.get("headers", []))
    return {k: v for k, v in message.items() if k != "headers"}
