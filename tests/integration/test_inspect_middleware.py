"""Prompt-injection inspection through SecurityMiddleware: responses and audit events."""

from __future__ import annotations

import gzip
import json
import tomllib
from pathlib import Path
from typing import Any

import pytest

from secmw import SecurityMiddleware
from secmw.testing import AuditCapture
from tests.inspect_support import ATTACK, BENIGN, prompt_get, tool_call
from tests.ratelimit_support import HeaderAuthenticator
from tests.support import EchoApp, Receiver, call, http_scope

pytestmark = pytest.mark.anyio


def app_with(inspect: dict[str, Any]) -> tuple[SecurityMiddleware, EchoApp, AuditCapture]:
    echo = EchoApp()
    audit = AuditCapture()
    config = {"auth": {"allow_anonymous": True}, "inspect": inspect}
    return SecurityMiddleware(echo, config, audit=audit), echo, audit


async def post(app: SecurityMiddleware, body: Any, path: str = "/mcp") -> Any:
    raw = json.dumps(body).encode()
    scope = http_scope(
        path,
        method="POST",
        headers=[("content-type", "application/json"), ("content-length", str(len(raw)))],
    )
    return await call(app, scope, Receiver.body(raw))


async def test_tools_call_with_injection_is_403_problem_and_audited() -> None:
    app, echo, audit = app_with({})
    sent = await post(app, tool_call({"query": ATTACK}, name="web_search"))
    assert sent.status == 403
    # A refused JSON-RPC request gets a JSON-RPC error carrying the problem document.
    assert sent.header("content-type") == "application/json"
    error = sent.json()["error"]
    assert error["code"] == -32003
    problem = error["data"]
    assert problem["status"] == 403
    assert problem["title"] == "Forbidden"
    assert problem["detail"] == "The request was refused by content inspection."
    assert "Ignore" not in sent.body.decode()
    assert echo.scopes == []
    (event,) = audit.named("malicious_prompt_injection")
    assert event.status == 403
    assert event.outcome == "failure"
    assert event.rpc_method == "tools/call"
    assert event.tool == "web_search"
    assert event.reason is not None
    assert event.reason.startswith("prompt injection score 0.97 >= 0.70")
    assert "override_phrase" in event.reason
    details = event.details["prompt_injection"]
    assert details["signals"] == ["override_phrase", "prompt_leak"]
    assert "Ignore" not in event.to_json()


async def test_benign_tools_call_reaches_the_app_unchanged() -> None:
    app, echo, audit = app_with({})
    body = tool_call({"query": BENIGN})
    sent = await post(app, body)
    assert sent.status == 200
    assert json.loads(sent.json()["body"]) == body
    assert audit.named("authz_allow")[0].details == {}
    ctx = echo.scopes[0]["state"]["secmw"]
    assert ctx.findings == []


async def test_prompts_get_and_llm_bodies_are_inspected() -> None:
    app, _, audit = app_with({})
    assert (await post(app, prompt_get({"topic": ATTACK}))).status == 403
    chat = {"model": "m", "messages": [{"role": "user", "content": ATTACK}]}
    assert (await post(app, chat, path="/v1/chat/completions")).status == 403
    assert len(audit.named("malicious_prompt_injection")) == 2


async def test_flag_mode_lets_the_request_through_with_findings_for_the_app() -> None:
    app, echo, audit = app_with({"action": "flag"})
    sent = await post(app, tool_call({"query": ATTACK}))
    assert sent.status == 200
    ctx = echo.scopes[0]["state"]["secmw"]
    summary = [f for f in ctx.findings if f.kind == "prompt_injection"]
    assert summary[0].score >= 0.9
    event = audit.named("authz_allow")[0]
    assert event.details == {}


async def test_the_documented_policy_rule_refuses_what_flag_mode_found() -> None:
    # docs/policy.md's "prompt-injection" rule, as printed there, with action = "flag".
    text = (Path(__file__).parents[2] / "docs" / "policy.md").read_text()
    block = next(b for b in text.split("```toml")[1:] if 'id = "prompt-injection"' in b)
    rules = tomllib.loads(block.split("```")[0])["policy"]["rules"]
    echo, audit = EchoApp(), AuditCapture()
    users = {"id": "users", "effect": "allow", "when": {"authenticated": True}}
    config = {"inspect": {"action": "flag"}, "policy": {"rules": [*rules, users]}}
    app = SecurityMiddleware(echo, config, authenticator=HeaderAuthenticator(), audit=audit)

    async def send(body: Any) -> Any:
        raw = json.dumps(body).encode()
        headers = [("content-type", "application/json"), ("x-user", "alice")]
        return await call(
            app, http_scope("/mcp", method="POST", headers=headers), Receiver.body(raw)
        )

    assert (await send(tool_call({"query": BENIGN}))).status == 200
    assert (await send(tool_call({"query": ATTACK}))).status == 403
    assert len(echo.scopes) == 1
    assert audit.named("authz_fail")[0].reason == "rule prompt-injection (deny)"


async def test_audit_mode_lets_the_request_through_and_records_the_signals() -> None:
    app, _, audit = app_with({"action": "audit"})
    sent = await post(app, tool_call({"query": ATTACK}))
    assert sent.status == 200
    event = audit.named("authz_allow")[0]
    details = event.details["prompt_injection"]
    assert details["action"] == "audit"
    assert details["signals"] == ["override_phrase", "prompt_leak"]
    line = json.loads(event.to_json())
    assert line["details"]["prompt_injection"]["rules"][0] == "en.ignore_previous @ arguments.query"


async def test_body_past_the_scan_budget_is_refused_when_failing_closed() -> None:
    app, echo, audit = app_with({"max_chars": 1024})
    sent = await post(app, tool_call({"query": "a" * 4096}))
    assert sent.status == 413
    assert echo.scopes == []
    assert audit.named("input_validation_fail")[0].reason == (
        "prompt-injection inspection incomplete: scan budget exhausted"
    )


async def test_startup_event_names_the_inspect_stage_and_fail_open() -> None:
    app, _, audit = app_with({"fail_closed": False})
    await post(app, tool_call({"query": BENIGN}))
    (startup,) = audit.named("sys_startup")
    assert "inspect" in startup.details["stages"]
    assert startup.details["fail_open"] == ["auth.allow_anonymous", "inspect.fail_closed"]


async def test_websocket_handshake_is_not_blocked_by_the_inspector() -> None:
    from tests.support import Sender, ws_scope

    async def socket(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 1000})

    audit = AuditCapture()
    app = SecurityMiddleware(
        socket, {"auth": {"allow_anonymous": True}, "inspect": {}}, audit=audit
    )
    sent = Sender()
    await app(ws_scope(), Receiver([{"type": "websocket.connect"}]), sent)
    assert [m["type"] for m in sent.messages] == ["websocket.accept", "websocket.close"]
    assert audit.named("authz_allow")[0].status == 101


@pytest.mark.parametrize(
    ("coding", "content_type", "name"),
    [
        ("gzip", "application/json", "content-encoding"),
        ("gzip", None, "content-encoding"),
        ("identity, br", None, "content-encoding"),
        ("GZIP", "text/plain", "content-encoding"),
        # Django and WSGI bridges read Content_Encoding as Content-Encoding.
        ("gzip", "text/plain", "content_encoding"),
        ("gzip", None, "Content_Encoding"),
    ],
)
async def test_a_compressed_body_the_inspector_cannot_read_is_415(
    coding: str, content_type: str | None, name: str
) -> None:
    app, echo, audit = app_with({})
    raw = gzip.compress(json.dumps(tool_call({"query": ATTACK})).encode())
    headers = [(name, coding), ("content-length", str(len(raw)))]
    if content_type is not None:
        headers.append(("content-type", content_type))
    sent = await call(app, http_scope("/mcp", method="POST", headers=headers), Receiver.body(raw))
    assert sent.status == 415
    assert sent.header("accept-encoding") == "identity"
    assert echo.scopes == []
    (event,) = audit.named("input_validation_fail")
    assert event.status == 415
    assert event.reason is not None and "content-encoding" in event.reason


async def test_an_identity_coding_is_read_as_usual() -> None:
    app, echo, _ = app_with({})
    raw = json.dumps(tool_call({"query": BENIGN})).encode()
    headers = [("content-encoding", "identity"), ("content-type", "application/json")]
    sent = await call(app, http_scope("/mcp", method="POST", headers=headers), Receiver.body(raw))
    assert sent.status == 200
    assert len(echo.scopes) == 1
