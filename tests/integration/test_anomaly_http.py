"""Anomaly detection and metrics through SecurityMiddleware, with real JWTs and a fake clock."""

from __future__ import annotations

import json

import pytest
from structlog.testing import capture_logs

from secmw import SecurityMiddleware
from secmw.anomaly import pipeline_hooks
from secmw.anomaly.config import AnomalyConfig
from secmw.auth.jwt import JWTAuthenticator
from secmw.config import load_config
from secmw.metrics.config import MetricsConfig
from secmw.pipeline import Pipeline
from secmw.testing import AuditCapture, TokenIssuer
from tests.anomaly_support import MONDAY_10H, FakeClock
from tests.support import EchoApp, call, http_scope

pytestmark = pytest.mark.anyio

DAY = 86_400.0


def _app(
    issuer: TokenIssuer,
    clock: FakeClock,
    anomaly: dict[str, object],
    metrics: dict[str, object] | None = None,
) -> tuple[SecurityMiddleware, AuditCapture]:
    audit = AuditCapture()
    config = load_config({"auth": {"jwt": issuer.jwt_config()}})
    assert config.auth.jwt is not None
    hooks = pipeline_hooks(
        AnomalyConfig.model_validate(anomaly),
        MetricsConfig.model_validate(metrics or {}),
        audit,
        clock=clock,
    )
    pipeline = Pipeline(authenticator=JWTAuthenticator.from_config(config.auth.jwt), **hooks)
    return SecurityMiddleware(EchoApp(), pipeline=pipeline), audit


def _get(token: str | None, client: str, path: str = "/api/items") -> dict[str, object]:
    headers = [("authorization", f"Bearer {token}")] if token else []
    return http_scope(path, headers=headers, client=(client, 40000))


async def test_weekday_only_principal_on_a_weekend_is_allowed_with_an_alert() -> None:
    issuer = TokenIssuer()
    clock = FakeClock(MONDAY_10H)
    app, audit = _app(
        issuer,
        clock,
        {
            "enabled": True,
            "off_hours": {"enabled": True, "learning_days": 7, "min_requests": 5},
        },
    )
    token = issuer.mint("weekday-worker", expires_in=3600)
    for week in range(2):
        for day in range(5):
            clock.now = MONDAY_10H + week * 7 * DAY + day * DAY
            assert (await call(app, _get(token, "192.0.2.10"))).status == 200
    assert audit.named("anomaly_off_hours") == []
    clock.now = MONDAY_10H + 12 * DAY  # Saturday, 10:00 UTC
    with capture_logs() as logs:
        response = await call(app, _get(token, "192.0.2.10"))
    assert response.status == 200
    request_id = response.header("x-request-id")
    assert audit.names()[-2:] == ["authz_allow", "anomaly_off_hours"]
    line = json.loads(audit.lines()[-1])
    assert line["subject"] == "weekday-worker" and line["request_id"] == request_id
    assert line["details"]["evidence"]["day"] == "sat"
    assert line["details"]["evidence"]["usual_days"] == ["mon", "tue", "wed", "thu", "fri"]
    assert line["details"]["response"] == "alert"
    assert token not in audit.lines()[-1]
    assert [(log["event"], log["anomaly"], log["subject"]) for log in logs] == [
        ("secmw_anomaly", "anomaly_off_hours", "weekday-worker")
    ]


async def test_twenty_failed_logins_block_that_address_for_the_cool_down() -> None:
    issuer = TokenIssuer()
    forger = TokenIssuer()  # a key the service does not trust
    clock = FakeClock(MONDAY_10H)
    app, audit = _app(
        issuer,
        clock,
        {
            "enabled": True,
            "alerts": {"structlog": False},
            "auth_failures_by_client": {"threshold": 20, "window": 300, "cool_down": 900},
        },
    )
    good = issuer.mint("alice", expires_in=7200)
    attacker, bystander = "203.0.113.66", "198.51.100.20"
    for attempt in range(19):
        clock.advance(1)
        bad = forger.mint(f"guess-{attempt}", expires_in=7200)
        assert (await call(app, _get(bad, attacker))).status == 401
    # nineteen failures: still admitted with a valid token
    assert (await call(app, _get(good, attacker))).status == 200
    clock.advance(1)
    assert (await call(app, _get("not.a.jwt", attacker))).status == 401  # the 20th
    assert audit.names()[-2:] == ["authn_token_invalid", "authn_brute_force"]
    detection = audit.events[-1]
    assert detection.client == attacker and detection.severity == "error"
    assert detection.details["evidence"]["count"] == 20
    assert detection.details["cool_down_s"] == 900

    blocked = await call(app, _get(good, attacker))  # even with a valid token
    assert blocked.status == 429
    assert blocked.header("retry-after") == "900"
    assert blocked.header("www-authenticate") is None
    assert blocked.json()["type"].endswith("#abnormal-usage-detected")
    assert audit.last.name == "authn_brute_force" and audit.last.status == 429
    assert audit.last.outcome == "failure"

    assert (await call(app, _get(good, bystander))).status == 200  # others pass
    clock.advance(899)
    still = await call(app, _get(good, attacker))
    assert still.status == 429 and still.header("retry-after") == "1"
    clock.advance(1)
    assert (await call(app, _get(good, attacker))).status == 200  # the cool-down is over


async def test_metrics_endpoint_through_the_middleware(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECMW_TEST_SCRAPE", "scrape-token")
    issuer = TokenIssuer()
    clock = FakeClock()
    app, audit = _app(
        issuer,
        clock,
        {"enabled": True, "alerts": {"structlog": False}},
        {"enabled": True, "token_env": "SECMW_TEST_SCRAPE", "allow_cidrs": ["127.0.0.0/8"]},
    )
    token = issuer.mint("alice")
    assert (await call(app, _get(token, "192.0.2.1"))).status == 200
    assert (await call(app, _get(None, "192.0.2.1"))).status == 401
    assert (await call(app, _get("not-a-jwt", "192.0.2.1"))).status == 401
    refused = await call(app, _get("scrape-token", "192.0.2.1", "/metrics"))
    assert refused.status == 403
    no_token = await call(app, _get(None, "127.0.0.1", "/metrics"))
    assert (
        no_token.status == 401 and no_token.header("www-authenticate") == 'Bearer realm="metrics"'
    )
    scrape = await call(app, _get("scrape-token", "127.0.0.1", "/metrics"))
    assert scrape.status == 200
    assert scrape.header("x-request-id")
    text = scrape.body.decode()
    assert 'secmw_requests_total{transport="http",event="authz_allow",status_class="2xx"} 1' in text
    assert 'secmw_auth_failures_total{reason="authn_token_missing"} 1' in text
    assert 'secmw_anomaly_tracked_keys{detector="token_reuse"} 1' in text
    # the anonymous request passed authentication (no credential) and was refused by policy
    assert 'secmw_stage_duration_seconds_count{stage="authenticate",outcome="success"} 2' in text
    # ... and the bad JWT; scrapes are not authentication (the endpoint checks its own
    # token), so neither the refused nor the served ones are timed as such
    assert 'secmw_stage_duration_seconds_count{stage="authenticate",outcome="failure"} 1' in text
    again = (await call(app, _get("scrape-token", "127.0.0.1", "/metrics"))).body.decode()
    assert 'secmw_stage_duration_seconds_count{stage="authenticate",outcome="failure"} 1' in again
    assert "alice" not in text
    served = audit.for_request(scrape.header("x-request-id") or "")
    assert [(e.name, e.reason, e.status) for e in served] == [
        ("authz_allow", "served by secmw", 200)
    ]
    # the JWT authenticator never saw the scrape token
    assert len(audit.named("authn_token_invalid")) == 1


async def test_a_blocked_address_is_blocked_on_the_metrics_endpoint_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SECMW_TEST_SCRAPE", "scrape-token")
    app, _ = _app(
        TokenIssuer(),
        FakeClock(),
        {"enabled": True, "alerts": {"structlog": False}},
        {"enabled": True, "token_env": "SECMW_TEST_SCRAPE"},
    )
    guesses = [
        (await call(app, _get(f"guess{n}", "203.0.113.66", "/metrics"))).status for n in range(25)
    ]
    assert guesses[:20] == [401] * 20 and set(guesses[20:]) == {429}
    # Blocked: the right token no longer helps this address; another one scrapes.
    assert (await call(app, _get("scrape-token", "203.0.113.66", "/metrics"))).status == 429
    assert (await call(app, _get("scrape-token", "198.51.100.7", "/metrics"))).status == 200


async def _scrape(app: SecurityMiddleware) -> list[str]:
    scrape = await call(app, _get("scrape-token", "127.0.0.1", "/metrics"))
    assert scrape.status == 200
    return [line for line in scrape.body.decode().splitlines() if not line.startswith("#")]


async def test_anomaly_blocks_are_not_counted_as_refused_authentications(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SECMW_TEST_SCRAPE", "scrape-token")
    app, audit = _app(
        TokenIssuer(),
        FakeClock(),
        {"enabled": True, "alerts": {"structlog": False}},
        {"enabled": True, "token_env": "SECMW_TEST_SCRAPE", "allow_cidrs": ["127.0.0.0/8"]},
    )
    statuses = [(await call(app, _get(f"guess{n}", "203.0.113.66"))).status for n in range(25)]
    assert statuses == [401] * 20 + [429] * 5
    assert len(audit.named("authn_brute_force")) == 1 + 5  # the detection, then each block
    lines = await _scrape(app)
    # The 20 guesses were refused authentications; the 5 blocked requests never reached
    # authentication: they count with the requests, under the detector's event.
    assert [line for line in lines if line.startswith("secmw_auth_failures_total")] == [
        'secmw_auth_failures_total{reason="authn_token_invalid"} 20'
    ]
    assert (
        'secmw_requests_total{transport="http",event="authn_brute_force",status_class="4xx"} 5'
        in lines
    )


async def test_idle_anomaly_keys_are_dropped_and_evictions_are_counted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SECMW_TEST_SCRAPE", "scrape-token")
    clock = FakeClock()
    app, _ = _app(
        TokenIssuer(),
        clock,
        {"enabled": True, "alerts": {"structlog": False}, "max_keys": 10},
        {"enabled": True, "token_env": "SECMW_TEST_SCRAPE", "allow_cidrs": ["127.0.0.0/8"]},
    )
    for n in range(30):  # 30 addresses, one failed login each: 20 pushed out under the cap
        assert (await call(app, _get("not-a-jwt", f"2001:db8:0:{n:x}::1"))).status == 401
    lines = await _scrape(app)
    assert 'secmw_anomaly_tracked_keys{detector="auth_failures_by_client"} 10' in lines
    assert 'secmw_anomaly_evicted_keys_total{detector="auth_failures_by_client"} 20' in lines
    clock.advance(7 * DAY)  # every window long over, and no new key since
    lines = await _scrape(app)
    assert 'secmw_anomaly_tracked_keys{detector="auth_failures_by_client"} 0' in lines
    assert 'secmw_anomaly_evicted_keys_total{detector="auth_failures_by_client"} 20' in lines


async def test_token_reuse_step_up_challenge_until_a_fresh_login() -> None:
    issuer = TokenIssuer()
    clock = FakeClock(MONDAY_10H)
    app, audit = _app(
        issuer,
        clock,
        {
            "enabled": True,
            "alerts": {"structlog": False},
            "step_up_acr_values": ["mfa"],
            "token_reuse": {"threshold": 3, "response": "step_up", "cool_down": 600},
        },
    )
    stolen = issuer.mint("kim", expires_in=7200, claims={"auth_time": int(MONDAY_10H) - 3600})
    assert (await call(app, _get(stolen, "192.0.2.1"))).status == 200
    assert (await call(app, _get(stolen, "192.0.2.2"))).status == 200
    clock.advance(30)
    challenged = await call(app, _get(stolen, "192.0.2.3"))
    assert challenged.status == 401
    assert challenged.header("www-authenticate") == (
        'Bearer realm="secmw", error="insufficient_user_authentication", '
        'error_description="A stronger or more recent authentication is required.", '
        'acr_values="mfa", max_age=0'
    )
    assert audit.names()[-2:] == ["authn_token_reuse", "authn_token_reuse"]
    assert audit.events[-2].status == 401 and audit.events[-1].details["response"] == "step_up"
    assert stolen not in "".join(audit.lines())
    clock.advance(60)
    again = await call(app, _get(stolen, "192.0.2.1"))
    assert again.status == 401 and "max_age=60" in (again.header("www-authenticate") or "")
    # the owner logs in again with MFA: a new credential, an auth_time after the detection
    fresh = issuer.mint("kim", acr="mfa", expires_in=7200, claims={"auth_time": int(clock.now)})
    assert (await call(app, _get(fresh, "192.0.2.1"))).status == 200
    clock.advance(600)
    assert (await call(app, _get(stolen, "192.0.2.1"))).status == 200  # the window ended


async def test_blocked_address_cannot_open_a_websocket() -> None:
    from tests.support import Receiver, Sender, ws_scope

    issuer = TokenIssuer()
    clock = FakeClock(MONDAY_10H)
    app, audit = _app(
        issuer,
        clock,
        {
            "enabled": True,
            "alerts": {"structlog": False},
            "auth_failures_by_client": {"threshold": 2, "cool_down": 60},
        },
    )
    for _ in range(2):
        assert (await call(app, _get("bad", "203.0.113.7"))).status == 401
    sent = Sender()
    scope = ws_scope(
        headers=[("authorization", f"Bearer {issuer.mint('alice')}")],
        extensions={"websocket.http.response": {}},
    )
    await app(scope, Receiver([{"type": "websocket.connect"}]), sent)
    assert sent.status == 429 and sent.header("retry-after") == "60"
    assert audit.last.name == "authn_brute_force" and audit.last.transport == "websocket"


async def test_failed_logins_from_one_ipv6_64_count_together() -> None:
    forger = TokenIssuer()
    clock = FakeClock(MONDAY_10H)
    app, audit = _app(
        TokenIssuer(),
        clock,
        {
            "enabled": True,
            "alerts": {"structlog": False},
            "auth_failures_by_client": {"threshold": 20, "window": 300, "cool_down": 900},
        },
    )
    statuses = []
    for attempt in range(22):  # a new interface id for every guess
        clock.advance(1)
        address = f"2001:db8:7:9:{attempt + 1:x}::1"
        statuses.append((await call(app, _get(forger.mint(f"g{attempt}"), address))).status)
    assert statuses[:20] == [401] * 20 and statuses[20:] == [429, 429]
    (detection,) = [e for e in audit.named("authn_brute_force") if e.status is None]
    assert detection.details["key"] == "2001:db8:7:9::/64"
    # another subscriber's /64 is not blocked
    other = await call(app, _get(forger.mint("x"), "2001:db8:7:a::1"))
    assert other.status == 401


@pytest.mark.parametrize("client", ["192.0.2.5", "2001:db8::5", "::ffff:192.0.2.5"])
async def test_a_client_step_up_applies_whatever_the_address_family(client: str) -> None:
    issuer, clock = TokenIssuer(), FakeClock(MONDAY_10H)
    app, _ = _app(
        issuer,
        clock,
        {
            "enabled": True,
            "alerts": {"structlog": False},
            "auth_failures_by_client": {"threshold": 3, "response": "step_up", "cool_down": 600},
        },
    )
    for attempt in range(4):
        await call(app, _get(f"bad{attempt}", client))
    clock.advance(5)
    old_login = issuer.mint("kim", expires_in=7200, claims={"auth_time": int(MONDAY_10H) - 3600})
    sent = await call(app, _get(old_login, client))
    assert sent.status == 401
    assert "insufficient_user_authentication" in (sent.header("www-authenticate") or "")


async def test_new_tools_are_seen_without_any_other_stage_reading_the_body() -> None:
    # Only [anomaly.new_target] is on: no tool rule, no inspector. The tool names
    # are still read, and every new tool of a batch is named.
    issuer, clock = TokenIssuer(), FakeClock(MONDAY_10H)
    app, audit = _app(
        issuer,
        clock,
        {"enabled": True, "new_target": {"enabled": True, "learning_days": 1, "min_requests": 0}},
    )
    token = issuer.mint("agent-1", expires_in=100 * DAY, now=MONDAY_10H)

    def rpc(*tools: str) -> dict[str, object]:
        calls = [
            {"jsonrpc": "2.0", "id": n, "method": "tools/call", "params": {"name": t}}
            for n, t in enumerate(tools, 1)
        ]
        body = json.dumps(calls if len(calls) > 1 else calls[0]).encode()
        scope = http_scope(
            "/mcp",
            method="POST",
            headers=[("authorization", f"Bearer {token}"), ("content-type", "application/json")],
        )
        return {"scope": scope, "body": body}

    from tests.support import Receiver

    async def send(request: dict[str, object]) -> None:
        await call(app, request["scope"], Receiver.body(request["body"]))  # type: ignore[arg-type]

    await send(rpc("search"))
    clock.advance(2 * DAY)
    await send(rpc("delete_repo"))
    await send(rpc("list_issues", "drop_table"))
    targets = [e.details["evidence"]["target"] for e in audit.named("anomaly_new_target")]
    assert targets == ["tool:delete_repo", "tool:list_issues, tool:drop_table"]


@pytest.mark.parametrize(
    "key",
    [
        pytest.param("global", id="global"),
        pytest.param("tenant", id="tenant"),
        pytest.param("route", id="route"),
        pytest.param("ip", id="ip-shared-by-a-nat"),
    ],
)
async def test_refusals_by_a_shared_tier_do_not_count_as_the_callers_denials(key: str) -> None:
    from tests.ratelimit_support import HeaderAuthenticator

    audit = AuditCapture()
    config = {
        "auth": {"allow_anonymous": True},
        "anomaly": {
            "enabled": True,
            "repeated_denials": {"threshold": 3, "window": 300, "response": "block"},
        },
        "ratelimit": {
            "tiers": [
                {"name": "shared", "key": key, "rate": "5/hour"},
                {"name": "user", "key": "principal", "rate": "8/hour"},
            ]
        },
    }
    app = SecurityMiddleware(EchoApp(), config, authenticator=HeaderAuthenticator(), audit=audit)
    nat = ("203.0.113.5", 1)  # mallory and alice share one office or carrier NAT address
    # ... and one tenant (x-user: subject;tier;roles;tenant).
    mallory = http_scope("/api", headers=[("x-user", "mallory;;;acme")], client=nat)
    assert [(await call(app, mallory)).status for _ in range(5)] == [200] * 5
    alice = http_scope("/api", headers=[("x-user", "alice;;;acme")], client=nat)
    assert [(await call(app, alice)).status for _ in range(5)] == [429] * 5
    assert not [event for event in audit.events if event.name.startswith("anomaly_")]
    refused = await call(app, alice)
    assert refused.status == 429 and b"abnormal" not in refused.body
    # Nor is alice blocked anywhere else: her subject was never counted.
    home = http_scope("/api", headers=[("x-user", "alice;;;acme")], client=("198.51.100.77", 1))
    assert (await call(app, home)).status == (200 if key == "ip" else 429)


@pytest.mark.parametrize(
    "key",
    [
        pytest.param("principal", id="principal"),
        pytest.param("api_key", id="api-key"),
        pytest.param("ip+principal", id="ip-and-principal"),
        pytest.param("tenant+principal", id="tenant-and-principal"),
    ],
)
async def test_refusals_by_the_callers_own_tier_still_count(key: str) -> None:
    from tests.ratelimit_support import HeaderAuthenticator

    audit = AuditCapture()
    config = {
        "auth": {"allow_anonymous": True},
        "anomaly": {"enabled": True, "repeated_denials": {"threshold": 3, "window": 300}},
        "ratelimit": {"tiers": [{"name": "user", "key": key, "rate": "2/hour"}]},
    }
    app = SecurityMiddleware(EchoApp(), config, authenticator=HeaderAuthenticator(), audit=audit)
    alice = http_scope("/api", headers=[("x-user", "alice")], client=("203.0.113.5", 1))
    assert [(await call(app, alice)).status for _ in range(5)] == [200, 200, 429, 429, 429]
    assert [event.subject for event in audit.events if event.name.startswith("anomaly_")] == [
        "alice"
    ]
