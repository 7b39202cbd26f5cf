"""Fuzzing the full chain through the raw ASGI harness: hostile input never breaks secmw.

Headers (duplicates, huge values, non-ASCII bytes, CR/LF), paths and raw paths
(percent-escapes, dot segments, unicode), query strings, JSON-RPC bodies (valid,
malformed, batches, deep nesting, huge numbers, duplicate keys) and websocket
frames go to one service with every component on. For every input: the call
returns within a bounded time, raises nothing, answers once with a status below
500 (the app behind it never fails, so a 5xx would be secmw's), records no
``sys_error`` and puts no credential in the trail. The same hostile heads go
through the gateway to a real upstream on 127.0.0.1, which must never see a
client credential (this found the two fixes in ``test_fuzz_regressions.py``).

The chain is built once per test and keeps its state across examples, as a
running service would (caches, counters, anomaly detectors), hence the
suppressed function-scoped-fixture health check.
"""

from __future__ import annotations

import faulthandler
import json
import string
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import unquote

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from secmw.testing import InMemoryJWKS, TokenIssuer
from tests.gateway_support import (
    API_KEY,
    COOKIE,
    TOKEN_MARK,
    EchoUpstream,
    HeldReceiver,
    assert_no_client_secrets,
    serve,
)
from tests.scenario_gateway_support import Front
from tests.scenario_support import AUDIENCE, ISSUER, LEAKED, Service, assert_no_credentials
from tests.support import Receiver, Sender

pytestmark = pytest.mark.anyio

FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
SIGNER = TokenIssuer(issuer=ISSUER, audience=AUDIENCE, kid="fuzz")
TOKEN = SIGNER.mint("fuzzer", tenant="acme", expires_in=3600)
TIERS = [
    {"name": "user", "key": "principal", "rate": "100000/minute"},
    {"name": "ws-messages", "key": "connection", "rate": "50/minute", "applies_to": "messages"},
]
STALL = 5  # seconds: any call taking longer is a hang


# anyio.fail_after cancels only at an await: a CPU-bound hang (a regex that
# backtracks, a loop that never awaits) would hang the run instead of failing it.
CPU_HANG_SECONDS = 120


@pytest.fixture(autouse=True)
def _cpu_hangs_fail() -> Iterator[None]:
    faulthandler.dump_traceback_later(CPU_HANG_SECONDS, exit=True)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


@pytest.fixture
async def chain() -> AsyncIterator[Service]:
    service = Service(SIGNER, InMemoryJWKS(SIGNER), tiers=TIERS)
    yield service
    assert "sys_error" not in service.audit.names()
    assert_no_credentials(service.audit.lines(), TOKEN, *LEAKED)


# -- strategies ----------------------------------------------------------------

NAME_CHARS = string.ascii_lowercase + string.digits + "-_."
KNOWN_HEADERS = [
    b"authorization",
    b"content-type",
    b"content-length",
    b"content-encoding",
    b"transfer-encoding",
    b"x-request-id",
    b"x-forwarded-for",
    b"mcp-method",
    b"mcp-name",
    b"accept-encoding",
    b"cookie",
    b"host",
    b"x-api-key",
    b"sec-websocket-protocol",
]
header_names = st.sampled_from(KNOWN_HEADERS) | st.text(NAME_CHARS, min_size=1, max_size=24).map(
    str.encode
)
header_values = st.one_of(
    st.binary(max_size=80),
    st.text(max_size=40).map(lambda text: text.encode("utf-8")),
    st.sampled_from(
        [
            b"Bearer " + TOKEN.encode(),
            b"Bearer " + TOKEN.encode() + b"x",
            b"Bearer",
            b"Bearer  " + TOKEN.encode(),
            b"bearer " + TOKEN.encode()[:-8],
            b"Basic dXNlcjpwYXNz",
            b"application/json",
            b"application/json; charset=latin-1",
            b"gzip",
            b"-1",
            b"1e3",
            b"99999999999999999999999",
            b"ok\r\nx-injected: 1",
            b"\x00\x01\x7f\xff",
            b"tools/call",
            b"search",
        ]
    ),
    st.integers(2_000, 20_000).map(lambda size: b"A" * size),
)
headers = st.lists(st.tuples(header_names, header_values), max_size=8)
segments = st.one_of(
    st.sampled_from(
        [
            "api",
            "me",
            "admin",
            "api/admin",
            "mcp",
            "tenants",
            "acme",
            "globex",
            "healthz",
            "..",
            ".",
            "",
            "%2e%2e",
            "%2E",
            "%2F",
            "%5C",
            "%252e",
            "%00",
            "%C0%AE",
            "%ff",
            "%e2%80%ae",
            "%",
            "%g1",
            ";x=1",
            "\\",
            "é",
            "\u202e",
            "\x00",
        ]
    ),
    st.text(max_size=8),
)
methods = st.sampled_from(["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "G\x00T"])
queries = st.one_of(
    st.binary(max_size=60),
    st.sampled_from([b"", b"access_token=abc", b"a=1&a=2", b"%zz", b"x=" + b"%41" * 300]),
)


ROUTES = ["/api/me", "/mcp", "/tenants/acme/x", "/tenants/globex/x", "/api/admin/x", "/healthz"]


@st.composite
def paths(draw: st.DrawFn) -> tuple[str, bytes]:
    """A raw path and the decoded path a server would give; sometimes they disagree."""
    choice = draw(st.integers(0, 9))
    if choice < 4:  # a route the app serves, so later stages see the request too
        route = draw(st.sampled_from(ROUTES))
        return route, route.encode()
    raw = "/" + "/".join(draw(st.lists(segments, max_size=6)))
    raw_bytes = raw.encode("utf-8", "surrogatepass")
    if choice == 9:
        return draw(st.text(max_size=20)), raw_bytes
    return unquote(raw), raw_bytes


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
    | st.sampled_from(LEAKED),  # echoed back by the app: the redactor must catch them
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)
tool_names = st.sampled_from(["search", "fetch_report", "delete_repo", "shell_exec"]) | st.text(
    max_size=12
)
rpc_calls = st.fixed_dictionaries(
    {
        "jsonrpc": st.just("2.0") | st.text(max_size=3),
        "id": st.integers() | st.text(max_size=6) | st.none(),
        "method": st.sampled_from(["tools/call", "tools/list", "prompts/get", "initialize"])
        | st.text(max_size=12),
        "params": st.fixed_dictionaries({"name": tool_names, "arguments": json_values})
        | json_values,
    },
    optional={"extra": json_values},
)


def _nested(depth: int, opener: str, closer: str, method: str) -> bytes:
    inner = opener * depth + '"leaf"' + closer * depth
    return (
        f'{{"jsonrpc": "2.0", "id": 1, "method": "{method}", '
        f'"params": {{"name": "search", "arguments": {{"q": {inner}}}}}}}'
    ).encode()


rpc_methods = st.sampled_from(["tools/call", "initialize", "prompts/get", "resources/read"])


valid_calls = st.fixed_dictionaries(
    {
        "jsonrpc": st.just("2.0"),
        "id": st.integers(0, 2**53) | st.text(max_size=6),
        "method": st.just("tools/call"),
        "params": st.fixed_dictionaries(
            {"name": tool_names, "arguments": st.dictionaries(st.text(max_size=10), json_values)}
        ),
    }
)
rpc_bodies = st.one_of(
    valid_calls.map(lambda call: json.dumps(call).encode()),
    st.lists(valid_calls, min_size=1, max_size=4).map(lambda calls: json.dumps(calls).encode()),
    rpc_calls.map(lambda call: json.dumps(call).encode()),
    st.lists(rpc_calls, max_size=5).map(lambda calls: json.dumps(calls).encode()),
    st.binary(max_size=200),
    rpc_calls.map(lambda call: json.dumps(call).encode()).flatmap(
        lambda body: st.integers(0, len(body)).map(lambda cut: body[:cut])  # truncated
    ),
    st.builds(_nested, st.integers(1, 20_000), st.just("["), st.just("]"), rpc_methods),
    st.builds(_nested, st.integers(1, 6_000), st.just('{"a": '), st.just("}"), rpc_methods),
    st.integers(100, 20_000).map(
        lambda digits: (
            '{"jsonrpc": "2.0", "id": ' + "9" * digits + ', "method": "tools/call", '
            '"params": {"name": "search", "arguments": {"n": 1e' + "9" * min(digits, 50) + "}}}"
        ).encode()
    ),
    st.sampled_from(
        [
            b'{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "method": "tools/list"}',
            b'{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "search",'
            b' "name": "shell_exec", "arguments": {}}}',
            b'{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "search",'
            b' "arguments": {"q": NaN}}}',
            b'{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "search",'
            b' "arguments": {"q": "\\ud800"}}}',
            b"[]",
            b"[[]]",
            b"null",
            b"\xef\xbb\xbf{}",
            b'"\\u0000"',
            b"{" * 100,
        ]
    ),
)


def _chunks(body: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(cut, len(body)) for cut in cuts})
    pieces, start = [], 0
    for point in points:
        pieces.append(body[start:point])
        start = point
    pieces.append(body[start:])
    return pieces


# -- checks --------------------------------------------------------------------


async def _send(chain: Service, scope: dict[str, Any], receive: Any) -> Sender:
    sent = Sender()
    with anyio.fail_after(STALL):
        await chain.app(scope, receive, sent)
    starts = [m for m in sent.messages if m["type"] == "http.response.start"]
    assert len(starts) == 1, sent.messages
    assert 100 <= starts[0]["status"] < 500, sent.messages[:2]
    bodies = [m for m in sent.messages if m["type"] == "http.response.body"]
    assert bodies and not bodies[-1].get("more_body", False)
    return sent


def _scope(
    method: str,
    path: str,
    raw_path: bytes,
    query: bytes,
    header_list: list[tuple[bytes, bytes]],
    client: tuple[str, int],
) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": raw_path,
        "root_path": "",
        "query_string": query,
        "headers": header_list,
        "client": client,
        "server": ("127.0.0.1", 8000),
    }


# Many addresses, so the anomaly detector's brute-force block (20 failures from one
# address) does not end up answering most examples before the other stages run.
clients = st.tuples(
    st.ip_addresses().map(str) | st.sampled_from(["198.51.100.7", "not-an-ip", ""]),
    st.integers(0, 65535),
)


@FUZZ
@given(
    method=methods,
    target=paths(),
    query=queries,
    header_list=headers,
    with_token=st.booleans(),
    client=clients,
)
async def test_requests_with_hostile_heads(
    chain: Service,
    method: str,
    target: tuple[str, bytes],
    query: bytes,
    header_list: list[tuple[bytes, bytes]],
    with_token: bool,
    client: tuple[str, int],
) -> None:
    path, raw_path = target
    if with_token:
        header_list = [(b"authorization", b"Bearer " + TOKEN.encode()), *header_list]
    await _send(chain, _scope(method, path, raw_path, query, header_list, client), Receiver.body())


@FUZZ
@given(
    body=rpc_bodies,
    cuts=st.lists(st.integers(0, 70_000), max_size=3),
    content_type=st.sampled_from(
        [b"application/json", b"application/json-rpc", b"text/plain", b"application/x+json"]
    ),
    declare_length=st.booleans(),
    mcp_headers=st.just([])
    | st.lists(
        st.tuples(
            st.sampled_from([b"mcp-method", b"mcp-name"]),
            st.sampled_from([b"tools/call", b"search", b"shell_exec"]) | header_values,
        ),
        max_size=2,
    ),
    with_token=st.booleans(),
    client=clients,
)
async def test_json_rpc_bodies(
    chain: Service,
    body: bytes,
    cuts: list[int],
    content_type: bytes,
    declare_length: bool,
    mcp_headers: list[tuple[bytes, bytes]],
    with_token: bool,
    client: tuple[str, int],
) -> None:
    header_list = [(b"content-type", content_type), *mcp_headers]
    if declare_length:
        header_list.append((b"content-length", str(len(body)).encode()))
    if with_token:
        header_list.append((b"authorization", b"Bearer " + TOKEN.encode()))
    scope = _scope("POST", "/mcp", b"/mcp", b"", header_list, client)
    sent = await _send(chain, scope, Receiver.body(*_chunks(body, cuts)))
    if sent.header("content-type") == "application/problem+json":
        json.loads(sent.body)  # every refusal is a well-formed document
    for secret in LEAKED:  # whatever the app echoed, no secret left the chain
        assert secret.encode() not in sent.body


class Client:
    """Connect, the fuzzed frames, then a disconnect (the chain may close first)."""

    def __init__(self, frames: list[dict[str, Any]]) -> None:
        self.frames = [
            {"type": "websocket.connect"},
            *frames,
            {"type": "websocket.disconnect", "code": 1000},
        ]

    async def __call__(self) -> dict[str, Any]:
        if self.frames:
            return self.frames.pop(0)
        await anyio.sleep_forever()
        raise AssertionError("unreachable")


frames = st.one_of(
    st.text(max_size=300).map(lambda text: {"type": "websocket.receive", "text": text}),
    st.binary(max_size=300).map(lambda data: {"type": "websocket.receive", "bytes": data}),
    st.integers(4000, 6000).map(lambda size: {"type": "websocket.receive", "text": "x" * size}),
    st.integers(4000, 6000).map(
        lambda size: {"type": "websocket.receive", "bytes": b"\xff" * size}
    ),
    st.just({"type": "websocket.receive"}),
    st.just({"type": "websocket.receive", "text": None, "bytes": None}),
    st.text("\u00e9\u4e2d\U0001f600", min_size=1000, max_size=1500).map(
        lambda text: {"type": "websocket.receive", "text": text}  # multi-byte, near the limit
    ),
)
subprotocols = st.just([]) | st.lists(
    st.sampled_from(["mcp", "base64url.bearer.authorization.k8s.io.", "chat"])
    | st.text(string.printable, max_size=30).map(
        lambda text: "base64url.bearer.authorization.k8s.io." + text
    ),
    max_size=3,
)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    frame_list=st.lists(frames, max_size=12),
    header_list=headers,
    offered=subprotocols,
    with_token=st.booleans(),
    extension=st.booleans(),
    target=paths(),
    client=clients,
)
async def test_websocket_sessions(
    chain: Service,
    frame_list: list[dict[str, Any]],
    header_list: list[tuple[bytes, bytes]],
    offered: list[str],
    with_token: bool,
    extension: bool,
    target: tuple[str, bytes],
    client: tuple[str, int],
) -> None:
    path, raw_path = target
    if with_token:
        header_list = [(b"authorization", b"Bearer " + TOKEN.encode()), *header_list]
    scope = _scope("GET", path, raw_path, b"", header_list, client)
    scope.update(type="websocket", scheme="ws", subprotocols=offered)
    del scope["method"]
    if extension:
        scope["extensions"] = {"websocket.http.response": {}}
    sent = Sender()
    with anyio.fail_after(STALL):
        await chain.app(scope, Client(frame_list), sent)
    assert sent.messages, "the handshake got no answer"
    first = sent.messages[0]["type"]
    assert first in ("websocket.accept", "websocket.close", "websocket.http.response.start")
    if first == "websocket.http.response.start":
        assert sent.status < 500
    for message in sent.messages:
        if message["type"] == "websocket.close":
            assert message["code"] in (1000, 1008, 1009), message


class PlainUpstream(EchoUpstream):
    """Records every request's headers like the echo upstream, and always answers 200."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        pairs = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
        self.seen.append(dict(pairs) | {":all": json.dumps(pairs)})
        while (await receive()).get("more_body"):
            pass
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", b"2")],
            }
        )
        await send({"type": "http.response.body", "body": b"ok"})


@pytest.fixture(scope="module")
def plain_upstream() -> Iterator[tuple[PlainUpstream, str]]:
    upstream = PlainUpstream()
    with serve(upstream) as url:
        yield upstream, url


@pytest.fixture
async def gateway(plain_upstream: tuple[PlainUpstream, str]) -> AsyncIterator[Front]:
    front = Front(*plain_upstream, tiers=TIERS)
    yield front
    await front.gateway.proxy.aclose()
    assert "sys_error" not in front.audit.names()
    assert_no_credentials(front.audit.lines(), front.token, TOKEN_MARK, API_KEY)


# Credentials a client might send besides its token; none may reach an upstream.
CREDENTIAL_HEADERS = [
    [(b"cookie", COOKIE.encode())],
    [(b"x-api-key", API_KEY.encode())],
    [(b"proxy-authorization", b"Basic " + TOKEN_MARK.encode())],
    [(b"x-auth-token", TOKEN_MARK.encode())],
    [(b"x-amz-security-token", TOKEN_MARK.encode())],
    [(b"x-tenant-secret", TOKEN_MARK.encode())],  # configured in strip_headers
    [(b"connection", b"keep-alive, x-hop"), (b"x-hop", TOKEN_MARK.encode())],  # hop-by-hop
]


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    target=paths(),
    query=queries,
    header_list=headers,
    credentials=st.lists(st.sampled_from(CREDENTIAL_HEADERS), max_size=4).map(
        lambda groups: [pair for group in groups for pair in group]
    ),
    method=st.sampled_from(["GET", "POST", "DELETE", "HEAD"]),
)
async def test_gateway_never_forwards_a_client_credential(
    gateway: Front,
    target: tuple[str, bytes],
    query: bytes,
    header_list: list[tuple[bytes, bytes]],
    credentials: list[tuple[bytes, bytes]],
    method: str,
) -> None:
    path, raw_path = target
    # API keys and cookies are not credentials this chain reads, so they travel with a
    # valid token; whatever else the fuzzer adds, only the chain's own headers go on.
    sent_headers = [
        (b"authorization", b"Bearer " + gateway.token.encode()),
        *credentials,
        *[(name, value) for name, value in header_list if name != b"authorization"],
    ]
    scope = _scope(method, path, raw_path, query, sent_headers, ("198.51.100.8", 1))
    gateway.echo.seen.clear()
    sent = Sender()
    with anyio.fail_after(STALL):
        await gateway.gateway(scope, HeldReceiver(), sent)
    starts = [m for m in sent.messages if m["type"] == "http.response.start"]
    assert len(starts) == 1 and starts[0]["status"] < 500, sent.messages[:2]
    assert len(gateway.echo.seen) <= 1
    assert_no_client_secrets(gateway.echo, gateway.token)
