"""Segment-aware path globs and name globs, against a reference matcher."""

from __future__ import annotations

import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secmw.policy.glob import GlobError, compile_name_glob, compile_path_glob


def reference(pattern: str, path: str) -> bool:
    """A direct recursive matcher over segments: the specification."""
    want = [] if pattern == "/" else pattern.split("/")[1:]
    have = [] if path == "/" else path.split("/")[1:]

    def seg(p: str, s: str) -> bool:
        if not p:
            return not s
        if p[0] == "*":
            return any(seg(p[1:], s[i:]) for i in range(len(s) + 1))
        return bool(s) and p[0] == s[0] and seg(p[1:], s[1:])

    def walk(i: int, j: int) -> bool:
        if i == len(want):
            return j == len(have)
        if want[i] == "**":
            return any(walk(i + 1, k) for k in range(j, len(have) + 1))
        return j < len(have) and seg(want[i], have[j]) and walk(i + 1, j + 1)

    return walk(0, 0)


@pytest.mark.parametrize(
    ("pattern", "path", "matches"),
    [
        pytest.param("/admin/**", "/admin", True, id="double-star-includes-base"),
        pytest.param("/admin/**", "/admin/a/b", True, id="double-star-below"),
        pytest.param("/admin/**", "/administrator", False, id="not-a-prefix-match"),
        pytest.param("/admin/**", "/x/admin", False, id="anchored"),
        pytest.param("/a/*/c", "/a/b/c", True, id="star-one-segment"),
        pytest.param("/a/*/c", "/a/b/x/c", False, id="star-never-crosses-slash"),
        pytest.param("/a/*", "/a", False, id="star-needs-a-segment"),
        pytest.param("/files/*.txt", "/files/a.txt", True, id="star-in-segment"),
        pytest.param("/files/*.txt", "/files/dir/a.txt", False, id="star-in-segment-no-cross"),
        pytest.param("/**", "/", True, id="everything-root"),
        pytest.param("/**", "/a/b", True, id="everything"),
        pytest.param("/", "/", True, id="root"),
        pytest.param("/", "/a", False, id="root-only"),
        pytest.param("/a/**/z", "/a/z", True, id="middle-double-star-zero"),
        pytest.param("/a/**/z", "/a/b/c/z", True, id="middle-double-star-many"),
        pytest.param("/a.b", "/aXb", False, id="dot-is-literal"),
        pytest.param("/t/{tenant}/x", "/t/acme/x", True, id="param"),
    ],
)
def test_path_globs(pattern: str, path: str, matches: bool) -> None:
    assert (compile_path_glob(pattern).match(path) is not None) is matches


def test_parameters_are_captured() -> None:
    glob = compile_path_glob("/t/{tenant}/u/{user}/**")
    assert glob.match("/t/acme/u/bob/files/1") == {"tenant": "acme", "user": "bob"}
    assert glob.first_segment == "t"
    assert glob.params == ("tenant", "user")
    assert compile_path_glob("/{x}/a").first_segment is None
    assert compile_path_glob("/**").first_segment is None


@pytest.mark.parametrize(
    "pattern",
    [
        "admin",
        "/admin/",
        "/a//b",
        "/a/./b",
        "/a/../b",
        "/a**",
        "/a/b**c",
        "/a/{1x}",
        "/a/{x",
        "/a/?",
        "/a/[ab]",
        "/{x}/{x}",
        "/{x}{y}",  # two wildcards in a row: where one ends is anybody's guess
        "/{x}*",
        "/*{x}.csv",
    ],
)
def test_bad_path_globs(pattern: str) -> None:
    with pytest.raises(GlobError):
        compile_path_glob(pattern)


SEGMENTS = st.sampled_from(["a", "b", "ab", "admin", "x.y", "a-b", "a-b-a", "-", "b-"])
PATTERN_SEGMENTS = st.sampled_from(
    ["a", "b", "*", "a*", "*b", "**", "admin", "*-*", "a*-*b", "*-*-*", "-*a*-", "*b*"]
)


@settings(max_examples=400, deadline=None)
@given(
    st.lists(PATTERN_SEGMENTS, min_size=0, max_size=4),
    st.lists(SEGMENTS, min_size=0, max_size=5),
)
def test_path_globs_agree_with_the_reference(
    pattern_parts: list[str], path_parts: list[str]
) -> None:
    pattern = "/" + "/".join(pattern_parts)
    path = "/" + "/".join(path_parts)
    try:
        glob = compile_path_glob(pattern)
    except GlobError:
        return
    assert (glob.match(path) is not None) is reference(pattern, path), (pattern, path)


@pytest.mark.parametrize(
    ("pattern", "name", "matches"),
    [
        pytest.param("read_*", "read_file", True, id="prefix"),
        pytest.param("read_*", "xread_file", False, id="anchored"),
        pytest.param("*", "anything/at.all", True, id="everything"),
        pytest.param("tools/?ist", "tools/list", True, id="one-char"),
        pytest.param("a.b", "aXb", False, id="dot-literal"),
    ],
)
def test_name_globs(pattern: str, name: str, matches: bool) -> None:
    assert (compile_name_glob(pattern).fullmatch(name) is not None) is matches


def name_reference(pattern: str, name: str) -> bool:
    if not pattern:
        return not name
    if pattern[0] == "*":
        return any(name_reference(pattern[1:], name[i:]) for i in range(len(name) + 1))
    return bool(name) and pattern[0] in ("?", name[0]) and name_reference(pattern[1:], name[1:])


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet="ab_*?", min_size=1, max_size=7), st.text(alphabet="ab_", max_size=9))
def test_name_globs_agree_with_the_reference(pattern: str, name: str) -> None:
    assert (compile_name_glob(pattern).fullmatch(name) is not None) is name_reference(
        pattern, name
    ), (pattern, name)


def test_parameters_capture_what_a_router_captures() -> None:
    # Left to right, each takes the longest run that lets the rest match (Starlette,
    # Django and werkzeug do the same): the app serves tenant "acme-globex" here.
    glob = compile_path_glob("/exports/{tenant}-{name}.csv")
    assert glob.match("/exports/acme-globex-q3.csv") == {"tenant": "acme-globex", "name": "q3"}
    assert glob.match("/exports/acme.csv") is None
    spread = compile_path_glob("/**/t/{tenant}/**")
    assert spread.match("/a/t/one/t/two/x") == {"tenant": "two"}


def greedy_reference(pattern: str) -> re.Pattern[str]:
    """The backtracking regex of before: greedy, so the first wildcard takes the most."""
    parts = []
    for segment in [] if pattern == "/" else pattern.split("/")[1:]:
        if segment == "**":
            parts.append("(?:/[^/]+)*")
            continue
        escaped = re.escape(segment).replace(r"\*", "[^/]*")
        parts.append("/(?=[^/])" + re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", escaped))
    return re.compile("".join(parts))


@settings(max_examples=500, deadline=None)
@given(
    st.lists(st.sampled_from(["t", "*", "**", "{a}-x", "{b}-{c}", "*-{d}.e"]), max_size=4),
    st.lists(st.sampled_from(["t", "x", "a-x", "a-b-x", "q-r.e", "-x", "a-b"]), max_size=5),
)
def test_captures_agree_with_the_greedy_regex_of_before(
    pattern_parts: list[str], path_parts: list[str]
) -> None:
    pattern = "/" + "/".join(pattern_parts)
    path = "/" + "/".join(path_parts)
    try:
        glob = compile_path_glob(pattern)
    except GlobError:
        return
    expected = greedy_reference(pattern).fullmatch("" if path == "/" else path)
    found = glob.match(path)
    assert (found is None) is (expected is None), (pattern, path)
    if expected is not None:
        assert found == expected.groupdict(), (pattern, path)


def test_long_paths_and_names_do_not_make_matching_backtrack() -> None:
    # Each took seconds to hours before (nested wildcards backtracked polynomially);
    # now every one is linear. The bound only catches a hang.
    cases = [
        (compile_path_glob("/reports/*-*-*.csv").matches, "/reports/" + "-" * 20_000),
        (compile_path_glob("/r/{a}-{b}-{c}.csv").matches, "/r/" + "a-" * 10_000),
        (compile_path_glob("/**/*a*/**/*b*/**/q").matches, "/a-b" * 5_000 + "/a/b"),
        (compile_name_glob("*_*_*_delete").fullmatch, "_" * 100_000),
    ]
    started = time.monotonic()
    for match, subject in cases:
        assert not match(subject)
    assert time.monotonic() - started < 5.0


def test_bad_name_globs() -> None:
    with pytest.raises(GlobError):
        compile_name_glob("")
    with pytest.raises(GlobError):
        compile_name_glob("[ab]")
    assert compile_name_glob("API.*", case_insensitive=True).fullmatch("api.example.com")
