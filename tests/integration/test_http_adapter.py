"""SecurityMiddleware on http scopes, driven message by message."""

from __future__ import annotations

import json
import tracemalloc
from typing import Any

import pytest

from secmw import Pipeline, SecurityMiddleware
from secmw.audit import MemoryAuditSink
from secmw.context import ContextSettings
from secmw.errors import AccessDenied
from secmw.testing import AuditCapture, TokenIssuer
from tests.support import (
    DenyPrefix,
    EchoApp,
    MarkerRedactor,
    Receiver,
    Sender,
    call,
    chunked_app,
    http_scope,
    ws_scope,
)

pytestmark = pytest.mark.anyio

OPEN = {"auth": {"allow_anonymous": True}, "audit": {"sink": "none"}}


def open_app(app: Any, **components: Any) -> SecurityMiddleware:
    return SecurityMiddleware(app, OPEN, **components)


# -- admission and the default-closed stance ---------------------------------


async def test_default_config_refuses_anonymous_requests_with_a_bare_challenge() -> None:
    echo = EchoApp()
    audit = AuditCapture()
    app = SecurityMiddleware(echo, audit=audit)
    sent = await call(app, http_scope("/anything"))
    assert sent.status == 401
    assert sent.header("www-authenticate") == 'Bearer realm="secmw"'
    assert sent.header("content-type") == "application/problem+json"
    problem = sent.json()
    assert problem["status"] == 401
    assert problem["title"] == "Unauthorized"
    assert echo.scopes == []
    assert audit.named("authn_token_missing")[0].status == 401


async def test_public_path_passes_and_private_one_does_not() -> None:
    echo = EchoApp()
    app = SecurityMiddleware(
        echo, {"auth": {"public_paths": ["/health", "/docs/**"]}, "audit": {"sink": "none"}}
    )
    assert (await call(app, http_scope("/health"))).status == 200
    assert (await call(app, http_scope("/docs"))).status == 200
    assert (await call(app, http_scope("/docs/a/b"))).status == 200
    assert (await call(app, http_scope("/docsx"))).status == 401
    assert (await call(app, http_scope("/health/x"))).status == 401
    assert (await call(app, http_scope("/docs/../admin"))).status == 401


async def test_valid_token_reaches_app_with_starlette_style_user_and_auth() -> None:
    issuer = TokenIssuer()
    echo = EchoApp()
    app = SecurityMiddleware(
        echo, {"auth": {"jwt": issuer.jwt_config()}, "audit": {"sink": "none"}}
    )
    token = issuer.mint("alice", scopes=["read", "write"], roles=["admin"], tenant="t1")
    sent = await call(app, http_scope("/x", headers=[("authorization", f"Bearer {token}")]))
    assert sent.status == 200
    scope = echo.scopes[0]
    assert scope["user"].is_authenticated
    assert scope["user"].display_name == "alice"
    assert scope["auth"].scopes == ("read", "write")
    assert scope["state"]["secmw"].principal.tenant == "t1"


async def test_invalid_token_is_401_with_invalid_token_challenge_and_never_reaches_app() -> None:
    issuer, other = TokenIssuer(), TokenIssuer()
    echo = EchoApp()
    app = SecurityMiddleware(
        echo, {"auth": {"jwt": issuer.jwt_config()}, "audit": {"sink": "none"}}
    )
    token = other.mint("mallory", headers={"kid": issuer.kid})
    sent = await call(app, http_scope("/x", headers=[("authorization", f"Bearer {token}")]))
    assert sent.status == 401
    challenge = sent.header("www-authenticate") or ""
    assert challenge.startswith('Bearer realm="secmw", error="invalid_token"')
    assert echo.scopes == []


async def test_invalid_token_on_public_path_is_still_refused() -> None:
    issuer = TokenIssuer()
    app = SecurityMiddleware(
        EchoApp(),
        {
            "auth": {"jwt": issuer.jwt_config(), "public_paths": ["/health"]},
            "audit": {"sink": "none"},
        },
    )
    sent = await call(app, http_scope("/health", headers=[("authorization", "Bearer a.b.c")]))
    assert sent.status == 401


async def test_resource_metadata_appears_in_every_challenge() -> None:
    url = "https://api.example.test/.well-known/oauth-protected-resource"
    app = SecurityMiddleware(
        EchoApp(), {"auth": {"resource_metadata": url, "realm": "api"}, "audit": {"sink": "none"}}
    )
    sent = await call(app, http_scope("/x"))
    assert sent.header("www-authenticate") == f'Bearer realm="api", resource_metadata="{url}"'


async def test_anonymous_fail_open_is_audited_at_startup() -> None:
    audit = AuditCapture()
    app = SecurityMiddleware(EchoApp(), {"auth": {"allow_anonymous": True}}, audit=audit)
    assert (await call(app, http_scope("/x"))).status == 200
    startup = audit.named("sys_startup")[0]
    assert startup.severity == "warning"
    assert startup.details["fail_open"] == ["auth.allow_anonymous"]
    assert audit.names() == ["sys_startup", "authz_allow"]


async def test_failing_stage_fails_closed_with_503_and_no_internals() -> None:
    class Broken:
        async def authenticate(self, ctx: Any) -> None:
            raise RuntimeError("db password is hunter2")

    audit = AuditCapture()
    echo = EchoApp()
    app = SecurityMiddleware(echo, OPEN, authenticator=Broken(), audit=audit)
    sent = await call(app, http_scope("/x"))
    assert sent.status == 503
    assert b"hunter2" not in sent.body
    assert echo.scopes == []
    event = audit.named("sys_error")[0]
    assert "hunter2" not in event.to_json()
    assert event.reason == "authenticate stage failed: RuntimeError"


# -- request bodies ------------------------------------------------------------


async def test_streamed_request_body_is_passed_through_unbuffered() -> None:
    echo = EchoApp()
    receive = Receiver.body(b"one,", b"two,", b"three")
    sent = await call(open_app(echo), http_scope("/up", method="POST"), receive)
    assert sent.json()["body"] == "one,two,three"
    # Three separate messages: nothing was buffered in between.
    assert [m.get("body") for m in echo.received] == [b"one,", b"two,", b"three"]


async def test_buffered_body_is_replayed_byte_identical_then_disconnect_reaches_app() -> None:
    body = b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{"a":"\\u00e9"}}}'
    policy = DenyPrefix("/never", needs_body=True)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        first = await receive()
        second = await receive()
        payload = json.dumps(
            {"first": first["body"].decode(), "more": first["more_body"], "second": second["type"]}
        )
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": payload.encode()})

    receive = Receiver.body(body[:10], body[10:40], body[40:])
    sent = await call(
        SecurityMiddleware(app, OPEN, policy=policy),
        http_scope("/mcp", method="POST", headers=[("content-type", "application/json")]),
        receive,
    )
    result = sent.json()
    assert result == {"first": body.decode(), "more": False, "second": "http.disconnect"}
    ctx = policy.seen[0]
    assert ctx.rpc[0].tool == "x"
    assert ctx.rpc[0].arguments == {"a": "\u00e9"}


async def test_declared_oversized_body_is_refused_without_reading_it() -> None:
    echo = EchoApp()
    receive = Receiver.body(b"x" * 10)
    app = SecurityMiddleware(echo, {**OPEN, "max_body_bytes": 5})
    sent = await call(
        app, http_scope("/up", method="POST", headers=[("content-length", "10")]), receive
    )
    assert sent.status == 413
    assert receive.calls == 0
    assert echo.scopes == []


async def test_buffered_body_stops_reading_at_the_limit() -> None:
    receive = Receiver.body(*([b"x" * 4] * 100))
    app = SecurityMiddleware(
        EchoApp(), {**OPEN, "max_body_bytes": 10}, policy=DenyPrefix(needs_body=True)
    )
    sent = await call(app, http_scope("/up", method="POST"), receive)
    assert sent.status == 413
    assert receive.calls == 3  # 12 bytes > 10: no further chunk is pulled


async def test_streamed_body_over_the_limit_gets_413_and_app_sees_disconnect() -> None:
    echo = EchoApp()
    receive = Receiver.body(*([b"y" * 4] * 100))
    audit = AuditCapture()
    app = SecurityMiddleware(echo, {**OPEN, "max_body_bytes": 10}, audit=audit)
    sent = await call(app, http_scope("/up", method="POST"), receive)
    assert sent.status == 413
    assert echo.saw_disconnect
    assert receive.calls == 3
    assert [m["type"] for m in sent.messages] == ["http.response.start", "http.response.body"]
    assert audit.named("input_validation_fail")[0].status == 413


async def test_body_exactly_at_the_limit_passes() -> None:
    app = SecurityMiddleware(
        EchoApp(), {**OPEN, "max_body_bytes": 8}, policy=DenyPrefix(needs_body=True)
    )
    sent = await call(app, http_scope("/up", method="POST"), Receiver.body(b"1234", b"5678"))
    assert sent.status == 200
    assert sent.json()["body"] == "12345678"


@pytest.mark.parametrize(
    "values",
    [
        pytest.param(["abc"], id="not-a-number"),
        pytest.param(["5", "6"], id="conflicting"),
        pytest.param(["-1"], id="negative"),
    ],
)
@pytest.mark.parametrize("max_body_bytes", [1024, None])
async def test_malformed_content_length_is_400(
    values: list[str], max_body_bytes: int | None
) -> None:
    headers = [("content-length", v) for v in values]
    config = {"auth": {"allow_anonymous": True}, "max_body_bytes": max_body_bytes}
    app = SecurityMiddleware(EchoApp(), config)
    sent = await call(app, http_scope("/up", method="POST", headers=headers))
    assert sent.status == 400


@pytest.mark.parametrize(
    ("value", "status"),
    [
        pytest.param("9" * 5000, 413, id="five-thousand-digits"),
        pytest.param("0" * 5000 + "1", 200, id="leading-zeros"),
    ],
)
async def test_a_content_length_beyond_pythons_digit_limit_is_judged_not_crashed(
    value: str, status: int
) -> None:
    receive = Receiver([{"type": "http.request", "body": b"x", "more_body": False}])
    scope = http_scope("/up", method="POST", headers=[("content-length", value)])
    sent = await call(open_app(EchoApp()), scope, receive)
    assert sent.status == status


async def test_client_disconnect_while_buffering_never_calls_app() -> None:
    echo = EchoApp()
    audit = AuditCapture()
    receive = Receiver(
        [{"type": "http.request", "body": b"{", "more_body": True}, {"type": "http.disconnect"}]
    )
    app = SecurityMiddleware(echo, OPEN, policy=DenyPrefix(needs_body=True), audit=audit)
    sent = await call(app, http_scope("/up", method="POST"), receive)
    assert sent.messages == []
    assert echo.scopes == []
    assert audit.named("request_aborted")


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        pytest.param(b'{"a": 1, "a": 2}', "application/json", id="duplicate-key"),
        pytest.param(b'{"a": NaN}', "application/json", id="nan"),
        pytest.param(b"{not json", "application/json", id="malformed"),
        pytest.param(b"\xff\xfe{}", "application/json", id="not-utf8"),
        pytest.param(b"[" * 100_000, "application/json", id="deep-nesting"),
        pytest.param(
            b'{"jsonrpc":"2.0","method":7}', "application/json", id="rpc-method-not-string"
        ),
        pytest.param(
            b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":1}}',
            "text/plain",
            id="rpc-bad-tool-undeclared",
        ),
        pytest.param(
            b'{"jsonrpc":"2.0","method":"tools/call","params":{"name":"a"},"method":"x"}',
            "text/plain",
            id="rpc-duplicate-undeclared",
        ),
        pytest.param(b"[]", "application/json", id="empty-batch-is-not-rpc-but-ok"),
    ],
)
async def test_ambiguous_json_bodies_are_refused(body: bytes, content_type: str) -> None:
    echo = EchoApp()
    app = SecurityMiddleware(echo, OPEN, policy=DenyPrefix(needs_body=True))
    sent = await call(
        app,
        http_scope("/mcp", method="POST", headers=[("content-type", content_type)]),
        Receiver.body(body),
    )
    if body == b"[]":
        assert sent.status == 200
        return
    assert sent.status == 400
    assert echo.scopes == []


# -- responses -----------------------------------------------------------------


async def test_streamed_response_passes_through_chunk_by_chunk() -> None:
    chunks = [b"a" * 10, b"b" * 10, b"c" * 10]
    sent = await call(open_app(chunked_app(chunks)), http_scope("/s"))
    assert sent.body_chunks == chunks


async def test_redactor_fixes_content_length_of_a_whole_body() -> None:
    body = b'{"token": "s3cr3t-value", "again": "s3cr3t-value"}'
    app = open_app(
        chunked_app([body[:20], body[20:]], b"application/json", length=True),
        redactor=MarkerRedactor(),
    )
    sent = await call(app, http_scope("/r"))
    assert sent.body == b'{"token": "[REDACTED]", "again": "[REDACTED]"}'
    assert sent.header("content-length") == str(len(sent.body))
    assert sent.headers("content-length") == [str(len(sent.body))]


async def test_redactor_streams_without_content_length_and_catches_split_secrets() -> None:
    pieces = [b"data: s3c", b"r3t-val", b"ue\n\n", b"data: ok\n\n"]
    redactor = MarkerRedactor()
    app = open_app(chunked_app(pieces, b"text/event-stream"), redactor=redactor)
    sent = await call(app, http_scope("/sse"))
    assert sent.header("content-length") is None
    assert sent.body == b"data: [REDACTED]\n\ndata: ok\n\n"
    assert all(b"s3cr3t" not in chunk for chunk in sent.body_chunks)
    assert redactor.media_types == ["text/event-stream"]


async def test_redactor_leaves_binary_bodies_alone() -> None:
    body = b"\x89PNG s3cr3t-value"
    app = open_app(chunked_app([body], b"image/png", length=True), redactor=MarkerRedactor())
    sent = await call(app, http_scope("/img"))
    assert sent.body == body


async def test_compressed_text_response_is_refused_when_redacting() -> None:
    async def gzip_app(scope: Any, receive: Any, send: Any) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-encoding", b"gzip")],
            }
        )
        await send({"type": "http.response.body", "body": b"\x1f\x8b..."})

    audit = AuditCapture()
    sent = await call(open_app(gzip_app, redactor=MarkerRedactor(), audit=audit), http_scope("/z"))
    assert sent.status == 502
    assert b"\x1f\x8b" not in sent.body
    assert audit.named("secret_redaction_fail")


@pytest.mark.parametrize(
    "sent",
    [
        [("accept-encoding", "gzip, br")],
        [("Accept-Encoding", "gzip"), ("accept-encoding", "br")],
        [],
    ],
)
async def test_redactor_asks_the_app_for_identity_encoding(sent: list[tuple[str, str]]) -> None:
    # Also when the client named none: an HTTP client in a proxy would add its default.
    echo = EchoApp()
    app = open_app(echo, redactor=MarkerRedactor())
    await call(app, http_scope("/x", headers=sent))
    codings = [v for k, v in echo.scopes[0]["headers"] if k.lower() == b"accept-encoding"]
    assert codings == [b"identity"]


async def test_app_exception_is_audited_and_propagates() -> None:
    async def crash(scope: Any, receive: Any, send: Any) -> None:
        raise ValueError("boom")

    audit = AuditCapture()
    sender = Sender()
    with pytest.raises(ValueError, match="boom"):
        await open_app(crash, audit=audit)(http_scope("/x"), Receiver.body(b""), sender)
    (failed,) = audit.named("app_error")
    # secmw answers (not the server's bare 500): with the request id, and audited so.
    assert sender.status == 500 and failed.status == 500
    assert sender.header("x-request-id") == failed.request_id
    assert b"boom" not in sender.body


@pytest.mark.parametrize("redacting", [False, True])
async def test_an_app_that_returns_without_answering_gets_our_500(redacting: bool) -> None:
    async def silent(scope: Any, receive: Any, send: Any) -> None:
        await receive()

    async def held(scope: Any, receive: Any, send: Any) -> None:
        # Its start is held for redaction, its body never comes.
        headers = [(b"content-type", b"text/plain"), (b"content-length", b"10")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})

    audit = AuditCapture()
    app = open_app(
        held if redacting else silent, audit=audit, redactor=MarkerRedactor() if redacting else None
    )
    sent = await call(app, http_scope("/x"))
    assert sent.status == 500
    assert sent.header("x-request-id") == audit.last.request_id
    assert (audit.last.name, audit.last.status) == ("app_error", 500)


async def test_a_body_sent_before_its_start_is_the_apps_error_not_an_unscanned_body() -> None:
    async def backwards(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.body", "body": b"key s3cr3t-value", "more_body": True})
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    audit = AuditCapture()
    sent = Sender()
    app = open_app(backwards, audit=audit, redactor=MarkerRedactor())
    with pytest.raises(RuntimeError, match=r"before http\.response\.start"):
        await app(http_scope("/x"), Receiver.body(b""), sent)
    assert sent.status == 500
    assert b"s3cr3t-value" not in b"".join(m.get("body", b"") for m in sent.messages)
    assert (audit.last.name, audit.last.status) == ("app_error", 500)


# -- identity of the request -----------------------------------------------------


@pytest.mark.parametrize(
    ("incoming", "trusted", "kept"),
    [
        pytest.param("abc-123", True, True, id="trusted-valid"),
        pytest.param("abc-123", False, False, id="untrusted"),
        pytest.param("bad id\r\nx: y", True, False, id="injection"),
        pytest.param("x" * 200, True, False, id="too-long"),
    ],
)
async def test_request_id_propagation(incoming: str, trusted: bool, kept: bool) -> None:
    echo = EchoApp()
    audit = AuditCapture()
    config = {**OPEN, "request_id": {"trust_incoming": trusted}}
    app = SecurityMiddleware(echo, config, audit=audit)
    sent = await call(app, http_scope("/x", headers=[("x-request-id", incoming)]))
    request_id = sent.header("x-request-id")
    assert request_id is not None
    assert (request_id == incoming) is kept
    assert sent.json()["request_id"] == request_id
    assert audit.last.request_id == request_id


async def test_request_id_is_on_denials_too() -> None:
    sent = await call(
        SecurityMiddleware(EchoApp(), {"audit": {"sink": "none"}}),
        http_scope("/x", headers=[("x-request-id", "req-9")]),
    )
    assert sent.status == 401
    assert sent.header("x-request-id") == "req-9"
    assert sent.json()["request_id"] == "req-9"


async def test_generated_request_ids_are_unique() -> None:
    app = open_app(EchoApp())
    ids = {(await call(app, http_scope("/x"))).header("x-request-id") for _ in range(50)}
    assert len(ids) == 50


@pytest.mark.parametrize(
    ("hops", "xff", "peer", "proxies", "expected"),
    [
        pytest.param(0, ["1.1.1.1"], "10.0.0.1", [], "10.0.0.1", id="no-trust-ignores-header"),
        pytest.param(1, ["1.1.1.1"], "10.0.0.1", [], "1.1.1.1", id="one-hop"),
        pytest.param(1, ["6.6.6.6, 1.1.1.1"], "10.0.0.1", [], "1.1.1.1", id="one-hop-spoofed-left"),
        pytest.param(2, ["6.6.6.6, 1.1.1.1, 10.0.0.2"], "10.0.0.1", [], "1.1.1.1", id="two-hops"),
        pytest.param(
            2,
            ["6.6.6.6", "1.1.1.1, 10.0.0.2"],
            "10.0.0.1",
            [],
            "1.1.1.1",
            id="two-headers-combined",
        ),
        pytest.param(2, ["1.1.1.1"], "10.0.0.1", [], "10.0.0.1", id="too-few-entries"),
        pytest.param(1, ["not-an-ip"], "10.0.0.1", [], "10.0.0.1", id="garbage"),
        pytest.param(1, [], "10.0.0.1", [], "10.0.0.1", id="missing-header"),
        pytest.param(
            1, ["1.1.1.1"], "10.0.0.1", ["10.0.0.0/8"], "1.1.1.1", id="peer-is-trusted-proxy"
        ),
        pytest.param(
            1, ["1.1.1.1"], "192.0.2.9", ["10.0.0.0/8"], "192.0.2.9", id="peer-not-a-trusted-proxy"
        ),
        pytest.param(1, ["2001:db8::1"], "10.0.0.1", [], "2001:db8::1", id="ipv6"),
        pytest.param(
            1,
            ["1.1.1.1"],
            "::ffff:10.0.0.2",
            ["10.0.0.0/8"],
            "1.1.1.1",
            id="trusted-proxy-on-a-dual-stack-socket",
        ),
    ],
)
async def test_client_address_honours_only_trusted_hops(
    hops: int, xff: list[str], peer: str, proxies: list[str], expected: str
) -> None:
    audit = AuditCapture()
    config = {**OPEN, "proxy": {"trusted_hops": hops, "trusted_proxies": proxies}}
    app = SecurityMiddleware(EchoApp(), config, audit=audit)
    headers = [("x-forwarded-for", value) for value in xff]
    await call(app, http_scope("/x", headers=headers, client=(peer, 1234)))
    assert audit.last.client == expected


@pytest.mark.parametrize(
    ("header", "values", "expected"),
    [
        pytest.param("forwarded", ['for=1.1.1.1, for="10.0.0.9"'], "10.0.0.9", id="rfc7239"),
        pytest.param(
            "forwarded", ['for="[2001:db8::7]:4711";proto=https'], "2001:db8::7", id="rfc7239-v6"
        ),
        pytest.param("forwarded", ["For=192.0.2.60;by=10.0.0.1"], "192.0.2.60", id="rfc7239-case"),
        pytest.param("forwarded", ["for=unknown"], None, id="rfc7239-unknown-is-nobody"),
        pytest.param("forwarded", ["by=10.0.0.1"], None, id="rfc7239-no-for-is-nobody"),
        pytest.param(
            "forwarded",
            ['host="x;for=6.6.6.8;y=z";for=203.0.113.5'],
            "203.0.113.5",
            id="rfc7239-for-inside-a-quoted-host",
        ),
        pytest.param(
            "forwarded", ['for=203.0.113.5;host="a,b"'], "203.0.113.5", id="rfc7239-quoted-comma"
        ),
        pytest.param(
            "forwarded", ["for=6.6.6.6;for=203.0.113.5"], None, id="rfc7239-two-fors-is-nobody"
        ),
        pytest.param("forwarded", ["for=1.2.3.4;bad"], None, id="rfc7239-off-grammar"),
        pytest.param(
            "forwarded", ['x, for="y, for=203.0.113.5'], "203.0.113.5", id="rfc7239-client-junk"
        ),
        pytest.param(
            "forwarded",
            ["proto=https;host=a.test", "for=203.0.113.5;"],
            "203.0.113.5",
            id="rfc7239-earlier-hop-without-for",
        ),
        pytest.param("forwarded", ["for=203.0.113.5,,"], "203.0.113.5", id="rfc7239-empty"),
        pytest.param(
            "forwarded",
            ['for="[2001:db8::1%x, 6.6.6.6]"'],
            "2001:db8::1",
            id="rfc7239-zone-dropped",
        ),
        pytest.param("x-forwarded-for", ["fe80::1%eth0"], "fe80::1", id="zone-dropped"),
        pytest.param("x-forwarded-for", ["192.0.2.60:51234"], "192.0.2.60", id="v4-with-port"),
        pytest.param("x-forwarded-for", ["[2001:db8::7]:443"], "2001:db8::7", id="v6-with-port"),
        pytest.param("x-forwarded-for", ["192.0.2.60:port"], "10.0.0.2", id="bad-port-ignored"),
    ],
)
async def test_forwarding_entries_with_ports_and_rfc7239_are_read(
    header: str, values: list[str], expected: str | None
) -> None:
    audit = AuditCapture()
    proxy = {"trusted_hops": 1, "trusted_proxies": ["10.0.0.0/8"], "forwarded_header": header}
    app = SecurityMiddleware(EchoApp(), {**OPEN, "proxy": proxy}, audit=audit)
    headers = [(header, value) for value in values]
    await call(app, http_scope("/x", headers=headers, client=("10.0.0.2", 1234)))
    assert audit.last.client == expected


@pytest.mark.parametrize(("trusted", "expected"), [(False, None), (True, "192.0.2.60")])
async def test_a_unix_socket_peer_is_a_trusted_proxy_only_when_configured(
    trusted: bool, expected: str | None
) -> None:
    audit = AuditCapture()
    proxy = {"trusted_hops": 1, "trusted_proxies": ["10.0.0.0/8"], "trust_unix_socket": trusted}
    app = SecurityMiddleware(EchoApp(), {**OPEN, "proxy": proxy}, audit=audit)
    scope = http_scope("/x", headers=[("x-forwarded-for", "192.0.2.60")])
    scope["client"] = None  # uvicorn --uds
    await call(app, scope)
    assert audit.last.client == expected


async def test_hand_built_pipeline_is_accepted() -> None:
    sink = MemoryAuditSink()
    pipeline = Pipeline(
        policy=DenyPrefix(), audit=sink, context=ContextSettings(request_id_header="x-trace")
    )
    app = SecurityMiddleware(EchoApp(), pipeline=pipeline)
    sent = await call(app, http_scope("/admin/x", headers=[("x-trace", "t-1")]))
    assert sent.status == 401  # anonymous and denied: challenge, not 403
    assert sent.header("x-trace") == "t-1"
    with pytest.raises(TypeError):
        SecurityMiddleware(EchoApp(), OPEN, pipeline=pipeline)


async def test_redactions_of_an_abandoned_stream_are_still_audited() -> None:
    """A client that hangs up mid-stream got redacted text; the trail must say so."""
    from secmw.redact import SecretRedactor

    key = "sk_live_" + "a1b2c3d4" * 3

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        await send(
            {"type": "http.response.body", "body": f"data: {key}\n\n".encode(), "more_body": True}
        )
        # The client is gone: the app stops without ending the body.

    audit = AuditCapture()
    sent = await call(open_app(app, redactor=SecretRedactor(), audit=audit), http_scope("/sse"))
    assert key.encode() not in sent.body
    event = audit.named("secret_redacted")[0]
    assert event.details["count"] == 1
    assert key not in event.to_json()


@pytest.mark.parametrize("initial", [None, {"from_lifespan": 1}])
async def test_what_the_app_puts_in_state_reaches_the_middleware_around_secmw(
    initial: dict[str, int] | None,
) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        scope["state"]["user_id"] = 42  # request.state.user_id = 42
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    scope = http_scope("/up")
    if initial is not None:
        scope["state"] = dict(initial)
    sent = await call(open_app(app), scope)
    assert sent.status == 204
    assert scope["state"]["user_id"] == 42
    assert scope["state"]["secmw"].status == 204
    if initial is not None:
        assert scope["state"]["from_lifespan"] == 1


async def test_a_request_cancelled_while_its_body_is_read_is_audited() -> None:
    import anyio

    audit = AuditCapture()
    app = SecurityMiddleware(EchoApp(), {**OPEN, "inspect": {}}, audit=audit)
    started = anyio.Event()

    async def stalled() -> dict[str, Any]:
        started.set()
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    scope = http_scope("/mcp", method="POST", headers=[("content-type", "application/json")])
    async with anyio.create_task_group() as group:
        group.start_soon(app, scope, stalled, Sender())
        await started.wait()
        group.cancel_scope.cancel()
    (event,) = audit.named("request_aborted")
    assert event.reason == "cancelled"


async def test_a_request_leaves_no_reference_cycle_behind() -> None:
    # The context refers to the scope and the scope's state to the context: left
    # as is, every request would leave garbage only the cycle collector frees.
    import gc

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    middleware = open_app(app)
    await call(middleware, http_scope("/warm"))
    gc.collect()
    gc.disable()
    try:
        for n in range(50):
            scope = http_scope(f"/x/{n}")
            await call(middleware, scope)
            assert scope["state"]["secmw"].status == 204  # still there for the caller
            del scope
        assert gc.collect() == 0
    finally:
        gc.enable()


async def test_a_refusal_whose_send_is_cancelled_is_still_audited() -> None:
    import anyio

    audit = AuditCapture()
    app = SecurityMiddleware(EchoApp(), {"audit": {"sink": "none"}}, audit=audit)
    sending = anyio.Event()

    async def stuck_send(message: dict[str, Any]) -> None:
        sending.set()
        await anyio.sleep_forever()

    async with anyio.create_task_group() as group:
        group.start_soon(app, http_scope("/private"), Receiver.body(b""), stuck_send)
        await sending.wait()
        group.cancel_scope.cancel()
    assert [e.status for e in audit.named("authn_token_missing")] == [401]


async def test_a_websocket_handshake_cancelled_during_its_checks_is_audited() -> None:
    import anyio

    from secmw.context import RequestContext

    entered = anyio.Event()

    class SlowAuth:
        credential = "bearer"

        async def authenticate(self, ctx: RequestContext) -> None:
            entered.set()
            await anyio.sleep_forever()

    audit = AuditCapture()
    app = SecurityMiddleware(
        EchoApp(), {"audit": {"sink": "none"}}, authenticator=SlowAuth(), audit=audit
    )

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async with anyio.create_task_group() as group:
        group.start_soon(app, ws_scope("/ws"), receive, Sender())
        await entered.wait()
        group.cancel_scope.cancel()
    assert [e.reason for e in audit.named("request_aborted")] == ["cancelled"]


@pytest.mark.parametrize("extension", [True, False])
async def test_a_refused_handshake_whose_send_fails_is_still_audited(extension: bool) -> None:
    audit = AuditCapture()
    app = SecurityMiddleware(EchoApp(), {"audit": {"sink": "none"}}, audit=audit)
    scope = ws_scope("/ws")
    if extension:
        scope["extensions"] = {"websocket.http.response": {}}

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def gone(message: dict[str, Any]) -> None:
        raise OSError("client gone")

    with pytest.raises(OSError):
        await app(scope, receive, gone)
    assert len(audit.named("authn_token_missing")) == 1


async def test_a_body_sent_in_tiny_pieces_is_buffered_in_about_its_own_size() -> None:
    # max_body_bytes bounds memory: 2-byte pieces must not cost an object each.
    from secmw.asgi import _read_body

    body = b"ab" * 32768
    pieces = [
        {"type": "http.request", "body": body[i : i + 2], "more_body": i + 2 < len(body)}
        for i in range(0, len(body), 2)
    ]
    receive = Receiver(pieces)
    tracemalloc.start()
    try:
        got = await _read_body(receive, 1 << 20)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert got == body
    assert peak < 4 * len(body), peak


async def test_an_app_that_returns_because_the_client_left_is_an_aborted_request() -> None:
    async def long_poll(scope: Any, receive: Any, send: Any) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass  # nobody is listening any more: nothing to answer

    audit = AuditCapture()
    sent = await call(open_app(long_poll, audit=audit), http_scope("/poll"))
    assert sent.messages == []  # no 500 written to a closed connection
    assert (audit.last.name, audit.last.reason) == ("request_aborted", "client disconnected")


class _FailingRedactor:
    """A custom redactor failing where ``where`` says (``redact``, ``stream`` or ``feed``)."""

    def __init__(self, where: str) -> None:
        self.where = where

    def redact(self, text: str, media_type: str | None = None) -> Any:
        if self.where == "redact":
            raise RuntimeError("boom")
        return text, []

    def stream(self, media_type: str | None = None) -> Any:
        if self.where == "stream":
            raise RuntimeError("boom")
        where = self.where

        class Stream:
            def __init__(self) -> None:
                self.findings: list[Any] = []

            def feed(self, text: str) -> str:
                if where == "feed" and "second" in text:
                    raise RuntimeError("boom")
                return text

            def flush(self) -> str:
                return ""

        return Stream()


@pytest.mark.parametrize("where", ["redact", "stream", "feed"])
async def test_a_failing_custom_redactor_lets_nothing_unscanned_out(where: str) -> None:
    secret = b"second part with the secret"

    async def app(scope: Any, receive: Any, send: Any) -> None:
        headers = [(b"content-type", b"text/plain")]
        if where == "redact":
            headers.append((b"content-length", str(5 + len(secret)).encode()))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"first", "more_body": True})
        await send({"type": "http.response.body", "body": secret, "more_body": False})

    audit = AuditCapture()
    sent = await call(
        open_app(app, redactor=_FailingRedactor(where), audit=audit), http_scope("/x")
    )
    assert secret not in sent.body
    assert sent.status == (200 if where == "feed" else 502)
    event = audit.named("secret_redaction_fail")[0]
    assert event.reason == "the redactor failed: RuntimeError"


async def test_a_secmw_refusal_raised_by_the_app_before_answering_is_rendered() -> None:
    from secmw.breaker import CircuitOpen

    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise CircuitOpen("billing", retry_after=7.2)

    audit = AuditCapture()
    sent = await call(open_app(app, audit=audit), http_scope("/x"))
    assert sent.status == 503 and sent.header("retry-after") == "8"
    assert b"temporarily unavailable" in sent.body
    event = audit.last
    assert (event.name, event.status, event.reason) == (
        "upstream_circuit_open",
        503,
        "circuit billing open",
    )


async def test_a_secmw_refusal_raised_after_the_app_answered_is_its_error() -> None:
    from secmw.breaker import CircuitOpen

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        raise CircuitOpen("billing", retry_after=1)

    audit = AuditCapture()
    with pytest.raises(CircuitOpen):
        await call(open_app(app, audit=audit), http_scope("/x"))
    assert audit.last.name == "app_error"


@pytest.mark.parametrize("incoming", [None, "client-chosen-id"])
async def test_two_stacked_middlewares_share_one_request_id(incoming: str | None) -> None:
    inner_audit, outer_audit = AuditCapture(), AuditCapture()
    inner = SecurityMiddleware(EchoApp(), OPEN, audit=inner_audit)
    # The outer one does not trust a client's id; the inner one would.
    outer_config = {**OPEN, "request_id": {"trust_incoming": False}}
    outer = SecurityMiddleware(inner, outer_config, audit=outer_audit)
    headers = [("x-request-id", incoming)] if incoming else []
    sent = await call(outer, http_scope("/x", headers=headers))
    echoed = sent.headers("x-request-id")
    assert len(echoed) == 1
    assert echoed[0] == outer_audit.last.request_id == inner_audit.last.request_id
    assert echoed[0] != incoming


@pytest.mark.parametrize("host", ["app.example,for=6.6.6.6", "a;for=1.2.3.4", 'a"b', "a=b"])
async def test_a_host_no_dns_name_can_have_is_refused(host: str) -> None:
    # A proxy writing the Host into its Forwarded element unquoted would otherwise
    # let the client add an element (its own address) after it.
    sent = await call(open_app(EchoApp()), http_scope("/x", headers=[("host", host)]))
    assert sent.status == 400


async def test_an_app_raised_refusal_is_redacted_like_the_apps_answers() -> None:
    from secmw.redact import SecretRedactor

    secret = "sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc"

    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise AccessDenied(f"key {secret} is not allowed here")

    audit = AuditCapture()
    sent = await call(open_app(app, redactor=SecretRedactor(), audit=audit), http_scope("/x"))
    assert sent.status == 403 and secret.encode() not in sent.body
    assert int(sent.header("content-length") or 0) == len(sent.body)
    assert secret not in audit.last.to_json() and audit.last.name == "authz_fail"
    assert audit.named("secret_redacted")[0].details["count"] == 1


class AccessDeniedLike(AccessDenied):
    """An app's own refusal, possibly malformed."""


def _without_headers(denial: AccessDeniedLike) -> AccessDeniedLike:
    denial.headers = None  # type: ignore[assignment]  # an app that cleared them badly
    return denial


@pytest.mark.parametrize(
    "denial",
    [
        pytest.param(lambda: AccessDeniedLike(b"bytes detail"), id="unrenderable-detail"),
        pytest.param(
            lambda: AccessDeniedLike("no", headers=[(b"x-note", b"a\r\nSet-Cookie: s=1")]),
            id="crlf-header",
        ),
        pytest.param(
            lambda: AccessDeniedLike("no", headers=[(b"x-note", b"a" * 100_000)]), id="huge-header"
        ),
        pytest.param(lambda: AccessDeniedLike("no", headers=[(b"x bad", b"1")]), id="bad-name"),
        pytest.param(
            lambda: AccessDeniedLike("no", headers=[(b"Content-Length", b"1")]), id="framing"
        ),
        pytest.param(lambda: _without_headers(AccessDeniedLike("no")), id="headers-none"),
    ],
)
async def test_an_app_raised_refusal_that_cannot_be_answered_is_the_apps_error(
    denial: Any,
) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise denial()

    audit = AuditCapture()

    sender = Sender()
    with pytest.raises(AccessDeniedLike):
        await open_app(app, audit=audit)(http_scope("/x"), Receiver.body(b""), sender)
    assert sender.messages[0]["status"] == 500
    assert audit.last.name == "app_error" and audit.last.status == 500


async def test_a_client_cannot_be_the_trusted_proxy_through_a_broken_forwarded_header() -> None:
    rules = [
        {
            "id": "ops",
            "effect": "allow",
            "when": {"paths": ["/admin"], "client_ips": ["10.0.0.0/8"]},
        }
    ]
    config = {
        "proxy": {
            "trusted_hops": 1,
            "trusted_proxies": ["10.0.0.0/8"],
            "forwarded_header": "forwarded",
        },
        "policy": {"rules": rules},
    }
    audit = AuditCapture()
    app = SecurityMiddleware(EchoApp(), config, audit=audit)
    for sent_by_client in ["x", 'for="unterminated', "proto=http", "for=1.1.1.1;for=2.2.2.2"]:
        # nginx's recipe: the client's value, then the proxy's own element.
        value = f"{sent_by_client}, for=203.0.113.9"
        sent = await call(
            app, http_scope("/admin", headers=[("forwarded", value)], client=("10.0.0.5", 1))
        )
        assert sent.status == 401, sent_by_client  # not the proxies' own allow rule
        assert audit.last.client == "203.0.113.9"


async def test_an_app_raised_challenge_is_redacted_in_www_authenticate_too() -> None:
    from secmw.errors import AuthenticationError
    from secmw.redact import SecretRedactor

    secret = "sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc"

    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise AuthenticationError(f"token {secret} was revoked")

    sent = await call(open_app(app, redactor=SecretRedactor()), http_scope("/x"))
    assert sent.status == 401
    assert secret not in (sent.header("www-authenticate") or "")
    assert secret.encode() not in sent.body


STRIPE = "sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc"


def _app_denials() -> list[Any]:
    from secmw.errors import AccessDenied, AuthenticationError, InsufficientScope, StepUpRequired

    split = f'{STRIPE[:12]}"{STRIPE[12:]}'  # rendering drops the quote: the key re-joins
    return [
        pytest.param(lambda: AuthenticationError(f"bad {split}"), id="quote-in-detail"),
        pytest.param(
            lambda: AuthenticationError(f"bad {STRIPE[:12]}\u00ad{STRIPE[12:]}"), id="soft-hyphen"
        ),
        pytest.param(lambda: InsufficientScope([f"pay:{STRIPE}"]), id="scope"),
        pytest.param(lambda: StepUpRequired(acr_values=[STRIPE]), id="acr-values"),
        pytest.param(lambda: AuthenticationError("no", error=STRIPE), id="error-code"),
        pytest.param(lambda: AccessDenied("no", rule_ids=[f"r-{STRIPE}"]), id="rule-ids"),
    ]


@pytest.mark.parametrize("make", _app_denials())
async def test_no_part_of_an_app_raised_denial_carries_a_secret_out(make: Any) -> None:
    from secmw.redact import SecretRedactor

    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise make()

    audit = AuditCapture()
    sent = await call(open_app(app, redactor=SecretRedactor(), audit=audit), http_scope("/x"))
    assert sent.status in (401, 403)
    assert STRIPE not in (sent.header("www-authenticate") or "")
    assert STRIPE.encode() not in sent.body
    assert all(STRIPE not in event.to_json() for event in audit.events)


async def test_an_app_raised_challenge_redacted_in_the_partial_style_stays_a_challenge() -> None:
    from secmw.errors import InsufficientScope
    from secmw.redact import SecretRedactor
    from secmw.redact.styles import Styler

    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise InsufficientScope([f"pay:{STRIPE}"])

    audit = AuditCapture()
    redactor = SecretRedactor(styler=Styler("partial"))
    sent = await call(open_app(app, redactor=redactor, audit=audit), http_scope("/x"))
    assert sent.status == 403  # the ellipsis has no latin-1 form: "?" in the header
    challenge = sent.header("www-authenticate") or ""
    assert challenge.startswith("Bearer") and STRIPE not in challenge
    (redacted,) = audit.named("secret_redacted")
    assert redacted.details["types"] == {"stripe_secret_key": 1}


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        pytest.param(["for=203.0.113.5, for=10.0.0.9"], "203.0.113.5", id="two-proxies"),
        pytest.param(
            ["for=6.6.6.6, for=203.0.113.5, for=10.0.0.9"], "203.0.113.5", id="client-prepended"
        ),
        pytest.param(
            ['for=203.0.113.5;host="a\\"b", for=10.0.0.9;host="c,\\"d"'],
            "203.0.113.5",
            id="escaped-quotes-in-proxy-hosts",
        ),
        pytest.param(["for=203.0.113.5", "for=10.0.0.9"], "203.0.113.5", id="two-lines"),
    ],
)
async def test_forwarded_with_two_trusted_proxies_names_the_outer_ones_client(
    values: list[str], expected: str
) -> None:
    audit = AuditCapture()
    proxy = {"trusted_hops": 2, "trusted_proxies": ["10.0.0.0/8"], "forwarded_header": "forwarded"}
    app = SecurityMiddleware(EchoApp(), {**OPEN, "proxy": proxy}, audit=audit)
    headers = [("forwarded", value) for value in values]
    await call(app, http_scope("/x", headers=headers, client=("10.0.0.2", 1234)))
    assert audit.last.client == expected


@pytest.mark.parametrize("peer", ["::ffff:198.51.100.66", "::FFFF:c633:6442"])
async def test_an_ipv4_client_on_a_dual_stack_socket_is_its_ipv4_address(peer: str) -> None:
    rules = [
        {"id": "ban", "effect": "deny", "when": {"client_ips": ["198.51.100.66/32"]}},
        {"id": "all", "effect": "allow"},
    ]
    audit = AuditCapture()
    app = SecurityMiddleware(EchoApp(), {"policy": {"rules": rules}}, audit=audit)
    sent = await call(app, http_scope("/x", client=(peer, 1234)))
    assert sent.status == 401  # the deny rule matched: anonymous, so a challenge
    assert audit.last.client == "198.51.100.66"


@pytest.mark.parametrize(
    ("outer_request_id", "echoed"),
    [
        pytest.param({"echo": False}, {"x-request-id": 1}, id="outer-does-not-echo"),
        pytest.param(
            {"header": "x-trace-id"}, {"x-request-id": 1, "x-trace-id": 1}, id="other-name"
        ),
        pytest.param({}, {"x-request-id": 1}, id="same-name-once"),
    ],
)
async def test_a_nested_middleware_echoes_what_the_outer_one_does_not(
    outer_request_id: dict[str, Any], echoed: dict[str, int]
) -> None:
    inner = SecurityMiddleware(EchoApp(), OPEN)
    outer = SecurityMiddleware(inner, {**OPEN, "request_id": outer_request_id})
    sent = await call(outer, http_scope("/x"))
    for name, count in echoed.items():
        assert len(sent.headers(name)) == count, name
    values = {value for name in echoed for value in sent.headers(name)}
    assert len(values) == 1  # one id, whichever header carries it
