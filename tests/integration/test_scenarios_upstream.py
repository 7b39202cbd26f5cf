"""Scenarios, full chain in front of an upstream: breaker, egress guard, credential stripping.

The gateway (every stage of the chain, then ``secmw.proxy.ReverseProxy``) runs in
memory; the upstream is a real HTTP server on 127.0.0.1 that records the headers
of every request it gets, so each scenario checks that no client credential ever
reached it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from tests.gateway_support import (
    EchoUpstream,
    HeldReceiver,
    assert_no_client_secrets,
    serve,
)
from tests.ratelimit_support import FakeClock
from tests.scenario_gateway_support import BREAKER, Front
from tests.scenario_support import CLIENT, assert_no_credentials
from tests.support import Sender, http_scope

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[EchoUpstream, str]]:
    echo = EchoUpstream()
    with serve(echo) as url:
        yield echo, url


@pytest.fixture
async def front(upstream: tuple[EchoUpstream, str]) -> AsyncIterator[Front]:
    echo, url = upstream
    echo.fail = False
    built = Front(echo, url, clock=FakeClock())
    yield built
    echo.fail = False
    await built.gateway.proxy.aclose()
    assert_no_credentials(built.audit.lines(), built.token)


async def test_client_credentials_never_reach_the_upstream(
    front: Front, upstream: tuple[EchoUpstream, str]
) -> None:
    echo, _ = upstream
    before = len(echo.seen)
    sent, _ = await front.get("/echo", b"page=2")

    assert sent.status == 200
    seen = sent.json()
    assert seen["path"] == "/echo" and seen["query"] == "page=2"
    assert seen["headers"]["x-forwarded-for"] == CLIENT[0]
    assert len(echo.seen) == before + 1
    assert_no_client_secrets(echo, front.token)
    event = front.event(sent)
    assert (event.name, event.subject, event.status) == ("authz_allow", "nora", 200)
    assert event.details["outcome"] == "ok"


async def test_breaker_opens_fails_fast_then_recovers_through_half_open(
    front: Front, upstream: tuple[EchoUpstream, str]
) -> None:
    echo, _ = upstream
    echo.fail = True
    failing = [(await front.get("/echo"))[0] for _ in range(3)]
    assert [sent.status for sent in failing] == [500, 500, 500]
    assert_no_client_secrets(echo, front.token)
    (breaker,) = [b for b in front.gateway.registry if b.name.startswith("app:")]
    assert breaker.state.value == "open"

    reached = len(echo.seen)
    fast, elapsed = await front.get("/echo")
    assert fast.status == 503
    assert elapsed < 0.5  # refused at once, without a connection attempt
    assert int(fast.header("retry-after") or 0) >= 1
    assert fast.json()["detail"] == "The upstream service is temporarily unavailable."
    assert len(echo.seen) == reached  # the upstream was not touched
    refused = front.event(fast)
    assert (refused.name, refused.status, refused.subject) == ("upstream_circuit_open", 503, "nora")
    assert refused.details["outcome"] == "circuit_open"

    echo.fail = False
    front.clock.advance(BREAKER["open_duration"])  # the breakers run on a fake clock
    trials = [(await front.get("/echo"))[0] for _ in range(2)]  # half_open_calls
    assert [sent.status for sent in trials] == [200, 200]
    assert breaker.state.value == "closed"
    assert (await front.get("/echo"))[0].status == 200
    assert_no_client_secrets(echo, front.token)

    transitions = [name for name in front.audit.names() if name.startswith("breaker_")]
    assert transitions == ["breaker_opened", "breaker_half_open", "breaker_closed"]
    opened = front.audit.named("breaker_opened")[0]
    assert opened.details["breaker"] == breaker.name
    assert opened.details["failure_rate"] == 100.0


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        pytest.param("/internal/admin", "address 10.20.30.40 is not public", id="private-address"),
        pytest.param(
            "/metadata/latest/meta-data",
            "address 169.254.169.254 is blocked",
            id="dns-to-cloud-metadata",
        ),
    ],
)
async def test_egress_to_a_forbidden_address_is_refused(
    front: Front, upstream: tuple[EchoUpstream, str], path: str, reason: str
) -> None:
    echo, _ = upstream
    before = len(echo.seen)
    sent, elapsed = await front.get(path)

    assert sent.status == 502
    assert sent.json()["detail"] == "The upstream destination is not allowed."
    assert elapsed < 1.0  # refused before any connection attempt
    assert len(echo.seen) == before
    event = front.event(sent)
    assert (event.name, event.status, event.subject) == ("egress_denied", 502, "nora")
    assert event.details["outcome"] == "egress_denied"
    # The operator learns which address was refused; the client does not.
    assert event.reason == reason
    assert b"10.20.30.40" not in sent.body and b"169.254" not in sent.body


async def test_refused_requests_never_reach_the_upstream_either(
    front: Front, upstream: tuple[EchoUpstream, str]
) -> None:
    echo, _ = upstream
    before = len(echo.seen)
    sender = Sender()
    await front.gateway(http_scope("/echo", client=CLIENT), HeldReceiver(), sender)
    assert sender.status == 401
    sent, _ = await front.get("/../../etc/passwd")
    assert sent.status in (400, 401, 403)
    assert len(echo.seen) == before
