"""Strict JSON and JSON-RPC extraction."""

from __future__ import annotations

import pytest

from secmw._jsonrpc import is_json_media_type, parse_json_body, rpc_calls
from secmw.errors import BadRequest


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("application/json", True, id="json"),
        pytest.param("Application/JSON; charset=utf-8", True, id="case-and-params"),
        pytest.param("application/problem+json", True, id="suffix"),
        pytest.param("text/plain", False, id="text"),
        pytest.param(None, False, id="none"),
        pytest.param("application/jsonx", False, id="lookalike"),
        pytest.param("application/jsonl", False, id="json-lines"),
        # Servers that test each item of a list (the MCP SDK) read this as JSON.
        pytest.param("application/json, text/plain", True, id="list"),
        pytest.param("text/plain, application/vnd.x+json", True, id="list-suffix"),
        pytest.param("text/plain, text/html", False, id="list-of-others"),
    ],
)
def test_json_media_types(value: str | None, expected: bool) -> None:
    assert is_json_media_type(value) is expected


def test_undeclared_non_json_is_left_alone() -> None:
    assert parse_json_body(b"hello", "text/plain") == (False, None)
    assert parse_json_body(b"{broken", "text/plain") == (False, None)
    assert parse_json_body(b"", "application/json") == (False, None)


def test_declared_blank_json_is_refused() -> None:
    with pytest.raises(BadRequest):
        parse_json_body(b"   ", "application/json")


def test_undeclared_json_is_still_read() -> None:
    assert parse_json_body(b' {"a": 1}', None) == (True, {"a": 1})


def test_duplicate_keys_are_refused_even_when_undeclared() -> None:
    with pytest.raises(BadRequest, match="duplicate JSON key"):
        parse_json_body(b'{"a": {"b": 1, "b": 2}}', None)


@pytest.mark.parametrize("constant", [b"NaN", b"Infinity", b"-Infinity"])
def test_non_standard_constants_are_refused(constant: bytes) -> None:
    with pytest.raises(BadRequest):
        parse_json_body(b'{"a": ' + constant + b"}", "application/json")


def test_single_call_with_tool_and_arguments() -> None:
    calls, batch = rpc_calls(
        {
            "jsonrpc": "2.0",
            "id": 7,
            "method": "tools/call",
            "params": {"name": "search", "arguments": {"q": "x"}},
        }
    ) or ((), False)
    assert not batch
    assert calls[0].method == "tools/call"
    assert calls[0].tool == "search"
    assert calls[0].arguments == {"q": "x"}
    assert not calls[0].is_notification


def test_batch_notifications_responses_and_resources() -> None:
    found = rpc_calls(
        [
            {"jsonrpc": "2.0", "method": "notifications/initialized"},
            {"jsonrpc": "2.0", "id": "a", "result": {}},
            {"jsonrpc": "2.0", "id": 2, "method": "resources/read", "params": {"uri": "file:///x"}},
            {
                "jsonrpc": "2.0",
                "id": 3,
                "method": "tools/call",
                "params": {"name": "t", "arguments": None},
            },
        ]
    )
    assert found is not None
    calls, batch = found
    assert batch
    assert calls[0].is_notification
    assert calls[1].method is None
    assert calls[2].target == "file:///x"
    assert calls[2].tool is None
    assert calls[3].arguments == {}


@pytest.mark.parametrize(
    "value",
    [
        pytest.param({"a": 1}, id="plain-object"),
        pytest.param([1, 2], id="plain-array"),
        pytest.param([], id="empty-array"),
        pytest.param("text", id="string"),
        pytest.param([{"a": 1}], id="array-of-plain-objects"),
    ],
)
def test_non_rpc_json_is_not_rpc(value: object) -> None:
    assert rpc_calls(value) is None


@pytest.mark.parametrize(
    "value",
    [
        pytest.param({"jsonrpc": "1.0", "method": "x"}, id="version"),
        pytest.param({"jsonrpc": "2.0", "method": ""}, id="empty-method"),
        pytest.param({"jsonrpc": "2.0", "method": "x", "id": True}, id="bool-id"),
        pytest.param({"jsonrpc": "2.0", "method": "x", "id": 1.5}, id="float-id"),
        pytest.param({"jsonrpc": "2.0", "method": "x", "params": 3}, id="scalar-params"),
        pytest.param({"jsonrpc": "2.0", "id": 1}, id="neither-request-nor-response"),
        pytest.param(
            {"jsonrpc": "2.0", "method": "tools/call", "params": []}, id="tool-params-array"
        ),
        pytest.param(
            {"jsonrpc": "2.0", "method": "tools/call", "params": {"name": ["a"]}},
            id="tool-name-list",
        ),
        pytest.param(
            {"jsonrpc": "2.0", "method": "tools/call", "params": {"name": "a", "arguments": "x"}},
            id="arguments-string",
        ),
        pytest.param(
            {"jsonrpc": "2.0", "method": "resources/read", "params": {}}, id="resource-without-uri"
        ),
        pytest.param([{"jsonrpc": "2.0", "method": "x"}, 5], id="batch-with-scalar"),
    ],
)
def test_malformed_rpc_is_refused(value: object) -> None:
    with pytest.raises(BadRequest):
        rpc_calls(value)


_DOCUMENT = '{"jsonrpc": "2.0", "id": 1, "method": "tools/call"}'


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"\xef\xbb\xbf" + _DOCUMENT.encode(), id="utf-8-bom"),
        pytest.param(_DOCUMENT.encode("utf-16"), id="utf-16-bom"),
        pytest.param(_DOCUMENT.encode("utf-16-le"), id="utf-16-le"),
        pytest.param(_DOCUMENT.encode("utf-16-be"), id="utf-16-be"),
        pytest.param(_DOCUMENT.encode("utf-32"), id="utf-32"),
    ],
)
@pytest.mark.parametrize("content_type", [None, "application/json"])
def test_json_in_another_encoding_is_refused_not_skipped(
    body: bytes, content_type: str | None
) -> None:
    # json.loads(bytes) reads all of these, so an app would act on a body that
    # would otherwise pass as "not JSON" without inspection.
    with pytest.raises(BadRequest, match="UTF-8"):
        parse_json_body(body, content_type)


def test_binary_that_only_looks_like_another_encoding_is_left_alone() -> None:
    assert parse_json_body(b"\x00\x01\x02\x03binary", None) == (False, None)
    assert parse_json_body(b"\xff\xd8\xff\xe0 a jpeg", None) == (False, None)


@pytest.mark.parametrize("body", [b'{"a": NaN}', b"[Infinity]", b"[" * 5000 + b"]" * 5000])
def test_declared_json_only_a_lenient_parser_reads_is_refused(body: bytes) -> None:
    with pytest.raises(BadRequest):
        parse_json_body(body, "application/json, text/plain")


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/octet-stream"])
def test_undeclared_json_with_nan_is_judged_as_the_json_python_reads(
    content_type: str | None,
) -> None:
    # json.loads (so any app calling it) reads NaN: the body must be seen, not skipped.
    found, value = parse_json_body(b'{"jsonrpc": "2.0", "id": 1, "x": NaN}', content_type)
    assert found and value["jsonrpc"] == "2.0"
    with pytest.raises(BadRequest, match="duplicate"):
        parse_json_body(b'{"a": NaN, "a": 1}', content_type)


DEEP = b"[" * 5000 + b"]" * 5000


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/jsonx"])
@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'{"jsonrpc": "2.0", "method": "admin/wipe", "x": ' + DEEP + b"}", id="deep"),
        # Brackets inside strings do not count when telling JSON from text.
        pytest.param(b'["]]]", ' + DEEP + b"]", id="brackets-in-a-string"),
        pytest.param(b'{"a": NaN, "b": ' + DEEP + b"}", id="deep-with-nan"),
    ],
)
def test_undeclared_json_too_deep_to_read_is_refused_not_skipped(
    body: bytes, content_type: str | None
) -> None:
    # Where json.loads gives up depends on the stack: an app parsing on a shallower
    # one (a worker thread) reads the call secmw could not judge.
    with pytest.raises(BadRequest, match="JSON body too deep"):
        parse_json_body(body, content_type)


LONG = b"1" + b"0" * 5000  # past json.loads' 4,300-digit limit; JSON.parse, pydantic read it


@pytest.mark.parametrize("content_type", [None, "text/plain; x=application/json"])
@pytest.mark.parametrize(
    "body",
    [
        pytest.param(
            b'{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "admin",'
            b' "_meta": {"n": ' + LONG + b"}}}",
            id="long-integer",
        ),
        pytest.param(b'{"a": NaN, "b": ' + LONG + b"}", id="long-integer-with-nan"),
        pytest.param(b"[" + LONG + b", " + DEEP + b"]", id="long-integer-then-deep"),
    ],
)
def test_undeclared_json_with_an_integer_python_refuses_is_refused_not_skipped(
    body: bytes, content_type: str | None
) -> None:
    with pytest.raises(BadRequest, match=r"JSON (integer too long|body too deep)"):
        parse_json_body(body, content_type)
    assert parse_json_body(b"[" + LONG + b" rows", content_type) == (False, None)


@pytest.mark.parametrize(
    "body",
    [
        b"[NaN] rows were dropped",
        b"[Infinity Ward](https://x)",
        b"[" * 5000 + b" text",
        b'["]", ' + b"[" * 5000 + b"]" * 4999,
    ],
)
def test_text_that_merely_starts_like_json_is_not_refused(body: bytes) -> None:
    assert parse_json_body(body, "text/plain") == (False, None)
    assert parse_json_body(b"{}\n{}\n", "application/jsonl") == (False, None)


@pytest.mark.parametrize("content_type", [None, "application/json-rpc", "application/json"])
def test_json_with_an_encoded_surrogate_is_refused(content_type: str | None) -> None:
    # json.loads(bytes) decodes with surrogatepass and reads this call; strict
    # UTF-8 does not, so it must not pass as "not JSON".
    body = b'{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "x": "\xed\xa0\x80"}'
    with pytest.raises(BadRequest, match="UTF-8"):
        parse_json_body(body, content_type)


def test_undeclared_binary_that_is_not_json_is_left_alone() -> None:
    assert parse_json_body(b'{"a": "\xff\xfe"}', "application/octet-stream") == (False, None)
    assert parse_json_body(b"[\xed\xa0\x80", None) == (False, None)


def test_a_batch_over_the_limit_is_refused() -> None:
    call = {"jsonrpc": "2.0", "method": "tools/call", "params": {"name": "t"}}
    calls, _ = rpc_calls([{**call, "id": n} for n in range(100)]) or ((), False)
    assert len(calls) == 100
    with pytest.raises(BadRequest, match="too large"):
        rpc_calls([{**call, "id": n} for n in range(101)])
