"""Redaction through SecurityMiddleware: SSE and MCP JSON responses, framing, audit."""

from __future__ import annotations

import json
import random
from typing import Any

import anyio
import pytest

from secmw import SecurityMiddleware
from secmw.testing import AuditCapture
from tests.redact_corpus import SPECS
from tests.support import Receiver, call, chunked_app, http_scope

pytestmark = pytest.mark.anyio

CONFIG: dict[str, Any] = {
    "auth": {"allow_anonymous": True},
    "audit": {"sink": "none"},
    "redact": {"enabled": True, "json_keys": ["password"]},
}
RNG = random.Random(6)
GITHUB = SPECS["github_token"].make(RNG)[1]
OPENAI = SPECS["openai_api_key"].make(RNG)[1]
PEM = SPECS["private_key"].make(RNG)[1]


def fragments(secret: str) -> set[str]:
    return {secret[i : i + 8] for i in range(len(secret) - 7)}


def chat_sse(text: str, size: int = 5) -> bytes:
    events = [
        "data: "
        + json.dumps(
            {
                "id": "c1",
                "object": "chat.completion.chunk",
                "choices": [
                    {"index": 0, "delta": {"content": text[i : i + size]}, "finish_reason": None}
                ],
            }
        )
        + "\n\n"
        for i in range(0, len(text), size)
    ]
    events.append('data: {"id":"c1","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n')
    events.append("data: [DONE]\n\n")
    return "".join(events).encode()


async def test_sse_response_with_a_secret_split_across_events_and_chunks() -> None:
    message = f"Here is the key {GITHUB} and the OpenAI one {OPENAI}; keep them safe."
    body = chat_sse(message)
    pieces = [body[i : i + 37] for i in range(0, len(body), 37)]
    audit = AuditCapture()
    app = SecurityMiddleware(chunked_app(pieces, b"text/event-stream"), CONFIG, audit=audit)
    sent = await call(app, http_scope("/v1/chat/completions"))

    assert sent.status == 200
    assert sent.header("content-length") is None
    for chunk in sent.body_chunks:
        text = chunk.decode()
        assert not any(piece in text for piece in fragments(GITHUB) | fragments(OPENAI))
    events = sent.body.decode().split("\n\n")
    assert events[-1] == ""
    assert events[-2] == "data: [DONE]"
    content = ""
    for event in events[:-2]:
        assert event.startswith("data: ")
        payload = json.loads(event[6:])
        content += payload["choices"][0]["delta"].get("content", "")
    assert content == (
        "Here is the key [REDACTED:github_token] and the OpenAI one "
        "[REDACTED:openai_api_key]; keep them safe."
    )
    (event,) = audit.named("secret_redacted")
    assert event.details["types"] == {"github_token": 1, "openai_api_key": 1}
    assert event.severity == "warning"
    assert GITHUB not in json.dumps(event.to_dict())


async def test_mcp_tool_result_json_is_redacted_and_keeps_a_correct_content_length() -> None:
    inner = json.dumps({"config": {"github": GITHUB, "key": PEM}})
    result = {
        "jsonrpc": "2.0",
        "id": 7,
        "result": {
            "content": [{"type": "text", "text": inner}],
            "structuredContent": {"note": f"token {GITHUB}", "password": "hunter2"},
            "isError": False,
        },
    }
    raw = json.dumps(result, indent=1).encode()
    seen: list[Any] = []

    async def mcp_app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["state"]["secmw"])
        await chunked_app([raw[:50], raw[50:]], b"application/json", length=True)(
            scope, receive, send
        )

    audit = AuditCapture()
    app = SecurityMiddleware(mcp_app, CONFIG, audit=audit)
    sent = await call(app, http_scope("/mcp", method="POST"))

    assert sent.status == 200
    assert sent.headers("content-length") == [str(len(sent.body))]
    document = sent.json()
    text = document["result"]["content"][0]["text"]
    assert json.loads(text) == {
        "config": {"github": "[REDACTED:github_token]", "key": "[REDACTED:private_key]"}
    }
    assert document["result"]["structuredContent"] == {
        "note": "token [REDACTED:github_token]",
        "password": "[REDACTED:sensitive_field]",
    }
    assert document["id"] == 7
    assert GITHUB.encode() not in sent.body and b"hunter2" not in sent.body
    kinds = sorted(finding.kind for finding in seen[0].findings)
    assert kinds == ["github_token", "github_token", "private_key", "sensitive_field"]
    (event,) = audit.named("secret_redacted")
    assert event.details["count"] == 4
    assert event.request_id == seen[0].request_id


async def test_chunked_text_body_with_a_private_key_split_everywhere() -> None:
    body = f"log line one\n{PEM}\nlog line two\n".encode()
    pieces = [body[i : i + 3] for i in range(0, len(body), 3)]
    app = SecurityMiddleware(chunked_app(pieces, b"text/plain"), CONFIG)
    sent = await call(app, http_scope("/logs"))
    assert sent.body == b"log line one\n[REDACTED:private_key]\nlog line two\n"
    assert sent.header("content-length") is None
    lines = PEM.splitlines()[1:-1]
    assert all(line.encode() not in chunk for chunk in sent.body_chunks for line in lines)


async def test_clean_response_is_untouched_and_not_audited() -> None:
    body = b'{"ok": true, "items": [1, 2, 3]}'
    audit = AuditCapture()
    app = SecurityMiddleware(
        chunked_app([body], b"application/json", length=True), CONFIG, audit=audit
    )
    sent = await call(app, http_scope("/ok"))
    assert sent.body == body
    assert sent.header("content-length") == str(len(body))
    assert not audit.named("secret_redacted")


async def gzip_app(scope: Any, receive: Any, send: Any) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-encoding", b"gzip")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"\x1f\x8b-compressed"})


async def test_compressed_response_is_refused_by_default() -> None:
    audit = AuditCapture()
    sent = await call(SecurityMiddleware(gzip_app, CONFIG, audit=audit), http_scope("/z"))
    assert sent.status == 502
    assert audit.named("secret_redaction_fail")


def _answering(*headers: tuple[bytes, bytes], body: bytes) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": list(headers)})
        await send({"type": "http.response.body", "body": body})

    return app


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param(
            [(b"content-encoding", b"gzip"), (b"content-encoding", b"identity")], id="two-lines"
        ),
        pytest.param([(b"content-encoding", b"identity, gzip")], id="list"),
        pytest.param([(b"transfer-encoding", b"gzip, chunked")], id="transfer-coding"),
        pytest.param([(b"Transfer-Encoding", b"deflate")], id="transfer-coding-alone"),
        pytest.param([(b"content-type", b"text/plain; charset=utf-16")], id="utf-16-text"),
        pytest.param([(b"content-type", b'text/plain; charset="unicode"')], id="whatwg-label"),
        pytest.param(
            [(b"content-type", b'text/plain; a="x;charset=utf-8"; charset=utf-16le')],
            id="charset-after-a-quoted-semicolon",
        ),
        # Python codec names that clients in Python decode with.
        pytest.param([(b"content-type", b"text/plain; charset=utf_16le")], id="utf_16le"),
        pytest.param([(b"content-type", b"text/plain; charset=u16")], id="u16"),
        pytest.param([(b"content-type", b"text/plain; charset=UTF_32_LE")], id="utf_32_le"),
        pytest.param(
            [(b"content-type", b"text/plain; charset=unicodelittleunmarked")], id="python-alias"
        ),
        # Not ASCII-compatible, or decoding escapes into letters.
        pytest.param([(b"content-type", b"text/plain; charset=utf-7")], id="utf-7"),
        pytest.param([(b"content-type", b"text/plain; charset=cp037")], id="ebcdic"),
        pytest.param([(b"content-type", b"text/plain; charset=unicode_escape")], id="escapes"),
        pytest.param([(b"content-type", b"text/plain; charset=raw_unicode_escape")], id="raw"),
        # Stateful codecs whose decoders drop shift sequences inside a secret.
        pytest.param([(b"content-type", b"text/plain; charset=iso-2022-jp")], id="iso-2022-jp"),
        pytest.param([(b"content-type", b"text/plain; charset=ISO-2022-KR")], id="iso-2022-kr"),
        # A label Python folds to UTF-16 ("utf" + dashes + "16le"), too long to look up.
        pytest.param(
            [(b"content-type", b"text/plain; charset=utf" + b"-" * 62 + b"16le")], id="long"
        ),
        # RFC 2231 parameters, which httpx reads through email.message.
        pytest.param([(b"content-type", b"text/plain; charset*=utf-8''utf-16le")], id="rfc2231"),
        pytest.param(
            [(b"content-type", b"text/plain; charset*0=utf-; charset*1=16le")],
            id="rfc2231-continued",
        ),
        # requests splits at every ";", quoted or not.
        pytest.param(
            [(b"content-type", b'text/plain; x="a;charset=utf-16le"')], id="requests-split"
        ),
    ],
)
async def test_a_body_secmw_cannot_scan_is_refused_however_it_is_declared(
    headers: list[tuple[bytes, bytes]],
) -> None:
    audit = AuditCapture()
    app = _answering((b"content-type", b"application/json"), *headers, body=b"\x1f\x8b..")
    sent = await call(SecurityMiddleware(app, CONFIG, audit=audit), http_scope("/z"))
    assert sent.status == 502
    assert audit.named("secret_redaction_fail")


@pytest.mark.parametrize(
    "charset",
    [b"utf-8", b"UTF8", b"windows-1252", b"iso-8859-15", b"shift_jis", b"utf-8-sig", b"x-custom"],
)
async def test_text_in_an_ascii_compatible_charset_is_redacted_not_refused(charset: bytes) -> None:
    app = _answering(
        (b"content-type", b"text/plain; charset=" + charset), body=f"token {GITHUB}".encode()
    )
    sent = await call(SecurityMiddleware(app, CONFIG), http_scope("/z"))
    assert sent.status == 200
    assert sent.body == b"token [REDACTED:github_token]"


@pytest.mark.parametrize(
    ("media", "body"),
    [
        ("application/json", '{"k": "\\udcff \\ud83d %s"}'),
        ("application/x-ndjson", '{"k": "\\udcff \\ud83d %s"}\n'),
        ("text/event-stream", 'data: {"k": "\\udcff \\ud83d %s"}\n\n'),
    ],
)
async def test_escaped_lone_surrogates_next_to_a_secret_stay_escaped(media: str, body: str) -> None:
    raw = (body % GITHUB).encode()
    app = _answering((b"content-type", media.encode()), body=raw)
    sent = await call(SecurityMiddleware(app, CONFIG), http_scope("/z"))
    assert sent.status == 200
    assert sent.body == raw.replace(GITHUB.encode(), b"[REDACTED:github_token]")


async def test_a_redactor_that_returns_a_lone_surrogate_cannot_break_the_response() -> None:
    class Odd:
        pass_compressed = False

        def redact(self, text: str, media_type: str | None = None) -> tuple[str, list[Any]]:
            return text + "\ud800", []

        def stream(self, media_type: str | None = None) -> Any:
            raise AssertionError("buffered")

    app = _answering((b"content-type", b"text/plain"), (b"content-length", b"2"), body=b"ok")
    sent = await call(SecurityMiddleware(app, CONFIG, redactor=Odd()), http_scope("/z"))
    assert sent.status == 200
    assert sent.body == "ok\ufffd".encode()


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        b"",
        b"text",
        b"unknown/unknown",
        b"application/yaml",
        b"application/x-yaml",
        b"application/vnd.k8s+yaml",
        b"application/x-pem-file",
        b"application/x-javascript",
        b"application/ecmascript",
        b"application/x-ecmascript",
        b"multipart/form-data; boundary=b",
        b"multipart/mixed; boundary=b",
    ],
)
async def test_text_without_a_known_textual_type_is_still_redacted(
    content_type: bytes | None,
) -> None:
    headers = [(b"content-type", content_type)] if content_type else []
    app = _answering(*headers, body=f"token: {GITHUB}\n".encode())
    sent = await call(SecurityMiddleware(app, CONFIG), http_scope("/z"))
    assert sent.status == 200
    assert GITHUB.encode() not in sent.body
    assert b"[REDACTED:github_token]" in sent.body


async def test_a_multipart_body_keeps_its_binary_parts_byte_for_byte() -> None:
    binary = bytes(range(256))
    body = (
        b"--b\r\nContent-Type: application/octet-stream\r\n\r\n" + binary + b"\r\n"
        b"--b\r\nContent-Type: text/plain\r\n\r\ntoken " + GITHUB.encode() + b"\r\n--b--\r\n"
    )
    app = _answering(
        (b"content-type", b"multipart/form-data; boundary=b"),
        (b"content-length", str(len(body)).encode()),
        body=body,
    )
    sent = await call(SecurityMiddleware(app, CONFIG), http_scope("/z"))
    assert sent.body == body.replace(GITHUB.encode(), b"[REDACTED:github_token]")


@pytest.mark.parametrize("bom", [b"\xff\xfe", b"\xfe\xff"])
async def test_a_utf16_body_with_a_bom_is_refused_whatever_its_charset(bom: bytes) -> None:
    codec = "utf-16-le" if bom == b"\xff\xfe" else "utf-16-be"
    body = bom + f"token: {GITHUB}".encode(codec)
    app = _answering(
        (b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode()), body=body
    )
    audit = AuditCapture()
    sent = await call(SecurityMiddleware(app, CONFIG, audit=audit), http_scope("/z"))
    assert sent.status == 502
    assert audit.named("secret_redaction_fail")


XML_UTF16 = '<?xml version="1.0" encoding="UTF-16"?><k>{}</k>'


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        pytest.param(b"text/plain", b"\xff\xfe" + f"key {GITHUB}".encode("utf-16-le"), id="bom16"),
        pytest.param(
            b"text/plain", b"\xff\xfe\x00\x00" + f"key {GITHUB}".encode("utf-32-le"), id="bom32"
        ),
        pytest.param(
            b"application/xml", XML_UTF16.format(GITHUB).encode("utf-16-le"), id="xml-no-bom"
        ),
        pytest.param(
            b"application/json", json.dumps({"k": GITHUB}).encode("utf-32-be"), id="json-no-bom"
        ),
    ],
)
@pytest.mark.parametrize("declared", [True, False], ids=["buffered", "streamed"])
async def test_utf16_and_utf32_text_is_never_sent_unscanned(
    content_type: bytes, body: bytes, declared: bool
) -> None:
    pieces = [body[i : i + 3] for i in range(0, len(body), 3)]  # the first bytes split too
    audit = AuditCapture()
    app = SecurityMiddleware(
        chunked_app(pieces, content_type, length=declared), CONFIG, audit=audit
    )
    sent = await call(app, http_scope("/z"))
    # Buffered: refused with 502; streamed: the headers are out, so the body is cut.
    assert sent.status == (502 if declared else 200)
    for codec in ("utf-16-le", "utf-32-le", "utf-32-be"):
        assert GITHUB not in sent.body.decode(codec, "ignore")
    assert [e.name for e in audit.events if e.request_id] == ["secret_redaction_fail"]


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param([], id="untyped"),
        pytest.param([(b"content-type", b"*/*, application/json")], id="wildcard-then-json"),
        pytest.param(
            [(b"content-type", b"*/*"), (b"content-type", b"application/json")], id="two-lines"
        ),
    ],
)
async def test_utf16_json_a_client_may_detect_is_refused_without_a_declared_json_type(
    headers: list[tuple[bytes, bytes]],
) -> None:
    body = json.dumps({"key": GITHUB}).encode("utf-16-le")  # httpx's .json() detects it
    app = _answering(*headers, (b"content-length", str(len(body)).encode()), body=body)
    assert (await call(SecurityMiddleware(app, CONFIG), http_scope("/z"))).status == 502


async def test_an_untyped_binary_stream_starting_with_nuls_passes_whole() -> None:
    video = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256))

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for index in range(0, len(video), 3):
            more = index + 3 < len(video)
            await send(
                {"type": "http.response.body", "body": video[index : index + 3], "more_body": more}
            )

    sent = await call(SecurityMiddleware(app, CONFIG), http_scope("/v"))
    assert (sent.status, sent.body) == (200, video)


async def test_a_short_first_chunk_of_an_event_stream_is_not_held_back() -> None:
    first_out = anyio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        headers = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b":\n\n", "more_body": True})
        with anyio.fail_after(5):
            await first_out.wait()  # the keep-alive reached the client on its own
        await send({"type": "http.response.body", "body": b"data: x\n\n"})

    sent: list[bytes] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            sent.append(message.get("body", b""))
            if b":\n\n" in message.get("body", b""):
                first_out.set()

    await SecurityMiddleware(app, CONFIG)(http_scope("/sse"), Receiver.body(b""), send)
    assert b"".join(sent) == b":\n\ndata: x\n\n"


async def test_compressed_response_passes_unscanned_when_configured_and_is_a_fail_open() -> None:
    config = {**CONFIG, "redact": {"enabled": True, "compressed": "pass"}}
    audit = AuditCapture()
    sent = await call(SecurityMiddleware(gzip_app, config, audit=audit), http_scope("/z"))
    assert sent.status == 200
    assert sent.body == b"\x1f\x8b-compressed"
    assert sent.header("content-encoding") == "gzip"
    (startup,) = audit.named("sys_startup")
    assert "redact.compressed" in startup.details["fail_open"]
    assert "redact" in startup.details["stages"]


ESCAPED_DOCUMENT = json.dumps(
    {
        "password": "Xk9mQ2vL7pZ4wR8tY/",
        "aws_secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzq8Xk3pL0a",
        "text": json.dumps({"token": GITHUB}),
        "pass\u0077ord_hint": "n/a",
    }
).replace("/", "\\/")  # PHP's json_encode escapes every slash


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "streamed"])
async def test_json_is_redacted_as_json_with_escapes_whether_declared_or_streamed(
    declared: bool,
) -> None:
    body = ESCAPED_DOCUMENT.encode()
    pieces = [body[i : i + 7] for i in range(0, len(body), 7)]
    app = SecurityMiddleware(chunked_app(pieces, b"application/json", length=declared), CONFIG)
    sent = await call(app, http_scope("/doc"))
    for secret in ("Xk9mQ2vL7pZ4wR8tY", "wJalrXUtnFEMI", "bPxRfiCYzq8Xk3pL0a", GITHUB):
        assert secret.encode() not in sent.body
    document = json.loads(sent.body)  # still valid JSON
    assert document["password"].startswith("[REDACTED")
    assert "[REDACTED" in json.loads(document["text"])["token"]
    assert (sent.header("content-length") is not None) is declared


async def test_ndjson_is_redacted_line_by_line_across_chunks() -> None:
    records = [
        {"n": 0, "password": "Xk9mQ2vL7pZ4wR8tY"},
        {"n": 1, "note": "line\u2028separator stays inside the string", "key": GITHUB},
        {"n": 2, "url": "postgres://admin:Pw7xQ2vL9z@db/x".replace("/", "\\/")},
    ]
    body = "".join(json.dumps(r).replace("\\\\/", "\\/") + "\n" for r in records).encode()
    pieces = [body[i : i + 5] for i in range(0, len(body), 5)]
    app = SecurityMiddleware(chunked_app(pieces, b"application/x-ndjson"), CONFIG)
    sent = await call(app, http_scope("/events"))
    lines = sent.body.decode().split("\n")
    assert lines[-1] == ""
    parsed = [json.loads(line) for line in lines[:-1]]
    assert [p["n"] for p in parsed] == [0, 1, 2]
    assert parsed[0]["password"].startswith("[REDACTED")
    assert GITHUB not in sent.body.decode()
    assert b"Pw7xQ2vL9z" not in sent.body
    assert "\u2028" in parsed[1]["note"]


async def test_a_secret_in_the_path_never_reaches_the_audit_trail() -> None:
    audit = AuditCapture()
    body = f'{{"token": "{GITHUB}"}}'.encode()
    app = _answering((b"content-type", b"application/json"), body=body)
    sent = await call(SecurityMiddleware(app, CONFIG, audit=audit), http_scope(f"/keys/{GITHUB}"))
    assert sent.status == 200
    request_events = [e for e in audit.events if e.request_id is not None]
    assert {e.name for e in request_events} >= {"authz_allow", "secret_redacted"}
    for event in request_events:
        assert GITHUB not in event.to_json()
        assert event.path is not None and event.path.startswith("/keys/[REDACTED")


STRIPE = "sk_live_" + "NqVwYS81VP7Hb1DX8pPd5khx"


@pytest.mark.parametrize(
    ("method", "params", "shown"),
    [
        pytest.param(
            "resources/read",
            {"uri": f"https://api.example.com/v1/charges?key={STRIPE}"},
            "https://api.example.com/v1/charges?key=[REDACTED:stripe_secret_key]",
            id="key-in-resource-uri",
        ),
        pytest.param(
            "resources/read",
            {"uri": "postgres://admin:hunter2x@db/prod"},
            "postgres://admin:[REDACTED:url_credentials]@db/prod",
            id="url-password",
        ),
        pytest.param(  # short, punctuated: no token run, escape or user information
            "resources/read",
            {"uri": "mysql://db/prod?password=Xk9!mQ2$zT"},
            "mysql://db/prod?password=[REDACTED:generic_secret]",
            id="short-keyword-secret",
        ),
        pytest.param(
            "tools/call",
            {"name": f"lookup-{GITHUB}", "arguments": {}},
            "lookup-[REDACTED:github_token]",
            id="tool-name",
        ),
    ],
)
@pytest.mark.parametrize("allowed", [True, False], ids=["allowed", "denied"])
async def test_a_secret_in_a_json_rpc_target_never_reaches_the_audit_trail(
    method: str, params: dict[str, Any], shown: str, allowed: bool
) -> None:
    audit = AuditCapture()
    effect = "allow" if allowed else "deny"
    config = {k: v for k, v in CONFIG.items() if k != "auth"} | {
        "policy": {
            "default": "deny",
            "rules": [{"id": "rpc", "effect": effect, "when": {"rpc_methods": ["*"]}}],
        }
    }
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
    app = _answering((b"content-type", b"application/json"), body=b"{}")
    scope = http_scope("/mcp", method="POST", headers=[("content-type", "application/json")])
    sent = await call(SecurityMiddleware(app, config, audit=audit), scope, Receiver.body(body))
    assert sent.status == (200 if allowed else 401)  # anonymous: a challenge
    events = [e for e in audit.events if e.request_id is not None]
    assert [e.tool for e in events] == [shown]
    assert all("hunter2x" not in e.to_json() and GITHUB not in e.to_json() for e in events)
    assert all(STRIPE not in e.to_json() for e in events)


MAGIC = "q8Z2" + "xLm0Vw4tRk9pYb7nJs3eHc6gAd1uFo5i"  # no known format: only its place tells


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        pytest.param(f"/auth/magic/{MAGIC}", "/auth/magic/[REDACTED:path_token]", id="magic"),
        pytest.param(  # what follows a token may be its tail (a "/" sent as %2F)
            f"/reset-password/{MAGIC}/x",
            "/reset-password/[REDACTED:path_token]/[REDACTED:path_token]",
            id="reset",
        ),
        pytest.param(  # Django: an id, then the token
            "/accounts/reset/MQ/c4x9k2-3f7e9a1b2c3d4e5f6a7b/",
            "/accounts/reset/MQ/[REDACTED:path_token]",
            id="uid-then-token",
        ),
        pytest.param(
            f"/t/acme/shared_invite/zt-{MAGIC}",
            "/t/acme/shared_invite/[REDACTED:path_token]",
            id="invite",
        ),
        pytest.param(f"/share/{MAGIC}", "/share/[REDACTED:path_token]", id="random-after-share"),
        pytest.param(
            f"/auth/passwordless/{MAGIC}", "/auth/passwordless/[REDACTED:path_token]", id="stem"
        ),
        pytest.param(  # a token_urlsafe value whose "-"/"_" cut it into short chunks
            "/share/Xk9_aB3dEf7Gh2_Jk4LmNp", "/share/[REDACTED:path_token]", id="chunked-token"
        ),
        pytest.param(  # hex, lower case only: still a value, not a name
            "/hooks/8f14e45fceea167a5a36dedd4bea2543", "/hooks/[REDACTED:path_token]", id="hex-hook"
        ),
        pytest.param(f"/verify/{MAGIC}", "/verify/[REDACTED:path_token]", id="verify"),
        pytest.param(f"/Unsubscribe/{MAGIC}", "/Unsubscribe/[REDACTED:path_token]", id="case"),
        pytest.param(
            "/hook/smw_3d0cc63bd48c_" + "Zx9" * 14 + "Q",
            "/hook/[REDACTED:secmw_api_key]",
            id="secmw-api-key",
        ),
        pytest.param(  # refused (encoded slash) and logged raw: the scan reads it decoded
            "/bot3252888742:A%41" + "X3a5cD7eF9gH1iJ2kL4mN6oP8qR0sT1uv" + "/send%2Fx",
            "/bot[REDACTED:telegram_bot_token]/send/x",
            id="percent-encoded",
        ),
    ],
)
async def test_credentials_in_paths_are_redacted_in_the_audit_trail(raw: str, shown: str) -> None:
    audit = AuditCapture()
    app = _answering((b"content-type", b"text/plain"), body=b"ok")
    scope = http_scope(raw.replace("%2F", "/").replace("%41", "A"), raw_path=raw.encode())
    await call(SecurityMiddleware(app, CONFIG, audit=audit), scope)
    paths = {e.path for e in audit.events if e.request_id is not None}
    assert paths == {shown}


@pytest.mark.parametrize(
    "path",
    [
        f"/items/{MAGIC}/reset",
        "/download/annual-report-2024-final.pdf",
        "/docs/link/getting-started-with-secmw",
        "/api/keys/production-signing-key/rotate",
        "/password-reset/instructions-for-enterprise-users",
        "/repos/acme/tokenizer/commits/3f2a9c4e5b6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f/files",
        "/v1/presets/Preset0123456789abc/run",
    ],
)
async def test_ids_names_and_slugs_elsewhere_in_paths_stay_in_the_audit_trail(path: str) -> None:
    audit = AuditCapture()
    app = _answering((b"content-type", b"text/plain"), body=b"ok")
    await call(SecurityMiddleware(app, CONFIG, audit=audit), http_scope(path))
    assert {e.path for e in audit.events if e.request_id is not None} == {path}


@pytest.mark.parametrize(
    ("content_type", "scanned"),
    [
        pytest.param(b"application/octet-stream, text/html", True, id="list-ending-textual"),
        pytest.param(b"text/html, image/png", True, id="list-starting-textual"),
        pytest.param(b"application/ json", True, id="invalid-type-is-sniffed"),
        pytest.param(b"*/*", True, id="wildcard-is-sniffed"),
        pytest.param(b"image/png, application/octet-stream", False, id="binary-list"),
        pytest.param(b"image/png", False, id="binary"),
        pytest.param(  # a comma inside a quoted parameter does not split the value
            b'application/pdf; name="report, final.pdf"', False, id="quoted-comma"
        ),
        pytest.param(  # not HTTP whitespace: an invalid type, which browsers sniff
            b"\xa0application/octet-stream", True, id="no-break-space"
        ),
    ],
)
async def test_a_content_type_a_browser_may_read_as_text_is_scanned(
    content_type: bytes, scanned: bool
) -> None:
    body = f"key {GITHUB}".encode()
    app = _answering((b"content-type", content_type), body=body)
    sent = await call(SecurityMiddleware(app, CONFIG), http_scope("/z"))
    assert sent.status == 200
    assert (GITHUB.encode() not in sent.body) is scanned


@pytest.mark.parametrize("label", [b"utf-8", b"unicode-1-1-utf-8", b"unicode11utf8"])
async def test_utf8_labels_pass(label: bytes) -> None:
    app = _answering((b"content-type", b"text/plain; charset=" + label), body=b"hello")
    sent = await call(SecurityMiddleware(app, CONFIG), http_scope("/z"))
    assert (sent.status, sent.body) == (200, b"hello")


async def test_utf16_json_without_a_bom_is_refused_but_untyped_binary_passes() -> None:
    body = json.dumps({"key": GITHUB}).encode("utf-16-le")
    json_app = _answering(
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        body=body,
    )
    assert (await call(SecurityMiddleware(json_app, CONFIG), http_scope("/z"))).status == 502
    video = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256))  # no Content-Type at all
    binary_app = _answering((b"content-length", str(len(video)).encode()), body=video)
    sent = await call(SecurityMiddleware(binary_app, CONFIG), http_scope("/v"))
    assert (sent.status, sent.body) == (200, video)


@pytest.mark.parametrize("ranges", ["bytes=0-11", "bytes=12-40", "bytes=0-5, 30-45"])
async def test_a_range_request_gets_the_whole_body_redacted(tmp_path: Any, ranges: str) -> None:
    # Each range holds only part of the key (the client joins them), and several
    # ranges come as multipart/byteranges: the app must not see Range at all.
    import httpx
    from starlette.applications import Starlette
    from starlette.responses import FileResponse
    from starlette.routing import Route

    path = tmp_path / "notes.txt"
    path.write_text(f"key={GITHUB}\n")

    async def download(request: Any) -> FileResponse:
        return FileResponse(path)

    app = SecurityMiddleware(Starlette(routes=[Route("/notes", download)]), CONFIG)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        sent = await client.get("/notes", headers={"range": ranges, "if-range": "x"})
    assert sent.status_code == 200
    assert sent.text == "key=[REDACTED:github_token]\n"
    assert not any(part in sent.text for part in fragments(GITHUB))


@pytest.mark.parametrize(
    "content_type",
    [
        b"application/pem-certificate-chain",
        b"application/pgp-keys",
        b"message/rfc822",
        b"application/mbox",
        b"application/x-trash",
    ],
)
async def test_key_files_and_mail_as_mimetypes_names_them_are_redacted(
    content_type: bytes,
) -> None:
    app = _answering((b"content-type", content_type), body=PEM.encode())
    sent = await call(SecurityMiddleware(app, CONFIG), http_scope("/k"))
    assert sent.status == 200 and PEM.encode() not in sent.body
    assert b"[REDACTED:private_key]" in sent.body


@pytest.mark.parametrize("status", [204, 304])
async def test_a_body_sent_with_a_bodiless_status_is_dropped_not_leaked(status: int) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        headers = [(b"content-type", b"text/plain")]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": f"key {GITHUB}".encode()})

    sent = await call(SecurityMiddleware(app, CONFIG), http_scope("/z"))
    assert sent.status == status and sent.body == b""


@pytest.mark.parametrize("length", [True, False])
async def test_a_body_sent_by_path_although_the_extension_was_hidden_is_not_sent(
    tmp_path: Any, length: bool
) -> None:
    path = tmp_path / "secret.txt"
    path.write_text(f"key {GITHUB}")

    async def app(scope: Any, receive: Any, send: Any) -> None:
        headers = [(b"content-type", b"text/plain")]
        if length:
            headers.append((b"content-length", str(path.stat().st_size).encode()))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.pathsend", "path": str(path)})

    scope = http_scope("/f")
    scope["extensions"] = {"http.response.pathsend": {}}
    sent = await call(SecurityMiddleware(app, CONFIG), scope)
    assert not any(m["type"] == "http.response.pathsend" for m in sent.messages)
    assert sent.status == (502 if length else 200)
    assert GITHUB.encode() not in sent.body


async def test_a_held_response_the_app_never_finishes_is_not_audited_as_sent() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        headers = [(b"content-type", b"text/plain"), (b"content-length", b"100")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})

    audit = AuditCapture()
    sent = await call(
        SecurityMiddleware(app, CONFIG, audit=audit),
        http_scope("/f"),
    )
    # Nothing of the held body went out: secmw answers 500 in the app's place.
    assert sent.status == 500 and b"partial" not in sent.body
    assert [e.status for e in audit.named("app_error")] == [500]


@pytest.mark.parametrize("length", [True, False])
@pytest.mark.parametrize(
    ("content_type", "prefix"),
    [
        (b"application/x-amz-json-1.1", b""),  # AWS JSON APIs (Secrets Manager)
        (b"application/x-json", b""),
        (b"text/json", b""),
        (b"application/x-ldjson", b""),
        (b"application/json-seq", b"\x1e"),  # RFC 7464: RS, JSON, LF
        (b"application/geo+json-seq", b"\x1e"),
        (b"text/html, application/json", b""),
    ],
)
async def test_other_json_flavours_are_redacted_as_json(
    content_type: bytes, prefix: bytes, length: bool
) -> None:
    escaped = json.dumps({"k": GITHUB, "password": "hunter2hunter2"}).replace("_", "\\u005f")
    body = prefix + escaped.encode() + b"\n"
    headers = [(b"content-type", content_type)]
    if length:
        headers.append((b"content-length", str(len(body)).encode()))
    app = _answering(*headers, body=body)
    sent = await call(SecurityMiddleware(app, CONFIG), http_scope("/z"))
    assert sent.status == 200
    assert json.loads(sent.body.removeprefix(prefix)) == {
        "k": "[REDACTED:github_token]",
        "password": "[REDACTED:sensitive_field]",
    }


@pytest.mark.parametrize("length", [True, False])
@pytest.mark.parametrize("content_type", [None, b"unknown/unknown", b"application/ json"])
async def test_an_untyped_json_body_is_redacted_as_json(
    content_type: bytes | None, length: bool
) -> None:
    # Clients call .json() whatever the type: escapes must not hide a secret.
    body = (
        b"\n "
        + json.dumps({"k": GITHUB, "password": "hunter2hunter2"}).replace("_", "\\u005f").encode()
    )
    headers = [(b"content-type", content_type)] if content_type else []
    if length:
        headers.append((b"content-length", str(len(body)).encode()))
    pieces = [body[:1], body[1:3], body[3:20], body[20:]]

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for index, piece in enumerate(pieces):
            more = index < len(pieces) - 1
            await send({"type": "http.response.body", "body": piece, "more_body": more})

    sent = await call(SecurityMiddleware(app, CONFIG), http_scope("/z"))
    assert sent.status == 200
    assert json.loads(sent.body) == {
        "k": "[REDACTED:github_token]",
        "password": "[REDACTED:sensitive_field]",
    }


async def test_an_untyped_stream_of_whitespace_then_text_is_redacted_as_text() -> None:
    pieces = [b"   ", b"", b"key " + GITHUB.encode()[:10], GITHUB.encode()[10:]]

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for index, piece in enumerate(pieces):
            more = index < len(pieces) - 1
            await send({"type": "http.response.body", "body": piece, "more_body": more})

    sent = await call(SecurityMiddleware(app, CONFIG), http_scope("/z"))
    assert (sent.status, sent.body) == (200, b"   key [REDACTED:github_token]")
