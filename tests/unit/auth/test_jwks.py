"""JWKSClient: Cache-Control freshness, unknown-kid cooldown, last good keys kept."""

from __future__ import annotations

import json
import socket
import threading
import time
from typing import Any

import anyio
import pytest

from secmw.auth.jwks import FetchResult, JWKSClient, JWKSFetchError, freshness, urllib_fetcher
from secmw.auth.keys import SUPPORTED_ALGORITHMS
from secmw.errors import AuthenticationError, ComponentError, ConfigError
from secmw.testing import InMemoryJWKS, TokenIssuer
from tests.auth_support import FakeClock

pytestmark = pytest.mark.anyio

ONE = TokenIssuer(algorithm="ES256", kid="one")
TWO = TokenIssuer(algorithm="EdDSA", kid="two")


def client(jwks: InMemoryJWKS, clock: FakeClock, **options: object) -> JWKSClient:
    errors: list[str] = []
    made = JWKSClient(
        "https://issuer.example.test/jwks",
        allowed=SUPPORTED_ALGORITHMS,
        fetcher=jwks.fetcher(),
        clock=clock,
        on_error=errors.append,
        **options,  # type: ignore[arg-type]
    )
    made.errors = errors  # type: ignore[attr-defined]
    return made


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        pytest.param("public, max-age=600", 600, id="max-age"),
        pytest.param('max-age="120"', 120, id="quoted"),
        pytest.param("max-age=5", 30, id="clamped-low"),
        pytest.param("max-age=999999999", 86400, id="clamped-high"),
        pytest.param("no-store", 30, id="no-store"),
        pytest.param("private, no-cache", 30, id="no-cache"),
        pytest.param("s-maxage=900", 300, id="s-maxage-is-not-max-age"),
        pytest.param(None, 300, id="absent"),
        pytest.param("max-age=abc", 300, id="garbage"),
    ],
)
async def test_freshness_follows_cache_control(header: str | None, expected: float) -> None:
    assert freshness(header, default=300, low=30, high=86400) == expected


async def test_keys_are_cached_for_max_age_then_refreshed() -> None:
    jwks, clock = InMemoryJWKS(ONE, max_age=600), FakeClock()
    source = client(jwks, clock)
    keys = await source.current()
    assert set(keys.by_kid) == {"one"}
    await source.current()
    clock.advance(599)
    await source.current()
    assert jwks.requests == 1
    jwks.add(TWO)
    clock.advance(2)
    keys = await source.current()
    assert set(keys.by_kid) == {"one", "two"}
    assert jwks.requests == 2


async def test_unchanged_keys_keep_their_identity_across_refreshes() -> None:
    jwks, clock = InMemoryJWKS(ONE, TWO, max_age=60), FakeClock()
    source = client(jwks, clock)
    first = (await source.current()).by_kid["one"]
    jwks.remove("two")
    clock.advance(61)
    keys = await source.current()
    assert keys.by_kid["one"] is first
    assert "two" not in keys.by_kid


async def test_unknown_kid_refreshes_at_most_once_per_cooldown() -> None:
    jwks, clock = InMemoryJWKS(ONE), FakeClock()
    source = client(jwks, clock, cooldown=30)
    await source.current()
    for _ in range(500):
        await source.refresh_for_unknown_kid()
    assert jwks.requests == 1  # the load itself counts as the cooldown's attempt
    clock.advance(31)
    for _ in range(500):
        await source.refresh_for_unknown_kid()
    assert jwks.requests == 2
    clock.advance(31)
    await source.refresh_for_unknown_kid()
    assert jwks.requests == 3


@pytest.mark.parametrize("mode", ["down", "garbage", "empty"])
async def test_failures_keep_the_last_good_keys(mode: str) -> None:
    jwks, clock = InMemoryJWKS(ONE, max_age=60), FakeClock()
    source = client(jwks, clock, cooldown=10)
    good = await source.current()
    jwks.mode = mode
    clock.advance(61)
    assert await source.current() is good
    assert source.failures == 1
    assert source.errors and "JWKS refresh failed" in source.errors[0]  # type: ignore[attr-defined]
    # Not retried on every request: only after the cooldown.
    await source.current()
    assert jwks.requests == 2
    clock.advance(11)
    jwks.mode = "ok"
    await source.current()
    assert jwks.requests == 3 and source.failures == 1


async def test_never_loaded_is_a_component_error() -> None:
    jwks, clock = InMemoryJWKS(ONE), FakeClock()
    jwks.mode = "down"
    source = client(jwks, clock)
    with pytest.raises(JWKSFetchError):
        await source.current()


async def test_static_keys_survive_without_the_endpoint() -> None:
    from secmw.auth.keys import key_from_jwk

    jwks, clock = InMemoryJWKS(ONE), FakeClock()
    jwks.mode = "down"
    source = client(jwks, clock, static=(key_from_jwk(TWO.public_jwk),))
    keys = await source.current()
    assert set(keys.by_kid) == {"two"}


async def test_http_errors_and_oversized_documents_are_failures() -> None:
    clock = FakeClock()
    answers = [FetchResult(404, b"{}"), FetchResult(200, b" " * (1024 * 1024 + 1))]

    async def fetch(url: str) -> FetchResult:
        return answers.pop(0)

    source = JWKSClient(
        "https://x.test/jwks", allowed=SUPPORTED_ALGORITHMS, fetcher=fetch, clock=clock
    )
    with pytest.raises(JWKSFetchError):
        await source.current()
    clock.advance(31)
    with pytest.raises(JWKSFetchError):
        await source.current()
    assert source.failures == 2


async def test_encryption_and_unusable_keys_are_skipped() -> None:
    clock = FakeClock()
    document = (
        b'{"keys":[{"kty":"RSA","use":"enc","n":"x","e":"AQAB"},{"kty":"nope"},"str",'
        b'{"kty":"oct","kid":"shared","k":"c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldC0"},'
        + json.dumps({**TWO.public_jwk, "kid": "wraps", "key_ops": ["wrapKey"]}).encode()
        + b","
        + json.dumps({**TWO.public_jwk, "kid": "odd", "key_ops": "verify"}).encode()
        + b","
        + json.dumps({**ONE.public_jwk, "key_ops": ["verify"]}).encode()
        + b"]}"
    )

    async def fetch(url: str) -> FetchResult:
        return FetchResult(200, document)

    source = JWKSClient(
        "https://x.test/jwks", allowed=SUPPORTED_ALGORITHMS, fetcher=fetch, clock=clock
    )
    assert set((await source.current()).by_kid) == {"one"}


@pytest.mark.parametrize(
    "member",
    [
        pytest.param({"alg": {}}, id="alg-an-object"),
        pytest.param({"alg": ["ES256"]}, id="alg-a-list"),
        pytest.param({"crv": ["P-256"]}, id="crv-a-list"),
        pytest.param({"use": ["sig"]}, id="use-a-list"),
        pytest.param({"kid": 1}, id="kid-a-number"),
    ],
)
async def test_a_published_key_with_a_member_of_the_wrong_type_is_skipped(
    member: dict[str, object],
) -> None:
    bad = {**ONE.public_jwk, "kid": "bad", **member}
    document = json.dumps({"keys": [bad, TWO.public_jwk]}).encode()

    async def fetch(url: str) -> FetchResult:
        return FetchResult(200, document)

    errors: list[str] = []
    source = JWKSClient(
        "https://x.test/jwks",
        allowed=SUPPORTED_ALGORITHMS,
        fetcher=fetch,
        clock=FakeClock(),
        on_error=errors.append,
    )
    assert set((await source.current()).by_kid) == {"two"}
    assert errors == []


async def test_concurrent_requests_use_loaded_keys_while_one_refreshes() -> None:
    clock = FakeClock()
    release = anyio.Event()
    calls = 0

    async def slow(url: str) -> FetchResult:
        nonlocal calls
        calls += 1
        if calls > 1:
            await release.wait()
        return FetchResult(200, json.dumps(ONE.jwks()).encode(), "max-age=60")

    source = JWKSClient(
        "https://x.test/jwks", allowed=SUPPORTED_ALGORITHMS, fetcher=slow, clock=clock
    )
    loaded = await source.current()
    clock.advance(61)
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(source.current)
        await anyio.sleep(0.01)
        with anyio.fail_after(1):
            assert await source.current() is loaded  # not blocked by the slow refresh
        release.set()
    assert calls == 2 and not source.stale()


async def test_outage_and_recovery_are_audited_once_each_through_the_pipeline() -> None:
    from secmw import Pipeline
    from secmw.auth import JWTAuthenticator
    from secmw.testing import AuditCapture

    jwks, clock = InMemoryJWKS(ONE, max_age=60), FakeClock()
    source = client(jwks, clock, cooldown=10)
    authenticator = JWTAuthenticator((), issuer=ONE.issuer, audience=ONE.audience, jwks=source)
    audit = AuditCapture()
    Pipeline(authenticator=authenticator, audit=audit)  # binds the emitter
    await source.current()
    jwks.mode = "down"
    for _ in range(3):  # three failed refreshes, one cooldown apart: one outage
        clock.advance(61)
        await source.current()
    assert source.failures == 3
    (outage,) = audit.named("sys_monitor_disabled")
    assert outage.details["component"] == "jwks" and outage.severity == "error"
    assert "JWKS refresh failed" in (outage.reason or "")
    jwks.mode = "ok"
    clock.advance(61)
    await source.current()
    (recovery,) = audit.named("sys_monitor_enabled")
    assert recovery.details["failures"] == 3


def test_a_narrowed_key_keeps_its_identity_across_key_sets() -> None:
    from secmw.auth.keys import KeySet, VerificationKey

    # A JWK without "alg" fits several algorithms; the config allows one.
    given = VerificationKey("k1", object(), frozenset({"RS256", "PS256"}))
    allowed = frozenset({"RS256"})
    first = KeySet([given], allowed)
    again = KeySet([given], allowed, first)
    assert first.by_kid["k1"].algorithms == allowed
    assert again.by_kid["k1"] is first.by_kid["k1"]  # the token cache sees the same key
    replaced = VerificationKey("k1", object(), frozenset({"RS256", "PS256"}))
    assert KeySet([replaced], allowed, again).by_kid["k1"] is not first.by_kid["k1"]


def _jwt_with(issuer: TokenIssuer, jwks: InMemoryJWKS, **section: object) -> object:
    from secmw import load_config
    from secmw.auth.build import build_jwt

    config = {"issuer": issuer.issuer, "audience": issuer.audience, **section}
    config.setdefault("jwks_url", "https://issuer.example.test/jwks")
    return build_jwt(load_config({"auth": {"jwt": config}}).auth.jwt, fetcher=jwks.fetcher())


async def test_keys_fetched_at_startup_verify_tokens_without_a_kid_at_once() -> None:
    # A single-key issuer may leave kid out: the keys startup() fetched must be
    # the ones used, not only after the JWKS goes stale.
    issuer = TokenIssuer(algorithm="ES256", kid="only")
    jwks = InMemoryJWKS(issuer, max_age=3600)
    auth: Any = _jwt_with(issuer, jwks)
    await auth.startup()
    principal = await auth.check(issuer.mint("alice", headers={"kid": None}))
    assert principal.subject == "alice" and jwks.requests == 1


async def test_an_inline_key_wins_over_a_published_key_with_its_kid() -> None:
    inline = TokenIssuer(algorithm="ES256", kid="shared")
    published = TokenIssuer(algorithm="ES256", kid="shared")
    jwks = InMemoryJWKS(published)
    auth: Any = _jwt_with(inline, jwks, keys=[{"jwk": inline.public_jwk}])
    await auth.startup()
    assert (await auth.check(inline.mint("alice"))).subject == "alice"
    with pytest.raises(AuthenticationError):
        await auth.check(published.mint("mallory", claims={"iss": inline.issuer}))


async def test_an_empty_algorithm_list_is_a_config_error_with_a_jwks_url() -> None:
    with pytest.raises(ConfigError, match="algorithms"):
        _jwt_with(ONE, InMemoryJWKS(ONE), algorithms=[])


@pytest.mark.parametrize("configured", ["at+jwt", "application/at+jwt", "AT+JWT"])
@pytest.mark.parametrize("sent", ["at+jwt", "application/at+jwt"])
async def test_typ_with_or_without_the_application_prefix(configured: str, sent: str) -> None:
    issuer = TokenIssuer(algorithm="ES256", kid="typed")
    auth: Any = _jwt_with(issuer, InMemoryJWKS(issuer), typ=configured)
    await auth.startup()
    assert (await auth.check(issuer.mint(headers={"typ": sent}))).subject == "user-1"
    with pytest.raises(AuthenticationError):
        await auth.check(issuer.mint(headers={"typ": "JWT"}))


async def test_the_outage_event_names_the_url_without_its_credentials() -> None:
    async def down(url: str) -> FetchResult:
        raise JWKSFetchError("connection refused")

    events: list[Any] = []

    async def keep(event: Any) -> None:
        events.append(event)

    source = JWKSClient(
        "https://svc:hunter2@idp.example.test/jwks?api_key=s3cret",
        allowed=SUPPORTED_ALGORITHMS,
        fetcher=down,
        clock=FakeClock(),
    )
    source.bind_emitter(keep)
    with pytest.raises(ComponentError):
        await source.current()
    (event,) = events
    assert event.details["url"] == "https://idp.example.test/jwks?…"
    assert "hunter2" not in event.to_json() and "s3cret" not in event.to_json()


async def test_keys_that_expire_at_once_are_refreshed_at_most_once_per_cooldown() -> None:
    # max-age=0 with jwks_min_ttl = 0: the keys are stale on every request.
    jwks, clock = InMemoryJWKS(ONE, max_age=0), FakeClock()
    source = client(jwks, clock, min_ttl=0, cooldown=30)
    for _ in range(25):
        await source.current()
        clock.advance(1)
    assert jwks.requests == 1
    clock.advance(5)
    await source.current()
    assert jwks.requests == 2


async def test_a_refresh_outlives_the_cancelled_request_that_started_it() -> None:
    # The request that refreshes is cut short (a timeout layer): the fetch still
    # completes, once, and the new key is known to the requests after it.
    jwks, clock = InMemoryJWKS(ONE, max_age=60), FakeClock()
    slow = jwks.fetcher()
    calls = 0

    async def fetch(url: str) -> FetchResult:
        nonlocal calls
        calls += 1
        await anyio.sleep(0.05)
        return await slow(url)

    source = client(jwks, clock)
    source._fetch = fetch  # the helper's in-memory fetcher, slowed down
    await source.current()
    jwks.add(TWO)
    clock.advance(61)
    for _ in range(5):
        with anyio.move_on_after(0.01):
            await source.current()
        clock.advance(1)
    assert calls == 2
    assert set((await source.current()).by_kid) == {"one", "two"}
    assert calls == 2


async def test_tokens_with_a_new_kid_wait_for_the_refresh_on_its_way() -> None:
    jwks, clock = InMemoryJWKS(ONE, max_age=600), FakeClock()
    source = client(jwks, clock, cooldown=30)
    await source.current()
    clock.advance(31)
    jwks.add(TWO)
    gate = anyio.Event()
    plain = source._fetch

    async def held(url: str) -> FetchResult:
        await gate.wait()
        return await plain(url)

    source._fetch = held
    seen: list[set[str]] = []

    async def unknown_kid() -> None:
        seen.append(set((await source.refresh_for_unknown_kid()).by_kid))

    async with anyio.create_task_group() as group:
        group.start_soon(unknown_kid)
        await anyio.sleep(0.01)  # its fetch is on its way
        for _ in range(4):
            group.start_soon(unknown_kid)
        await anyio.sleep(0.01)
        gate.set()
    assert seen == [{"one", "two"}] * 5
    assert jwks.requests == 2


async def test_a_set_without_a_key_for_the_allowed_algorithms_is_a_failed_fetch() -> None:
    jwks, clock = InMemoryJWKS(ONE), FakeClock()  # ES256 only
    errors: list[str] = []
    source = JWKSClient(
        "https://x.test/jwks",
        allowed=frozenset({"RS256"}),
        fetcher=jwks.fetcher(),
        clock=clock,
        on_error=errors.append,
    )
    with pytest.raises(JWKSFetchError):
        await source.current()
    assert errors == ["JWKS refresh failed: no signature key for the allowed algorithms"]


def test_a_trickling_endpoint_is_cut_off_at_the_timeout() -> None:
    # One byte every 0.2 s: each read is within urllib's timeout, the answer is not.
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    done = threading.Event()

    def trickle() -> None:
        connection, _ = server.accept()
        with connection:
            connection.recv(65536)
            connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
            while not done.wait(0.2):
                try:
                    connection.sendall(b" ")
                except OSError:
                    return

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    fetch = urllib_fetcher(timeout=0.6)
    started = time.monotonic()
    try:
        with pytest.raises(TimeoutError):
            anyio.run(fetch, f"http://127.0.0.1:{port}/jwks")
        assert time.monotonic() - started < 2.0
    finally:
        done.set()
        server.close()
        thread.join(5)


def test_a_fetch_given_up_on_stops_reading_trickling_headers() -> None:
    # The status line, then a header one byte at a time: the thread reading it
    # must end when the fetch is given up on, not when the endpoint stops.
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    sent_until_closed = threading.Event()

    def trickle() -> None:
        connection, _ = server.accept()
        with connection:
            connection.recv(65536)
            connection.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
            for _ in range(100):  # 20 s at most
                time.sleep(0.2)
                try:
                    connection.sendall(b"a")
                except OSError:
                    sent_until_closed.set()
                    return

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    fetch = urllib_fetcher(timeout=0.6)

    async def give_up() -> None:
        with anyio.move_on_after(0.6):
            await fetch(f"http://127.0.0.1:{port}/jwks")

    try:
        anyio.run(give_up)
        assert sent_until_closed.wait(3)  # the reader hung up within a few bytes
    finally:
        server.close()
        thread.join(25)


def test_a_fetch_given_up_on_stops_waiting_for_a_trickling_proxy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Through an HTTPS proxy, the CONNECT answer is read before the connection
    # exists as far as urllib is concerned: its socket must be shut all the same.
    proxy = socket.create_server(("127.0.0.1", 0))
    port = proxy.getsockname()[1]
    closed = threading.Event()

    def trickle() -> None:
        connection, _ = proxy.accept()
        with connection:
            connection.recv(65536)
            connection.sendall(b"HTTP/1.1 200 Connection established\r\nX-Slow: ")
            for _ in range(100):
                time.sleep(0.2)
                try:
                    connection.sendall(b"a")
                except OSError:
                    closed.set()
                    return

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    monkeypatch.setenv("https_proxy", f"http://127.0.0.1:{port}")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    fetch = urllib_fetcher(timeout=0.6)

    async def give_up() -> None:
        with anyio.move_on_after(0.6):
            await fetch("https://issuer.example.test/jwks")

    try:
        anyio.run(give_up)
        assert closed.wait(3)
    finally:
        proxy.close()
        thread.join(25)
