"""Headers, Principal and RequestContext construction."""

from __future__ import annotations

import base64
import os

import pytest

from secmw.context import (
    ANONYMOUS,
    ContextSettings,
    Headers,
    Principal,
    RequestContext,
    new_request_id,
)
from secmw.errors import BadRequest
from tests.support import http_scope


def test_headers_are_case_insensitive_and_keep_duplicates() -> None:
    headers = Headers([(b"X-Thing", b"a"), (b"x-thing", b"b"), (b"host", b"h")])
    assert headers["x-THING"] == "a"
    assert headers.get_all("X-Thing") == ["a", "b"]
    assert "HOST" in headers
    assert 3 not in headers
    assert len(headers) == 2
    assert sorted(headers) == ["host", "x-thing"]
    assert headers.get("missing") is None
    assert headers.get_all("missing") == []
    assert headers.get_single("host") == "h"
    assert headers.get_single("missing") is None
    with pytest.raises(BadRequest):
        headers.get_single("x-thing")


def test_merged_headers_count_every_spelling_with_underscores() -> None:
    headers = Headers([(b"x-mode", b"a"), (b"X_Mode", b"b"), (b"x_mode_", b"c"), (b"host", b"h")])
    assert headers.get_merged("x-mode") == ["a", "b"]
    assert headers.get_merged("X_MODE") == ["a", "b"]
    assert headers.get_merged("host") == ["h"]
    assert headers.get_all("x-mode") == ["a"]


def test_headers_decode_latin1_without_failing() -> None:
    assert Headers([(b"x", b"\xff")])["x"] == "\xff"


def test_principal_speaks_starlette_user() -> None:
    user = Principal(subject="alice", roles=frozenset({"a"}))
    assert user.is_authenticated
    assert user.display_name == user.identity == "alice"
    assert not ANONYMOUS.is_authenticated
    assert ANONYMOUS.claims == {}


def test_context_from_http_scope() -> None:
    scope = http_scope(
        "/a//b/",
        method="POST",
        headers=[("Host", "API.example"), ("x-request-id", "rid-1")],
        query_string=b"q=1",
    )
    ctx = RequestContext.from_scope(scope)
    assert (ctx.method, ctx.path, ctx.transport) == ("POST", "/a/b", "http")
    assert ctx.host == "api.example"
    assert ctx.query_string == b"q=1"
    assert ctx.request_id == "rid-1"
    assert ctx.client == ctx.peer == "203.0.113.7"
    assert ctx.client_port == 40000
    assert ctx.principal is ANONYMOUS
    assert ctx.tools == ()
    assert "rid-1" in repr(ctx)
    assert ctx.elapsed_ms() >= 0


def test_context_without_client_or_raw_path() -> None:
    scope = http_scope("/x", client=None)
    del scope["raw_path"]
    ctx = RequestContext.from_scope(scope)
    assert ctx.client is None and ctx.raw_path == b"/x"


def test_context_loads_rpc_body() -> None:
    ctx = RequestContext.from_scope(
        http_scope("/mcp", headers=[("content-type", "application/json")])
    )
    ctx.load_body(
        b'[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a"}},'
        b'{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"b"}}]'
    )
    assert ctx.rpc_batch
    assert ctx.tools == ("a", "b")


@pytest.mark.parametrize(
    "name", ["mcp-session-id", "Mcp_Session_Id", "mcp_session-id", "MCP-SESSION_ID"]
)
def test_every_spelling_a_server_may_merge_counts_as_the_mcp_session_id(name: str) -> None:
    # WSGI/CGI-style servers read "_" as "-": an id under either spelling is bound.
    scope = http_scope("/mcp", headers=[(name, "abc"), ("mcp-session-id", "def")])
    assert RequestContext.from_scope(scope).mcp_sessions == ("abc", "def")


@pytest.mark.parametrize(
    ("headers", "problem"),
    [
        pytest.param(
            [("mcp_method", "tools/list")], "Mcp-Method mismatch", id="underscore-mismatch"
        ),
        pytest.param(
            [("mcp-method", "tools/call"), ("mcp_method", "tools/list")],
            "duplicate mcp-method",
            id="both-spellings",
        ),
        pytest.param([("mcp_name", "other")], "Mcp-Name mismatch", id="underscore-name"),
    ],
)
def test_mcp_headers_under_either_spelling_must_agree_with_the_body(
    headers: list[tuple[str, str]], problem: str
) -> None:
    ctx = RequestContext.from_scope(
        http_scope("/mcp", headers=[("content-type", "application/json"), *headers])
    )
    with pytest.raises(BadRequest, match=problem):
        ctx.load_body(b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a"}}')


def b64(text: str) -> str:
    return "=?base64?" + base64.b64encode(text.encode()).decode() + "?="


@pytest.mark.parametrize(
    ("method", "name", "problem"),
    [
        # The MCP SDK wraps a name that is not plain ASCII; its server decodes it.
        pytest.param("tools/call", b64("résumé"), None, id="wrapped-name"),
        pytest.param("tools/call", b64(" padded "), None, id="wrapped-edge-spaces"),
        pytest.param(b64("tools/call"), b64("résumé"), None, id="wrapped-method"),
        pytest.param("tools/call", b64("resume"), "Mcp-Name mismatch", id="wrapped-other-name"),
        pytest.param("tools/call", "=?base64?cuk=?=", "Mcp-Name mismatch", id="not-canonical"),
        pytest.param("tools/call", "=?base64?!!?=", "Mcp-Name mismatch", id="not-base64"),
        pytest.param("tools/call", b64("x")[:-2] + "/w==?=", "Mcp-Name mismatch", id="bad-utf8"),
    ],
)
def test_mcp_headers_in_the_sdks_base64_form_are_read_as_it_reads_them(
    method: str, name: str, problem: str | None
) -> None:
    ctx = RequestContext.from_scope(
        http_scope(
            "/mcp",
            headers=[
                ("content-type", "application/json"),
                ("mcp-method", method),
                ("mcp-name", name),
            ],
        )
    )
    body = '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"résumé"}}'
    if " padded " in name or name == b64(" padded "):
        body = body.replace("résumé", " padded ")
    if problem is None:
        ctx.load_body(body.encode())
        assert ctx.rpc[0].tool in ("résumé", " padded ")
    else:
        with pytest.raises(BadRequest, match=problem):
            ctx.load_body(body.encode())


def test_a_malformed_wrapped_name_never_matches_a_call_without_one() -> None:
    ctx = RequestContext.from_scope(
        http_scope(
            "/mcp", headers=[("content-type", "application/json"), ("mcp-name", "=?base64?!?=")]
        )
    )
    with pytest.raises(BadRequest, match="Mcp-Name mismatch"):
        ctx.load_body(b'{"jsonrpc":"2.0","id":1,"method":"tools/list"}')


def test_context_keeps_non_json_body_raw() -> None:
    ctx = RequestContext.from_scope(http_scope("/up", headers=[("content-type", "text/plain")]))
    ctx.load_body(b"hello")
    assert ctx.body == b"hello" and ctx.json is None and ctx.rpc == ()


def test_request_id_header_is_configurable() -> None:
    settings = ContextSettings(request_id_header="x-trace", trust_request_id=True)
    ctx = RequestContext.from_scope(http_scope("/", headers=[("X-Trace", "t.1:2")]), settings)
    assert ctx.request_id == "t.1:2"


def test_request_ids_differ_after_fork() -> None:
    before = new_request_id()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report its id's prefix and exit at once
        os.write(write, new_request_id().encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(read, 100).decode()
    os.close(read)
    os.close(write)
    assert child.split("-")[0] != before.split("-")[0]
