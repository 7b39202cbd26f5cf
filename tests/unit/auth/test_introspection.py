"""Token introspection (RFC 7662) against the mock authorization server, in memory."""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest

from secmw.auth.introspection import IntrospectionAuthenticator, IntrospectionError
from secmw.errors import AuthenticationError, ConfigError
from secmw.testing import MockAuthorizationServer
from tests.auth_support import FakeClock, ctx_with, pkce_tokens

pytestmark = pytest.mark.anyio


@pytest.fixture
async def server() -> AsyncIterator[tuple[MockAuthorizationServer, httpx.AsyncClient]]:
    mock = MockAuthorizationServer()
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=mock), base_url=mock.issuer
    ) as http:
        yield mock, http


def introspector(
    mock: MockAuthorizationServer, http: httpx.AsyncClient, **options: Any
) -> IntrospectionAuthenticator:
    settings: dict[str, Any] = {
        "client_id": "resource-server",
        "client_secret": "rs-secret",
        "audience": mock.resource,
        "issuer": mock.issuer,
        "client": http,
    }
    settings.update(options)
    return IntrospectionAuthenticator(f"{mock.issuer}/introspect", **settings)


async def test_active_token_maps_claims_and_is_cached(server: Any) -> None:
    mock, http = server
    tokens = await pkce_tokens(mock, http, scope="read write")
    auth = introspector(mock, http)
    ctx = ctx_with(("authorization", f"Bearer {tokens['access_token']}"))
    principal = await auth.authenticate(ctx)
    assert principal is not None and principal.subject == "user-1"
    assert principal.scopes == {"read", "write"} and principal.auth_method == "introspection"
    await auth.authenticate(ctx)
    assert auth.requests == 1
    assert await auth.authenticate(ctx_with()) is None


async def test_inactive_tokens_are_401_and_negatively_cached(server: Any) -> None:
    mock, http = server
    auth = introspector(mock, http)
    for _ in range(3):
        with pytest.raises(AuthenticationError, match="inactive") as info:
            await auth.check("opaque-unknown")
        assert info.value.status == 401
    assert auth.requests == 1


async def test_revocation_bites_after_the_cache(server: Any) -> None:
    mock, http = server
    tokens = await pkce_tokens(mock, http)
    clock = FakeClock(__import__("time").time())
    auth = introspector(mock, http, cache_ttl=5, clock=clock)
    await auth.check(tokens["access_token"])
    await http.post("/revoke", data={"token": tokens["access_token"]})
    await auth.check(tokens["access_token"])  # still cached: the documented trade-off
    clock.advance(6)
    with pytest.raises(AuthenticationError, match="inactive"):
        await auth.check(tokens["access_token"])


async def test_foreign_audience_and_issuer_are_refused(server: Any) -> None:
    mock, http = server
    tokens = await pkce_tokens(mock, http)
    with pytest.raises(AuthenticationError, match="audience"):
        await introspector(mock, http, audience="https://other").check(tokens["access_token"])
    with pytest.raises(AuthenticationError, match="issuer"):
        await introspector(mock, http, issuer="https://other").check(tokens["access_token"])


async def test_endpoint_failures_are_component_errors(server: Any) -> None:
    mock, http = server
    with pytest.raises(IntrospectionError, match="401"):
        await introspector(mock, http, client_secret="wrong").check("tok")

    def broken(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectTimeout("slow", request=request)

    def garbage(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"<html>")

    def no_active(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"active": "yes"})

    for handler, match in (
        (broken, "ConnectTimeout"),
        (garbage, "non-JSON"),
        (no_active, "boolean"),
    ):
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            with pytest.raises(IntrospectionError, match=match):
                await introspector(mock, http, client=client).check("tok")


async def test_oversized_tokens_are_refused_before_any_request(server: Any) -> None:
    mock, http = server
    auth = introspector(mock, http, max_token_bytes=16)
    with pytest.raises(AuthenticationError, match="max_token_bytes"):
        await auth.check("x" * 17)
    assert auth.requests == 0


async def test_a_slow_drip_answer_is_cut_at_the_timeout(server: Any) -> None:
    mock, http = server

    async def drip() -> AsyncIterator[bytes]:
        for char in b'{"active": true, "sub": "x"}':
            await anyio.sleep(0.1)  # each read well inside httpx's per-read timeout
            yield bytes([char])

    def slow(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=drip())

    async with httpx.AsyncClient(transport=httpx.MockTransport(slow)) as client:
        auth = introspector(mock, http, client=client, timeout=0.5)
        started = anyio.current_time()
        with pytest.raises(IntrospectionError, match="TimeoutError"):
            await auth.check("tok")
    assert anyio.current_time() - started < 1.5


async def test_an_oversized_answer_is_refused_unread(server: Any) -> None:
    mock, http = server
    sent = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal sent
        yield b'{"active": true, "pad": "'
        while sent < 64 * 1024 * 1024:
            sent += 65536
            yield b"x" * 65536

    def huge(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=endless())

    async with httpx.AsyncClient(transport=httpx.MockTransport(huge)) as client:
        with pytest.raises(IntrospectionError, match="over"):
            await introspector(mock, http, client=client).check("tok")
    assert sent == 64 * 1024 * 1024  # read to its end (and dropped), within the timeout


async def test_client_credentials_are_form_encoded_before_basic(server: Any) -> None:
    mock, http = server
    seen: list[str] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["authorization"])
        return httpx.Response(200, json={"active": False})

    async with httpx.AsyncClient(transport=httpx.MockTransport(record)) as client:
        auth = introspector(mock, http, client=client, client_id="rs 1", client_secret="a+b:c%")
        with pytest.raises(AuthenticationError):
            await auth.check("tok")
    decoded = base64.b64decode(seen[0].removeprefix("Basic ")).decode()
    assert decoded == "rs+1:a%2Bb%3Ac%25"


@pytest.mark.parametrize(
    ("client_id", "secret"),
    [
        pytest.param("resource-server", "a+b c/d%", id="secret-with-form-specials"),
        pytest.param("rs 1:x", "s:%2B", id="client-id-with-space-and-colon"),
        pytest.param("résource", "sécret", id="non-ascii"),
    ],
)
async def test_the_mock_server_accepts_form_encoded_client_credentials(
    client_id: str, secret: str
) -> None:
    mock = MockAuthorizationServer(introspection_clients={client_id: secret})
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=mock), base_url=mock.issuer
    ) as http:
        tokens = await pkce_tokens(mock, http)
        auth = introspector(mock, http, client_id=client_id, client_secret=secret)
        principal = await auth.check(tokens["access_token"])
        assert principal.subject == "user-1"
        with pytest.raises(IntrospectionError, match="401"):
            await introspector(mock, http, client_id=client_id, client_secret=secret + "x").check(
                tokens["access_token"]
            )


async def test_without_an_audience_tokens_must_name_the_protected_resource(server: Any) -> None:
    # A token issued for another resource of the same authorization server is
    # active there too: it must not be accepted here (RFC 8707).
    from secmw.auth.build import build_authenticator, credential_settings
    from secmw.config import build_pipeline, load_config

    mock, http = server
    tokens = await pkce_tokens(mock, http)
    introspection = {
        "endpoint": f"{mock.issuer}/introspect",
        "client_id": "resource-server",
        "client_secret": "rs-secret",
    }

    def built(resource: str | None, **extra: Any) -> Any:
        auth: dict[str, Any] = {"introspection": {**introspection, **extra}}
        if resource is not None:
            auth["protected_resource"] = {
                "resource": resource,
                "authorization_servers": [mock.issuer],
            }
        config = load_config({"auth": auth})
        authenticator = build_authenticator(config.auth)
        assert isinstance(authenticator, IntrospectionAuthenticator)
        authenticator._client = http
        assert credential_settings(config.auth) is not None
        return authenticator, build_pipeline(config).fail_open

    foreign, _ = built("https://another-resource.example")
    with pytest.raises(AuthenticationError, match="audience"):
        await foreign.check(tokens["access_token"])
    ours, fail_open = built(mock.resource)
    assert (await ours.check(tokens["access_token"])).subject == "user-1"
    assert fail_open == ()
    unchecked, fail_open = built(None, verify_audience=False)
    assert (await unchecked.check(tokens["access_token"])).subject == "user-1"
    assert fail_open == ("auth.introspection.verify_audience",)


class _SlowAS(httpx.AsyncBaseTransport):
    """An introspection endpoint that takes a while and counts calls in flight."""

    def __init__(self, active: set[str]) -> None:
        self.active = active
        self.calls = 0
        self.running = 0
        self.most = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            await anyio.sleep(0.05)
        finally:
            self.running -= 1
        token = dict(item.split("=", 1) for item in request.content.decode().split("&"))["token"]
        answer = {"active": token in self.active}
        if answer["active"]:
            answer.update(sub="user-1", exp=time.time() + 600, aud="https://api", iss="https://as")
        return httpx.Response(200, json=answer)


def _slow_introspector(endpoint: _SlowAS, **options: Any) -> IntrospectionAuthenticator:
    return IntrospectionAuthenticator(
        "https://as/introspect",
        client_id="rs",
        client_secret="s",
        audience="https://api",
        issuer="https://as",
        client=httpx.AsyncClient(transport=endpoint),
        **options,
    )


async def test_requests_with_one_token_share_one_introspection() -> None:
    endpoint = _SlowAS({"good"})
    auth = _slow_introspector(endpoint)
    subjects: list[str] = []

    async def one() -> None:
        subjects.append((await auth.check("good")).subject)

    async with anyio.create_task_group() as group:
        for _ in range(50):
            group.start_soon(one)
    assert subjects == ["user-1"] * 50
    assert endpoint.calls == 1


async def test_calls_in_flight_are_bounded_and_waiting_counts_against_the_timeout() -> None:
    endpoint = _SlowAS(set())
    auth = _slow_introspector(endpoint, max_concurrent=3, timeout=0.12)
    outcomes: list[str] = []

    async def one(n: int) -> None:
        try:
            await auth.check(f"made-up-{n}")
        except IntrospectionError:
            outcomes.append("503")
        except AuthenticationError:
            outcomes.append("401")

    async with anyio.create_task_group() as group:
        for n in range(20):
            group.start_soon(one, n)
    assert endpoint.most == 3
    assert outcomes.count("401") >= 3 and "503" in outcomes  # the rest waited too long
    assert endpoint.calls < 20


async def test_made_up_tokens_do_not_push_active_ones_out_of_the_cache() -> None:
    endpoint = _SlowAS({"good"})
    auth = _slow_introspector(endpoint, cache_size=2)
    await auth.check("good")
    for n in range(10):
        with pytest.raises(AuthenticationError):
            await auth.check(f"made-up-{n}")
    calls = endpoint.calls
    assert (await auth.check("good")).subject == "user-1"
    assert endpoint.calls == calls  # still cached


def test_in_code_the_audience_is_required_or_explicitly_off() -> None:
    with pytest.raises(ConfigError, match="audience"):
        IntrospectionAuthenticator("https://as/i", client_id="c", client_secret="s")
    with pytest.raises(ConfigError, match="verify_audience=False with an audience"):
        IntrospectionAuthenticator(
            "https://as/i", client_id="c", client_secret="s", audience="a", verify_audience=False
        )
    unchecked = IntrospectionAuthenticator(
        "https://as/i", client_id="c", client_secret="s", verify_audience=False
    )
    # Built in code, the opt-out is a listed fail-open as from the config.
    from secmw import Pipeline
    from secmw.auth import CompositeAuthenticator

    assert Pipeline(authenticator=unchecked).fail_open == ("auth.introspection.verify_audience",)
    both = CompositeAuthenticator([unchecked])
    assert Pipeline(authenticator=both).fail_open == ("auth.introspection.verify_audience",)


async def test_requests_with_one_token_share_its_outcome_without_a_cache() -> None:
    # cache_ttl = 0 (revocation bites at once): the answer is still shared by the
    # requests in flight, not asked for again one after another.
    endpoint = _SlowAS({"good"})
    auth = _slow_introspector(endpoint, cache_ttl=0)
    finished: list[float] = []
    started = time.monotonic()

    async def one() -> None:
        await auth.check("good")
        finished.append(time.monotonic() - started)

    async with anyio.create_task_group() as group:
        for _ in range(10):
            group.start_soon(one)
    assert endpoint.calls == 1
    assert max(finished) < 0.5


async def test_an_outage_fails_the_waiting_requests_once_within_the_timeout() -> None:
    class Stalled(httpx.AsyncBaseTransport):
        calls = 0

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            Stalled.calls += 1
            await anyio.sleep(30)
            raise AssertionError("unreachable")

    auth = IntrospectionAuthenticator(
        "https://as/introspect",
        client_id="rs",
        client_secret="s",
        audience="https://api",
        timeout=0.3,
        client=httpx.AsyncClient(transport=Stalled()),
    )
    outcomes: list[tuple[float, str]] = []
    started = time.monotonic()

    async def one() -> None:
        try:
            await auth.check("tok")
        except IntrospectionError:
            outcomes.append((time.monotonic() - started, "503"))

    async with anyio.create_task_group() as group:
        for _ in range(6):
            group.start_soon(one)
    assert [o for _, o in outcomes] == ["503"] * 6
    assert max(t for t, _ in outcomes) < 1.0  # not 6 timeouts one after another
    assert Stalled.calls == 1


async def test_when_the_leading_request_is_cancelled_one_waiter_asks_for_all() -> None:
    endpoint = _SlowAS({"good"})
    auth = _slow_introspector(endpoint, cache_ttl=0)
    subjects: list[str] = []

    async def waiter() -> None:
        subjects.append((await auth.check("good")).subject)

    async with anyio.create_task_group() as group:
        with anyio.CancelScope() as leader_scope:
            async with anyio.create_task_group() as leader:
                leader.start_soon(auth.check, "good")
                await anyio.sleep(0.01)  # its call is on its way
                for _ in range(20):
                    group.start_soon(waiter)
                await anyio.sleep(0.01)
                leader_scope.cancel()  # the client of the first request left
    assert subjects == ["user-1"] * 20
    assert endpoint.calls == 2  # the cancelled one, and one for all the waiters


async def test_its_own_client_is_made_again_after_the_pipeline_closed_it(
    server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    mock, http = server
    real = httpx.AsyncClient

    class ToMock(real):  # type: ignore[misc, valid-type]
        def __init__(self, **options: Any) -> None:
            super().__init__(transport=httpx.ASGITransport(app=mock), **options)

    monkeypatch.setattr(httpx, "AsyncClient", ToMock)
    tokens = await pkce_tokens(mock, http, scope="read")
    auth = introspector(mock, http, client=None, cache_ttl=0)
    ctx = ctx_with(("authorization", f"Bearer {tokens['access_token']}"))
    assert await auth.authenticate(ctx) is not None
    await auth.aclose()  # the app's lifespan ended; it starts again
    assert await auth.authenticate(ctx_with(("authorization", f"Bearer {tokens['access_token']}")))


async def test_a_client_passed_in_is_left_open(server: Any) -> None:
    mock, http = server
    auth = introspector(mock, http)
    await auth.aclose()
    assert not http.is_closed  # its owner closes it
