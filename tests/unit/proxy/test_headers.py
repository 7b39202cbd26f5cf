"""Credential stripping and hop-by-hop headers."""

from __future__ import annotations

import pytest

from secmw.proxy import HeaderFilter
from secmw.proxy.headers import encode_headers


def raw(*pairs: tuple[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.encode(), v.encode()) for k, v in pairs]


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("Authorization", id="authorization"),
        pytest.param("Cookie", id="cookie"),
        pytest.param("X-API-Key", id="x-api-key"),
        pytest.param("api-key", id="api-key"),
        pytest.param("Proxy-Authorization", id="proxy-authorization"),
        pytest.param("X-Amz-Security-Token", id="aws-session-token"),
        pytest.param("Connection", id="connection"),
        pytest.param("Keep-Alive", id="keep-alive"),
        pytest.param("TE", id="te"),
        pytest.param("Trailer", id="trailer"),
        pytest.param("Transfer-Encoding", id="transfer-encoding"),
        pytest.param("Upgrade", id="upgrade"),
        pytest.param("Host", id="host"),
        pytest.param("X-Forwarded-For", id="client-supplied-xff"),
        pytest.param("X-Forwarded-Host", id="client-supplied-xfh"),
        pytest.param("X-Real-IP", id="client-supplied-real-ip"),
        pytest.param("Forwarded", id="client-supplied-forwarded"),
        pytest.param("Content-Length", id="content-length"),
        pytest.param("X-HTTP-Method-Override", id="method-override"),
        pytest.param("X-Method-Override", id="method-override-short"),
        pytest.param("X-HTTP-Method", id="method"),
        pytest.param("X-Original-URL", id="original-url"),
        pytest.param("X-Rewrite-URL", id="rewrite-url"),
        pytest.param("X-Forwarded-Prefix", id="forwarded-prefix"),
    ],
)
def test_dropped_request_headers(name: str) -> None:
    out = HeaderFilter().request(raw((name, "secret"), ("accept", "x")))
    assert out == [(b"accept", b"x")]


def test_connection_named_fields_configured_headers_and_injection() -> None:
    headers = raw(
        ("connection", "close, X-Private"),
        ("x-private", "1"),
        ("x-tenant-secret", "2"),
        ("authorization", "Bearer client"),
        ("accept", "application/json"),
    )
    out = HeaderFilter(strip=["X-Tenant-Secret"]).request(
        headers,
        client="203.0.113.7",
        content_length=b"12",
        inject=encode_headers({"Authorization": "Bearer upstream"}),
    )
    assert out == [
        (b"accept", b"application/json"),
        (b"content-length", b"12"),
        (b"x-forwarded-for", b"203.0.113.7"),
        (b"authorization", b"Bearer upstream"),
    ]


def test_injected_header_replaces_a_client_header_of_the_same_name() -> None:
    out = HeaderFilter().request(
        raw(("x-upstream-key", "client")), inject=((b"x-upstream-key", b"mine"),)
    )
    assert out == [(b"x-upstream-key", b"mine")]


def test_response_headers_lose_hop_by_hop_and_configured_names() -> None:
    out = HeaderFilter(strip_response=["Set-Cookie"]).response(
        raw(
            ("content-type", "text/plain"),
            ("connection", "x-hop"),
            ("x-hop", "1"),
            ("transfer-encoding", "chunked"),
            ("set-cookie", "a=b"),
            ("content-language", "en"),
        )
    )
    assert out == [(b"content-type", b"text/plain"), (b"content-language", b"en")]


@pytest.mark.parametrize(
    ("lengths", "expected"),
    [
        pytest.param([b"5"], [b"5"], id="one"),
        pytest.param([b"5, 5"], [b"5"], id="list-of-equal"),
        pytest.param([b"5", b"5"], [b"5"], id="two-equal-lines"),
        pytest.param([b"5", b"6"], [], id="disagreeing"),
    ],
)
def test_upstream_content_length_reaches_the_client_as_one_value(
    lengths: list[bytes], expected: list[bytes]
) -> None:
    headers = [(b"content-type", b"text/plain"), *((b"content-length", v) for v in lengths)]
    out = HeaderFilter().response(headers)
    assert [v for n, v in out if n == b"content-length"] == expected
    assert (b"content-type", b"text/plain") in out


def test_an_upstream_content_length_next_to_transfer_encoding_is_dropped() -> None:
    # The relayed body is the de-chunked one: the declared length would cut or pad it.
    headers = [(b"transfer-encoding", b"chunked"), (b"content-length", b"3"), (b"x-a", b"1")]
    assert HeaderFilter().response(headers) == [(b"x-a", b"1")]


@pytest.mark.parametrize(
    "name", [b"X_Api_Key", b"x_forwarded_for", b"X-Auth_Token", b"Proxy_Authorization", b"x_custom"]
)
def test_an_underscore_spelling_of_a_dropped_header_is_dropped_too(name: bytes) -> None:
    # WSGI/CGI upstreams read X_Api_Key as X-Api-Key (both are HTTP_X_API_KEY).
    headers = HeaderFilter(strip=["X-Custom"]).request(
        [(name, b"secret"), (b"accept", b"*/*")], client="10.0.0.1"
    )
    assert (name, b"secret") not in headers and (b"accept", b"*/*") in headers
