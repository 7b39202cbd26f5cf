"""Strict JSON and JSON-RPC 2.0 body parsing for request inspection.

Different JSON parsers disagree on duplicate keys, ``NaN`` and deep nesting; a
security decision taken on one reading while the app acts on another is a bypass.
So a body that claims to be JSON is parsed strictly and refused (400) when any
parser could read it differently. MCP traffic is JSON-RPC: each call's method and,
for ``tools/call``, ``prompts/get`` and ``resources/read``, its target are pulled out
for the policy and the audit line.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from secmw.errors import BadRequest

# The most calls one JSON-RPC batch may carry (MCP itself dropped batching in 2025-06-18).
MAX_BATCH = 100

# Methods whose params name the thing being acted on, and the param that names it.
_TARGET_PARAM = {
    "tools/call": "name",
    "prompts/get": "name",
    "resources/read": "uri",
    "resources/subscribe": "uri",
    "resources/unsubscribe": "uri",
}


@dataclass(frozen=True, slots=True)
class RpcCall:
    """One JSON-RPC message of a request body.

    ``method`` is ``None`` for a response the client sends back to a server request.
    ``target`` is the tool or prompt name, or the resource URI, for the methods that
    name one; ``arguments`` are a ``tools/call``'s arguments (``{}`` when absent).
    """

    method: str | None
    id: str | int | None
    params: Mapping[str, Any] | list[Any] | None
    target: str | None = None
    arguments: Mapping[str, Any] | None = None

    @property
    def is_notification(self) -> bool:
        """True for a request without an ``id`` (no reply expected)."""
        return self.method is not None and self.id is None

    @property
    def tool(self) -> str | None:
        """The tool name of a ``tools/call``, else ``None``."""
        return self.target if self.method == "tools/call" else None


class _Duplicate(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise _Duplicate
    return result


class _Constant(ValueError):
    pass


def _no_constants(name: str) -> Any:
    raise _Constant(name)


def is_json_media_type(content_type: str | None) -> bool:
    """True when any reader could take the body for JSON by its ``Content-Type``.

    ``application/json`` and ``+json`` suffixes, also as one item of a
    comma-separated list (``application/json, text/plain``): servers such as the
    MCP SDK test each item of such a list.
    """
    if not content_type:
        return False
    for item in content_type.lower().split(","):
        media = item.split(";", 1)[0].strip()
        if media == "application/json" or media.endswith("+json"):
            return True
    return False


def parse_json_body(body: bytes, content_type: str | None) -> tuple[bool, Any]:
    """Parse a request body as strict JSON when it is, or claims to be, JSON.

    Returns ``(True, value)`` for a JSON body and ``(False, None)`` for a body that
    is not JSON. A body declared as JSON that does not parse strictly is a 400; an
    undeclared body that merely looks like JSON but does not parse is treated as
    not JSON, since no conforming app would read it as JSON either.
    """
    declared = is_json_media_type(content_type)
    if body[:1] in _UNUSUAL_START or body[1:2] == b"\x00":
        _refuse_other_encodings(body, declared)
    stripped = body.lstrip(b" \t\r\n")
    if not stripped:
        if declared and body:
            raise BadRequest("The JSON body is empty.", reason="blank JSON body")
        return False, None
    if not declared and stripped[:1] not in (b"{", b"["):
        return False, None
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        _refuse_surrogates(body, declared)
        return False, None
    try:
        value = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except _Duplicate:
        raise BadRequest(
            "The JSON body repeats a member name.", reason="duplicate JSON key"
        ) from None
    except _Constant:
        if declared:
            raise BadRequest("The JSON body is malformed.", reason="malformed JSON body") from None
        # Undeclared: Python's own json.loads (and so many apps) reads NaN and
        # Infinity, so a body it reads is judged as the JSON it is.
        try:
            return True, json.loads(text, object_pairs_hook=_no_duplicates)
        except _Duplicate:
            raise BadRequest(
                "The JSON body repeats a member name.", reason="duplicate JSON key"
            ) from None
        except RecursionError:
            if may_be_json(text):
                raise _too_deep() from None
            return False, None
        except ValueError:
            _refuse_long_integers(text)
            return False, None
    except RecursionError:
        if declared or may_be_json(text):
            raise _too_deep() from None
        return False, None
    except ValueError:
        if not declared:
            _refuse_long_integers(text)
            return False, None
        raise BadRequest("The JSON body is malformed.", reason="malformed JSON body") from None
    return True, value


def _refuse_long_integers(text: str) -> None:
    """400 for undeclared JSON that fails here only on an integer past Python's digit limit.

    ``json.loads`` refuses an integer of more than 4,300 digits; JavaScript's
    ``JSON.parse`` and Go's decoder read it, so an app behind secmw could act on a
    call no rule judged. Such a body is refused, as it is when declared as JSON.
    """
    try:
        json.loads(text, parse_int=str)
    except RecursionError:
        if not may_be_json(text):
            return
        raise _too_deep() from None
    except ValueError:
        return
    raise BadRequest(
        "The JSON body holds an integer too long to read.", reason="JSON integer too long"
    )


# A JSON string literal (what a parser skips over without reading brackets).
JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)


# What may precede a JSON document's first character: a UTF-8 BOM and JSON whitespace.
JSON_LEAD = "\ufeff \t\r\n"


def starts_like_json(text: str) -> bool:
    """True when ``text`` starts (after a BOM and JSON whitespace) like a JSON array or object."""
    return text.lstrip(JSON_LEAD)[:1] in ("{", "[")


def may_be_json(text: str) -> bool:
    """False when ``text`` cannot be JSON: its brackets outside strings do not pair up.

    For text the parser gave up on (too deep to know): any JSON text passes.
    """
    skeleton = JSON_STRING.sub("", text)
    return skeleton.count("[") == skeleton.count("]") and skeleton.count("{") == skeleton.count("}")


def _too_deep() -> BadRequest:
    """400 for JSON nested past what the parser reads here, declared as JSON or not.

    Where Python's parser gives up depends on how deep the call stack already is:
    an app parsing on a shallower stack could read (and act on) what secmw could
    not judge, so such a body is never passed as "not JSON" unless it cannot be.
    """
    return BadRequest("The JSON body is nested too deeply.", reason="JSON body too deep")


# A byte-order mark or a NUL among the first bytes: UTF-16/32 or UTF-8 with a BOM,
# which ``json.loads`` (and so many apps) decodes although it is not UTF-8 JSON.
_UNUSUAL_START = frozenset({b"\xef", b"\xfe", b"\xff", b"\x00"})


def _refuse_other_encodings(body: bytes, declared: bool) -> None:
    """400 for JSON in another encoding than plain UTF-8 (RFC 8259 section 8.1).

    Apps that parse such a body (``json.loads`` detects the encoding) would act on
    JSON that secmw could not inspect; anything else is left to the usual checks.
    """
    encoding = json.detect_encoding(body)
    if encoding == "utf-8":
        return
    try:
        json.loads(body.decode(encoding))
    except (ValueError, RecursionError):
        if not declared:
            return
    raise BadRequest(
        "The JSON body must be UTF-8 without a byte-order mark.", reason="JSON body not UTF-8"
    )


def _refuse_surrogates(body: bytes, declared: bool) -> None:
    """400 for a body that is not UTF-8 when declared JSON or when Python reads it as JSON.

    ``json.loads`` decodes bytes with ``surrogatepass``, so an app reads JSON with a
    UTF-8-encoded surrogate (``ED A0 80``) that secmw cannot decode, whatever the
    ``Content-Type`` (the MCP SDK takes any type that starts with ``application/json``).
    """
    if not declared:
        try:
            json.loads(body)
        except (ValueError, RecursionError):
            return
    raise BadRequest("The JSON body is not valid UTF-8.", reason="JSON body not UTF-8")


# The MCP SDK's wrapping of a header value that is not plain printable ASCII.
_BASE64_HEADER = re.compile(r"=\?base64\?(.*)\?=", re.DOTALL)


def mcp_header_value(value: str) -> str | None:
    """An ``Mcp-Method``/``Mcp-Name`` value as the MCP SDK reads it; ``None`` when malformed.

    The SDK sends a name that is not plain printable ASCII (``résumé``, edge
    spaces) as ``=?base64?<UTF-8 in canonical base64>?=`` and its server decodes
    it before comparing with the body; anything else is the value as written.
    """
    match = _BASE64_HEADER.fullmatch(value)
    if match is None:
        return value
    payload = match.group(1)
    try:
        decoded = base64.b64decode(payload, validate=True)
        if base64.b64encode(decoded).decode("ascii") != payload:
            return None  # not canonical: the SDK's encoder never writes it
        return decoded.decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None


def rpc_calls(value: Any) -> tuple[tuple[RpcCall, ...], bool] | None:
    """Extract the JSON-RPC calls of a parsed body: ``(calls, is_batch)`` or ``None``.

    A body is JSON-RPC when it is an object, or a non-empty array of objects,
    carrying a ``jsonrpc`` member. Malformed JSON-RPC is refused, not ignored: a
    policy cannot judge a call whose method it cannot read.
    """
    if isinstance(value, dict):
        if "jsonrpc" not in value:
            return None
        return (_call(value),), False
    if isinstance(value, list):
        if len(value) > MAX_BATCH and any(isinstance(item, dict) for item in value):
            # Each call is judged, counted and keyed on its own: an unbounded batch
            # would multiply the work (and the rate-limit keys) of one request.
            raise BadRequest(
                f"The JSON-RPC batch has more than {MAX_BATCH} calls.",
                reason="JSON-RPC batch too large",
            )
        if not value or not all(isinstance(item, dict) for item in value):
            if any(isinstance(item, dict) and "jsonrpc" in item for item in value):
                raise BadRequest("The JSON-RPC batch is malformed.", reason="bad JSON-RPC batch")
            return None
        if not any("jsonrpc" in item for item in value):
            return None
        return tuple(_call(item) for item in value), True
    return None


def _call(message: Mapping[str, Any]) -> RpcCall:
    if message.get("jsonrpc") != "2.0":
        raise _bad("jsonrpc member is not '2.0'")
    ident = message.get("id")
    if ident is not None and (isinstance(ident, bool) or not isinstance(ident, (str, int))):
        raise _bad("JSON-RPC id is neither string nor integer")
    method = message.get("method")
    params = message.get("params")
    if method is None:
        if "result" not in message and "error" not in message:
            raise _bad("JSON-RPC message has no method, result or error")
        return RpcCall(None, ident, None)
    if not isinstance(method, str) or not method:
        raise _bad("JSON-RPC method is not a non-empty string")
    if params is not None and not isinstance(params, (dict, list)):
        raise _bad("JSON-RPC params are neither object nor array")
    target_param = _TARGET_PARAM.get(method)
    if target_param is None:
        return RpcCall(method, ident, params)
    if not isinstance(params, dict):
        raise _bad(f"{method} params are not an object")
    target = params.get(target_param)
    if not isinstance(target, str):
        raise _bad(f"{method} params.{target_param} is not a string")
    arguments: Mapping[str, Any] | None = None
    if method == "tools/call":
        raw_arguments = params.get("arguments", {})
        if raw_arguments is None:
            raw_arguments = {}
        if not isinstance(raw_arguments, dict):
            raise _bad("tools/call arguments are not an object")
        arguments = raw_arguments
    return RpcCall(method, ident, params, target, arguments)


def _bad(reason: str) -> BadRequest:
    return BadRequest("The JSON-RPC request is malformed.", reason=reason)
