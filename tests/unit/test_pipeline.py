"""The pipeline's stage order and how each outcome becomes a response."""

from __future__ import annotations

from typing import Any

import pytest

from secmw import Pipeline, SecurityMiddleware
from secmw.context import Finding, Principal, RequestContext
from secmw.errors import ComponentError, RateLimited, StepUpRequired
from secmw.policy import Decision, Effect
from secmw.ratelimit import RateDecision
from secmw.testing import AuditCapture
from tests.support import EchoApp, call, http_scope

pytestmark = pytest.mark.anyio

ALICE = Principal(subject="alice", auth_method="test")


class Recorder:
    """Every stage double appends its name, so the order is observable."""

    def __init__(self) -> None:
        self.order: list[str] = []


class FixedAuth:
    def __init__(self, log: Recorder, principal: Principal | None = ALICE) -> None:
        self.log, self.principal = log, principal

    async def authenticate(self, ctx: RequestContext) -> Principal | None:
        self.log.order.append("authenticate")
        return self.principal


class FlagInspector:
    needs_body = False

    def __init__(self, log: Recorder) -> None:
        self.log = log

    def inspect(self, ctx: RequestContext) -> list[Finding]:
        self.log.order.append("inspect")
        return [Finding("inspector", "signal", 0.9)]


class FixedPolicy:
    needs_body = False

    def __init__(self, log: Recorder, decision: Decision) -> None:
        self.log, self.decision = log, decision

    def evaluate(self, ctx: RequestContext) -> Decision:
        self.log.order.append("authorize")
        assert ctx.findings, "inspection runs before authorization"
        return self.decision


class FixedLimiter:
    def __init__(self, log: Recorder, decision: RateDecision) -> None:
        self.log, self.decision = log, decision

    async def hit(self, ctx: RequestContext) -> RateDecision:
        self.log.order.append("throttle")
        return self.decision


RATE_HEADERS = ((b"ratelimit-policy", b'"burst";q=10;w=60'), (b"ratelimit", b'"burst";r=9;t=60'))


def chain(
    decision: Decision = Decision(Effect.ALLOW, ("r",), "ok"),
    rate: RateDecision = RateDecision(True, headers=RATE_HEADERS),
    principal: Principal | None = ALICE,
) -> tuple[SecurityMiddleware, Recorder, AuditCapture, EchoApp]:
    log, audit, echo = Recorder(), AuditCapture(), EchoApp()
    pipeline = Pipeline(
        authenticator=FixedAuth(log, principal),
        inspector=FlagInspector(log),
        policy=FixedPolicy(log, decision),
        rate_limiter=FixedLimiter(log, rate),
        audit=audit,
    )
    return SecurityMiddleware(echo, pipeline=pipeline), log, audit, echo


async def test_stages_run_in_order_and_headers_reach_the_response() -> None:
    app, log, audit, echo = chain()
    sent = await call(app, http_scope("/x"))
    assert log.order == ["authenticate", "inspect", "authorize", "throttle"]
    assert sent.status == 200
    assert sent.header("ratelimit") == '"burst";r=9;t=60'
    assert sent.header("ratelimit-policy") == '"burst";q=10;w=60'
    event = audit.named("authz_allow")[0]
    assert (event.subject, event.rule_ids, event.status, event.outcome) == (
        "alice",
        ("r",),
        200,
        "success",
    )


@pytest.mark.parametrize(
    ("decision", "principal", "status", "event", "challenge"),
    [
        pytest.param(
            Decision(Effect.DENY, ("d",), "no"), ALICE, 403, "authz_fail", None, id="deny-known"
        ),
        pytest.param(
            Decision(Effect.DENY, ("d",), "no"),
            None,
            401,
            "authn_token_missing",
            'Bearer realm="secmw"',
            id="deny-anonymous",
        ),
        pytest.param(
            Decision(Effect.DENY, ("d",), "no", scopes=("files:write",)),
            ALICE,
            403,
            "authz_fail",
            'Bearer realm="secmw", error="insufficient_scope", error_description="The access token lacks a required scope.", scope="files:write"',
            id="insufficient-scope",
        ),
        pytest.param(
            Decision(Effect.STEP_UP, ("s",), "mfa", acr_values=("urn:mfa",), max_age=60),
            ALICE,
            401,
            "authz_step_up_required",
            'Bearer realm="secmw", error="insufficient_user_authentication", error_description="A stronger or more recent authentication is required.", acr_values="urn:mfa", max_age=60',
            id="step-up",
        ),
        pytest.param(
            Decision(Effect.STEP_UP, ("s",), "mfa", acr_values=("urn:mfa",), max_age=60),
            None,
            401,
            "authn_token_missing",
            'Bearer realm="secmw"',  # no credential sent: no error code (RFC 6750 3.1)
            id="step-up-anonymous",
        ),
    ],
)
async def test_refusals(
    decision: Decision, principal: Principal | None, status: int, event: str, challenge: str | None
) -> None:
    app, log, audit, echo = chain(decision=decision, principal=principal)
    sent = await call(app, http_scope("/x"))
    assert sent.status == status
    assert sent.header("www-authenticate") == challenge
    assert "throttle" not in log.order
    assert echo.scopes == []
    recorded = audit.named(event)[0]
    assert recorded.rule_ids == decision.rule_ids
    assert recorded.reason == decision.reason


async def test_rate_limited_request_gets_429_retry_after_and_rate_headers() -> None:
    app, log, audit, echo = chain(
        rate=RateDecision(
            False,
            retry_after=12.5,
            headers=RATE_HEADERS,
            policies=("burst",),
            reason="burst exhausted",
        )
    )
    sent = await call(app, http_scope("/x"))
    assert sent.status == 429
    assert sent.header("retry-after") == "13"
    assert sent.header("ratelimit") == '"burst";r=9;t=60'
    assert sent.json()["violated-policies"] == ["burst"]
    assert audit.named("excess_rate_limit_exceeded")[0].reason == "burst exhausted"
    assert echo.scopes == []


async def test_component_error_is_503_with_retry_after() -> None:
    class Down:
        async def hit(self, ctx: Any) -> RateDecision:
            raise ComponentError("redis unreachable at 10.0.0.5")

    audit = AuditCapture()
    app = SecurityMiddleware(
        EchoApp(), {"auth": {"allow_anonymous": True}}, rate_limiter=Down(), audit=audit
    )
    sent = await call(app, http_scope("/x"))
    assert sent.status == 503
    assert sent.header("retry-after") == "1"
    event = audit.named("sys_monitor_disabled")[0]
    assert event.reason == "throttle stage unavailable: ComponentError"
    assert "10.0.0.5" not in event.to_json()


async def test_stage_may_raise_its_own_denial() -> None:
    class Strict:
        async def authenticate(self, ctx: Any) -> Principal:
            raise StepUpRequired(acr_values=["gold"])

    app = SecurityMiddleware(EchoApp(), {}, authenticator=Strict())
    sent = await call(app, http_scope("/x"))
    assert sent.status == 401
    assert 'acr_values="gold"' in (sent.header("www-authenticate") or "")
    assert RateLimited(-5).retry_after == 0.0


async def test_startup_and_shutdown_are_recorded_once() -> None:
    audit = AuditCapture()
    pipeline = Pipeline(audit=audit)
    await pipeline.startup()
    await pipeline.startup()
    assert audit.names() == ["sys_startup"]
    assert audit.last.details["stages"] == ["authorize"]
    await pipeline.aclose()
    assert audit.names() == ["sys_startup", "sys_shutdown"]
    assert not pipeline.started


async def test_failing_audit_sink_never_breaks_the_response(
    capsys: pytest.CaptureFixture[str],
) -> None:
    class Broken:
        async def emit(self, event: Any) -> None:
            raise OSError("disk full")

        async def aclose(self) -> None:
            raise OSError("disk full")

    pipeline = Pipeline(audit=Broken(), policy=FixedPolicy(Recorder(), Decision(Effect.ALLOW)))
    pipeline.policy.evaluate = lambda ctx: Decision(Effect.ALLOW)  # type: ignore[method-assign]
    sent = await call(SecurityMiddleware(EchoApp(), pipeline=pipeline), http_scope("/x"))
    assert sent.status == 200
    await pipeline.aclose()
    assert "audit sink failed with OSError" in capsys.readouterr().err


async def test_stages_are_started_and_closed_with_the_pipeline(
    capsys: pytest.CaptureFixture[str],
) -> None:
    calls: list[str] = []

    class Lifecycle:
        def __init__(self, name: str, fail: bool = False) -> None:
            self.name, self.fail = name, fail

        async def authenticate(self, ctx: Any) -> None:
            return None

        async def startup(self) -> None:
            calls.append(f"start {self.name}")
            if self.fail:
                raise OSError("issuer unreachable")

        async def aclose(self) -> None:
            calls.append(f"close {self.name}")

    audit = AuditCapture()
    pipeline = Pipeline(authenticator=Lifecycle("auth", fail=True), audit=audit)
    await pipeline.startup()
    assert calls == ["start auth"]
    assert "starting Lifecycle failed with OSError" in capsys.readouterr().err
    await pipeline.aclose()
    assert calls == ["start auth", "close auth"]
    assert audit.closed


async def test_jwks_keys_are_fetched_at_startup() -> None:
    from secmw.auth import JWTAuthenticator
    from secmw.auth.jwks import JWKSClient
    from secmw.auth.keys import SUPPORTED_ALGORITHMS
    from secmw.testing import InMemoryJWKS, TokenIssuer

    issuer = TokenIssuer(kid="k1")
    jwks = InMemoryJWKS(issuer)
    source = JWKSClient(
        "https://issuer.example.test/jwks", allowed=SUPPORTED_ALGORITHMS, fetcher=jwks.fetcher()
    )
    pipeline = Pipeline(
        authenticator=JWTAuthenticator(
            (), issuer=issuer.issuer, audience=issuer.audience, jwks=source
        )
    )
    assert jwks.requests == 0
    await pipeline.startup()
    assert jwks.requests == 1 and source.loaded


class _WrongPrincipal:
    async def authenticate(self, ctx: Any) -> Any:
        return {"sub": "alice"}  # the claims, not a Principal


class _WrongDecision:
    needs_body = False

    def evaluate(self, ctx: Any) -> Any:
        return Effect.ALLOW  # an Effect, not a Decision


class _WrongRate:
    async def hit(self, ctx: Any) -> Any:
        return True


class _WrongFindings:
    needs_body = False

    def inspect(self, ctx: Any) -> Any:
        return ["prompt injection"]


@pytest.mark.parametrize(
    ("components", "stage"),
    [
        pytest.param({"authenticator": _WrongPrincipal()}, "authenticate", id="authenticate"),
        pytest.param({"policy": _WrongDecision()}, "authorize", id="evaluate"),
        pytest.param({"rate_limiter": _WrongRate()}, "throttle", id="hit"),
        pytest.param({"inspector": _WrongFindings()}, "inspect", id="inspect"),
    ],
)
async def test_a_custom_component_answering_the_wrong_type_fails_its_stage_audited(
    components: dict[str, Any], stage: str, capsys: pytest.CaptureFixture[str]
) -> None:
    audit = AuditCapture()
    echo = EchoApp()
    config = {"auth": {"allow_anonymous": True}}
    app = SecurityMiddleware(echo, config, audit=audit, **components)
    sent = await call(app, http_scope("/x"))
    assert sent.status == 503 and echo.scopes == []
    event = audit.named("sys_error")[0]
    assert event.reason == f"{stage} stage failed: TypeError"
    assert "request denied" in capsys.readouterr().err


async def test_an_infinite_retry_after_still_answers_429() -> None:
    class Forever:
        async def hit(self, ctx: Any) -> RateDecision:
            return RateDecision(False, retry_after=float("inf"), policies=("p",))

    audit = AuditCapture()
    app = SecurityMiddleware(
        EchoApp(), {"auth": {"allow_anonymous": True}}, rate_limiter=Forever(), audit=audit
    )
    sent = await call(app, http_scope("/x"))
    assert sent.status == 429 and sent.header("retry-after") == "31536000"
    assert audit.named("excess_rate_limit_exceeded")


async def test_a_hung_audit_sink_does_not_pin_the_request(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import anyio

    from secmw import pipeline as pipeline_module

    monkeypatch.setattr(pipeline_module, "SINK_DEADLINE", 0.2)

    class Hung:
        async def emit(self, event: Any) -> None:
            await anyio.sleep(60)

        async def aclose(self) -> None:
            await anyio.sleep(60)

    pipeline = Pipeline(audit=Hung(), policy=FixedPolicy(Recorder(), Decision(Effect.ALLOW)))
    pipeline.policy.evaluate = lambda ctx: Decision(Effect.ALLOW)  # type: ignore[method-assign]
    with anyio.fail_after(5):
        sent = await call(SecurityMiddleware(EchoApp(), pipeline=pipeline), http_scope("/x"))
        await pipeline.aclose()
    assert sent.status == 200
    err = capsys.readouterr().err
    assert "audit sink did not answer within 0.2 s" in err
    assert "closing the audit sink took over 0.2 s" in err


async def test_an_audit_gate_that_raises_counts_as_unhealthy() -> None:
    class Gate(AuditCapture):
        @property
        def healthy(self) -> bool:
            raise RuntimeError("lost the disk")

    echo = EchoApp()
    app = SecurityMiddleware(echo, {"auth": {"allow_anonymous": True}}, audit=Gate())
    sent = await call(app, http_scope("/x"))
    assert sent.status == 503 and echo.scopes == []


async def test_a_denial_raised_in_a_components_task_group_is_that_denial() -> None:
    import anyio

    from secmw.errors import AuthenticationError

    class Grouped:
        async def authenticate(self, ctx: Any) -> Principal:
            async def check() -> None:
                raise AuthenticationError("The access token is invalid.", reason="bad")

            async with anyio.create_task_group() as group:
                group.start_soon(check)
            return ALICE

    sent = await call(SecurityMiddleware(EchoApp(), {}, authenticator=Grouped()), http_scope("/x"))
    assert sent.status == 401


class _SyncAuth:
    def authenticate(self, ctx: Any) -> Principal:
        return ALICE


class _AsyncPolicy:
    async def evaluate(self, ctx: Any) -> Decision:
        return Decision(Effect.ALLOW)


class _SyncSink:
    def emit(self, event: Any) -> None:
        return None

    async def aclose(self) -> None:
        return None


@pytest.mark.parametrize(
    ("components", "message"),
    [
        pytest.param({"authenticator": FixedAuth}, "not the class", id="a-class"),
        pytest.param({"authenticator": object()}, "has no authenticate()", id="no-method"),
        pytest.param({"authenticator": _SyncAuth()}, "must be async def", id="sync-auth"),
        pytest.param({"policy": _AsyncPolicy()}, "must not be async def", id="async-policy"),
        pytest.param({"audit": _SyncSink()}, "emit must be async def", id="sync-emit"),
    ],
)
def test_an_unusable_component_is_refused_when_the_pipeline_is_built(
    components: dict[str, Any], message: str
) -> None:
    with pytest.raises(TypeError, match=message):
        Pipeline(**components)


def test_wrapped_methods_are_judged_by_what_is_called() -> None:
    import functools

    def to_async(method: Any) -> Any:
        @functools.wraps(method)
        async def wrapper(self: Any, ctx: Any) -> Any:
            return method(self, ctx)

        return wrapper

    def to_sync(method: Any) -> Any:
        @functools.wraps(method)
        def wrapper(self: Any, ctx: Any) -> Any:
            return []

        return wrapper

    class WrappedAuth:
        @to_async
        def authenticate(self, ctx: Any) -> Principal:
            return ALICE

    class WrappedInspector:
        @to_sync
        async def inspect(self, ctx: Any) -> list[Finding]:
            return []

    class NoClose:
        async def emit(self, event: Any) -> None:
            return None

    Pipeline(authenticator=WrappedAuth(), inspector=WrappedInspector(), audit=NoClose())


async def test_an_audit_sink_without_aclose_closes_quietly(
    capsys: pytest.CaptureFixture[str],
) -> None:
    class NoClose:
        async def emit(self, event: Any) -> None:
            return None

    pipeline = Pipeline(audit=NoClose())
    await pipeline.startup()
    await pipeline.aclose()
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("shape", ["subclass", "wrapper"])
async def test_a_sink_built_on_a_bounded_one_still_gets_the_deadline(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], shape: str
) -> None:
    import anyio

    from secmw import pipeline as pipeline_module
    from secmw.audit import MemoryAuditSink

    monkeypatch.setattr(pipeline_module, "SINK_DEADLINE", 0.2)

    class Slow(MemoryAuditSink):
        async def emit(self, event: Any) -> None:
            await anyio.sleep(60)

    class Wrapper:
        def __init__(self) -> None:
            self.inner = MemoryAuditSink()

        async def emit(self, event: Any) -> None:
            await anyio.sleep(60)

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

    sink = Slow() if shape == "subclass" else Wrapper()
    pipeline = Pipeline(audit=sink, policy=FixedPolicy(Recorder(), Decision(Effect.ALLOW)))
    pipeline.policy.evaluate = lambda ctx: Decision(Effect.ALLOW)  # type: ignore[method-assign]
    with anyio.fail_after(5):
        sent = await call(SecurityMiddleware(EchoApp(), pipeline=pipeline), http_scope("/x"))
    assert sent.status == 200
    assert "did not answer within 0.2 s" in capsys.readouterr().err


def test_the_file_sinks_block_wait_is_bounded_in_code_too(tmp_path: Any) -> None:
    from secmw.audit.file import JSONLFileSink

    with pytest.raises(ValueError, match="block_timeout"):
        JSONLFileSink(str(tmp_path / "a.jsonl"), on_failure="block", block_timeout=45.0)


@pytest.mark.parametrize("shape", ["a-class", "no-emit"])
def test_an_unusable_sink_is_refused_under_anomaly_detection_too(shape: str) -> None:
    from secmw.audit import MemoryAuditSink
    from secmw.config import build_pipeline, load_config

    sink: Any = MemoryAuditSink if shape == "a-class" else object()
    config = load_config({"auth": {"allow_anonymous": True}, "anomaly": {"enabled": True}})
    with pytest.raises(TypeError, match="audit"):
        build_pipeline(config, audit=sink)
