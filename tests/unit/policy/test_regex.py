"""Rule regexes: refused when invalid, too long, or prone to catastrophic backtracking."""

from __future__ import annotations

import pytest

from secmw.policy.regex import UnsafeRegexError, compile_rule_regex


@pytest.mark.parametrize(
    "pattern",
    [
        pytest.param("(a+)+$", id="classic"),
        pytest.param(r"(\w*\s?)*", id="word-space"),
        pytest.param("(.*)*", id="dot-star-star"),
        pytest.param("(x+x+)+y", id="two-inner"),
        pytest.param(r"^(([a-z])+.)+[A-Z]([a-z])+$", id="owasp-example"),
        pytest.param(r"(?:a{1,100})+", id="large-bounded-inside-unbounded"),
        pytest.param(r"(?=(a+)+)b", id="inside-lookahead"),
        # The parser factors "x" out of both branches: x(?:a|.), ambiguous behind it.
        pytest.param(r"^(?:xa|x.)*$", id="factored-prefix"),
        pytest.param(r"^(?:q(?:a|ab))+$", id="nested-alternation"),
        pytest.param("[", id="invalid"),
        pytest.param("a" * 600, id="too-long"),
    ],
)
def test_unsafe_or_invalid_patterns_are_refused(pattern: str) -> None:
    with pytest.raises(UnsafeRegexError):
        compile_rule_regex(pattern)


@pytest.mark.parametrize(
    "pattern",
    [
        r"^[a-z]+@corp\.example$",
        "prod|staging",
        "^/etc/",
        "(foo|bar)+",
        r"\d{1,3}(\.\d{1,3}){3}",
        "(a|b)*c",
        r"^sk-[A-Za-z0-9]{20,}$",
    ],
)
def test_ordinary_patterns_compile(pattern: str) -> None:
    assert compile_rule_regex(pattern).pattern == pattern
