"""Reading bearer tokens from requests (RFC 6750 section 2)."""

from __future__ import annotations

import pytest

from secmw.auth import NoAuthenticator, bearer_token
from secmw.context import RequestContext
from secmw.errors import AuthenticationError
from tests.support import http_scope


def ctx(*headers: tuple[str, str], query: bytes = b"") -> RequestContext:
    return RequestContext.from_scope(http_scope("/", headers=headers, query_string=query))


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        pytest.param([("authorization", "Bearer abc.def.ghi")], "abc.def.ghi", id="plain"),
        pytest.param([("authorization", "bearer   abc")], "abc", id="case-and-spaces"),
        pytest.param([("authorization", "Bearer abc==")], "abc==", id="padding"),
        pytest.param([("authorization", "Basic dXNlcjpwYXNz")], None, id="other-scheme"),
        pytest.param([], None, id="absent"),
    ],
)
def test_accepted_forms(headers: list[tuple[str, str]], expected: str | None) -> None:
    assert bearer_token(ctx(*headers)) == expected


@pytest.mark.parametrize(
    ("headers", "query"),
    [
        pytest.param(
            [("authorization", "Bearer a"), ("authorization", "Bearer b")], b"", id="two-headers"
        ),
        pytest.param([("authorization", "Bearer")], b"", id="empty"),
        pytest.param([("authorization", "Bearer a b")], b"", id="two-tokens"),
        pytest.param([("authorization", "Bearer a\tb")], b"", id="tab"),
        pytest.param([("authorization", 'Bearer a"b')], b"", id="quote"),
        pytest.param([("authorization", "Bearer ab=c")], b"", id="inner-padding"),
        pytest.param([], b"access_token=abc", id="query-token"),
        pytest.param([], b"x=1&access_token=", id="query-token-empty"),
        pytest.param([("authorization", "Bearer abc")], b"access_token=abc", id="query-and-header"),
    ],
)
def test_refused_forms_are_invalid_request(headers: list[tuple[str, str]], query: bytes) -> None:
    with pytest.raises(AuthenticationError) as info:
        bearer_token(ctx(*headers, query=query))
    assert info.value.error == "invalid_request"
    assert info.value.status == 400


def test_lookalike_query_parameter_is_fine() -> None:
    assert bearer_token(ctx(query=b"my_access_tokens=1")) is None


@pytest.mark.anyio
async def test_no_authenticator_recognises_nothing() -> None:
    assert await NoAuthenticator().authenticate(ctx(("authorization", "Bearer x"))) is None
