"""canonical_path: one spelling per resource, or BadRequest."""

from __future__ import annotations

import pytest

from secmw._paths import canonical_path, route_path
from secmw.errors import BadRequest


@pytest.mark.parametrize(
    ("path", "raw", "root", "expected"),
    [
        pytest.param("/", None, "", "/", id="root"),
        pytest.param("", None, "", "/", id="empty"),
        pytest.param("/a/b/", None, "", "/a/b", id="trailing-slash"),
        pytest.param("//a///b", None, "", "/a/b", id="slashes"),
        pytest.param("/a/./b/.", None, "", "/a/b", id="dots"),
        pytest.param("/a/../b", None, "", "/b", id="dot-dot"),
        pytest.param("/a/b;x=1/c;y", None, "", "/a/b/c", id="matrix"),
        pytest.param("/a/..;/b", None, "", "/b", id="dot-dot-matrix"),
        pytest.param("/api/x", b"/api/x", "/api", "/x", id="root-path"),
        pytest.param("/api", b"/api", "/api", "/", id="root-path-itself"),
        pytest.param("/apix/y", b"/apix/y", "/api", "/apix/y", id="root-path-not-a-segment"),
        pytest.param("/api/x", b"/api/x", "/api/", "/x", id="root-path-trailing-slash"),
        pytest.param("/other", b"/other", "/api", "/other", id="outside-root-path"),
        pytest.param("/caf\u00e9", b"/caf%C3%A9", "", "/caf\u00e9", id="utf8"),
        pytest.param("/a%2Fb", b"/a%252Fb", "", None, id="double-encoded-slash"),
        pytest.param("/a.b/c-d_e~f", None, "", "/a.b/c-d_e~f", id="plain-punctuation"),
        pytest.param("/...", None, "", "/...", id="three-dots-is-a-name"),
    ],
)
def test_canonical_forms(path: str, raw: bytes | None, root: str, expected: str | None) -> None:
    if expected is None:
        with pytest.raises(BadRequest):
            canonical_path(path, raw, root)
    else:
        assert canonical_path(path, raw, root) == expected


@pytest.mark.parametrize(
    ("path", "raw", "reason"),
    [
        pytest.param("/a/b", b"/a%2Fb", "encoded slash in path", id="encoded-slash"),
        pytest.param("/a\\b", b"/a%5cb", "encoded slash in path", id="encoded-backslash"),
        pytest.param(
            "/files/report;v2.txt",
            b"/files/report%3Bv2.txt",
            "encoded semicolon in path",
            id="encoded-semicolon",
        ),
        pytest.param("/a\\b", b"/a\\b", "backslash in path", id="raw-backslash"),
        pytest.param(
            "/a\\b", None, "control character or backslash in path", id="decoded-backslash"
        ),
        pytest.param("/a\x00", b"/a%00", "encoded NUL in path", id="nul"),
        pytest.param("/a\x7f", None, "control character or backslash in path", id="del"),
        pytest.param("/a\x85b", b"/a%C2%85b", "control character or backslash in path", id="nel"),
        pytest.param("/a\x9b", None, "control character or backslash in path", id="c1-csi"),
        pytest.param("/a\x80", None, "control character or backslash in path", id="c1-first"),
        pytest.param("/\ufffd", b"/%ff", "path is not UTF-8", id="invalid-utf8-raw"),
        pytest.param("/\ufffd", None, "path is not UTF-8", id="replacement-char"),
        pytest.param("/\udcff", None, "path is not UTF-8", id="lone-surrogate"),
        pytest.param("/%61", None, "double-encoded path", id="double-encoded"),
        pytest.param("/..", None, "path climbs above the root", id="climb"),
        pytest.param("x/y", None, "path is not absolute", id="relative"),
        pytest.param("*", None, "path is not absolute", id="asterisk-form"),
    ],
)
def test_refused_paths_name_their_reason(path: str, raw: bytes | None, reason: str) -> None:
    with pytest.raises(BadRequest) as info:
        canonical_path(path, raw)
    assert info.value.reason == reason
    assert info.value.status == 400
    assert info.value.detail == "The request path is not valid."


def test_relaxations_are_opt_in() -> None:
    assert canonical_path("/a/b", b"/a%2Fb", allow_encoded_slash=True) == "/a/b"
    assert canonical_path("/%61", None, allow_double_encoding=True) == "/%61"


def test_query_string_in_raw_path_is_ignored() -> None:
    assert canonical_path("/a", b"/a?x=%2F") == "/a"


def test_route_path_mirrors_starlette() -> None:
    from starlette._utils import get_route_path

    for path, root in [
        ("/api/x", "/api"),
        ("/api", "/api"),
        ("/apix", "/api"),
        ("/x", ""),
        ("/x", "/api"),
    ]:
        assert route_path(path, root) == get_route_path({"path": path, "root_path": root})
