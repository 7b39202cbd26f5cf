"""Credential places on websocket handshakes: header, bearer subprotocol, opt-in query."""

from __future__ import annotations

import pytest

from secmw.auth.bearer import (
    CredentialSettings,
    bearer_token,
    encode_subprotocol,
    strip_subprotocol,
)
from secmw.auth.build import check_credentials
from secmw.auth.composite import CompositeAuthenticator
from secmw.auth.jwt import JWTAuthenticator, key_from_jwk
from secmw.config import parse_config
from secmw.errors import AuthenticationError, ConfigError
from secmw.testing import TokenIssuer
from tests.auth_support import ctx_with, ws_ctx

TOKEN = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ1In0.c2ln"
QUERY = CredentialSettings(ws_query_token=True)


def test_subprotocol_token_is_read_on_websockets_only() -> None:
    entry = encode_subprotocol(TOKEN)
    assert entry.startswith("base64url.bearer.authorization.k8s.io.")
    assert bearer_token(ws_ctx(subprotocols=["mcp", entry])) == TOKEN
    assert bearer_token(ctx_with(subprotocols=["mcp", entry])) is None
    assert bearer_token(ws_ctx(subprotocols=[entry]), CredentialSettings(None)) is None


def test_same_token_in_header_and_subprotocol_is_fine_different_is_400() -> None:
    entry = encode_subprotocol(TOKEN)
    assert bearer_token(ws_ctx(("authorization", f"Bearer {TOKEN}"), subprotocols=[entry])) == TOKEN
    with pytest.raises(AuthenticationError, match="conflicting") as info:
        bearer_token(ws_ctx(("authorization", "Bearer other"), subprotocols=[entry]))
    assert info.value.status == 400


@pytest.mark.parametrize(
    "subprotocols",
    [
        pytest.param([encode_subprotocol(TOKEN), encode_subprotocol("x")], id="two-entries"),
        pytest.param(["base64url.bearer.authorization.k8s.io.!!"], id="not-base64url"),
        pytest.param(["base64url.bearer.authorization.k8s.io.A"], id="bad-length"),
        pytest.param([encode_subprotocol("a b")], id="not-a-b64token"),
        pytest.param(["base64url.bearer.authorization.k8s.io." + "_-8"], id="binary"),
    ],
)
def test_malformed_subprotocol_entries_are_400(subprotocols: list[str]) -> None:
    with pytest.raises(AuthenticationError) as info:
        bearer_token(ws_ctx(subprotocols=subprotocols))
    assert info.value.status == 400


def test_query_token_is_an_opt_in_for_websockets_only() -> None:
    query = f"access_token={TOKEN}".encode()
    with pytest.raises(AuthenticationError, match="query"):
        bearer_token(ws_ctx(query=query))
    with pytest.raises(AuthenticationError, match="query"):
        bearer_token(ctx_with(query=query), QUERY)
    assert bearer_token(ws_ctx(query=query), QUERY) == TOKEN
    assert bearer_token(ws_ctx(query=b"other=1"), QUERY) is None
    with pytest.raises(AuthenticationError, match="malformed"):
        bearer_token(ws_ctx(query=query + b"&access_token=x"), QUERY)
    with pytest.raises(AuthenticationError, match="conflicting"):
        bearer_token(ws_ctx(("authorization", "Bearer other"), query=query), QUERY)


def test_strip_subprotocol_keeps_real_ones_in_order() -> None:
    entry = encode_subprotocol(TOKEN)
    scope = {
        "subprotocols": ["a", entry, "b"],
        "headers": [
            (b"sec-websocket-protocol", f"a, {entry}, b".encode()),
            (b"sec-websocket-protocol", entry.encode()),
            (b"host", b"x"),
        ],
    }
    strip_subprotocol(scope, "base64url.bearer.authorization.k8s.io.")
    assert scope["subprotocols"] == ["a", "b"]
    assert scope["headers"] == [(b"sec-websocket-protocol", b"a, b"), (b"host", b"x")]


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("abc", True),
        ("a-b.c_d~e+f/g", True),
        ("abc==", True),
        ("=", False),
        ("", False),
        ("ab=c", False),
        ("a b", False),
        ("a\tb", False),
        ("caf\u00e9", False),
        ("a,b", False),
        ("!abc", False),
        ("abc!", False),
    ],
)
def test_b64token_alphabet(value: str, ok: bool) -> None:
    from secmw.auth.bearer import is_b64token

    assert is_b64token(value) is ok


class Opaque:
    """An authenticator of the app's own that says nothing of where it reads tokens."""

    async def authenticate(self, ctx: object) -> None:
        """Recognise nothing."""


K8S = CredentialSettings()
MY_PREFIX = CredentialSettings(ws_subprotocol_prefix="my.bearer.")


@pytest.mark.parametrize(
    ("websocket", "settings", "refused"),
    [
        pytest.param({}, K8S, [], id="defaults-agree"),
        pytest.param({"subprotocol_prefix": ""}, CredentialSettings(None), [], id="off-agree"),
        pytest.param({"subprotocol_prefix": ""}, CredentialSettings(""), [], id="off-as-empty"),
        pytest.param(
            {"subprotocol_prefix": ""}, K8S, ["websocket.subprotocol_prefix"], id="off-in-config"
        ),
        pytest.param(
            {"subprotocol_prefix": "my.bearer."},
            K8S,
            ["websocket.subprotocol_prefix"],
            id="other-prefix-in-config",
        ),
        pytest.param({}, MY_PREFIX, ["websocket.subprotocol_prefix"], id="other-prefix-in-code"),
        pytest.param({"query_token": True}, K8S, ["websocket.query_token"], id="query-in-config"),
        pytest.param({}, QUERY, ["websocket.query_token"], id="query-in-code"),
        pytest.param(
            {"subprotocol_prefix": "", "query_token": True},
            K8S,
            ["websocket.subprotocol_prefix", "websocket.query_token"],
            id="both",
        ),
    ],
)
def test_an_authenticator_must_read_tokens_where_auth_websocket_says(
    websocket: dict[str, object], settings: CredentialSettings, refused: list[str]
) -> None:
    issuer = TokenIssuer(algorithm="ES256")
    config = parse_config({"auth": {"websocket": websocket}}).auth
    jwt = JWTAuthenticator(
        [key_from_jwk(issuer.public_jwk)],
        issuer=issuer.issuer,
        audience=issuer.audience,
        credentials=settings,
    )
    for authenticator in (jwt, CompositeAuthenticator([Opaque(), jwt])):
        if not refused:
            check_credentials(config, authenticator)
            continue
        with pytest.raises(ConfigError) as info:
            check_credentials(config, authenticator)
        assert [issue.key for issue in info.value.issues] == refused
        assert "credential_settings(config.auth)" in str(info.value)


def test_an_authenticator_without_credential_settings_is_not_checked() -> None:
    config = parse_config({"auth": {"websocket": {"query_token": True}}}).auth
    check_credentials(config, Opaque())
