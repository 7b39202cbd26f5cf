"""The ``inspect`` section: defaults, validation, and the pipeline it builds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from secmw.config import build_pipeline, load_config, parse_config
from secmw.errors import ConfigError
from secmw.inspect import InspectConfig, PromptInjectionInspector


def test_absent_section_means_no_inspector() -> None:
    pipeline = build_pipeline(parse_config({}))
    assert pipeline.inspector is None
    assert not pipeline.needs_body


def test_empty_section_turns_on_deny_with_defaults() -> None:
    config = parse_config({"inspect": {}})
    assert config.inspect == InspectConfig()
    pipeline = build_pipeline(config)
    inspector = pipeline.inspector
    assert isinstance(inspector, PromptInjectionInspector)
    assert inspector.action == "deny"
    assert inspector.threshold == 0.7
    assert inspector.scan == {"tool_arguments", "prompt_arguments", "llm_messages"}
    assert inspector.scanner.max_chars == 262_144
    assert inspector.scanner.fail_closed
    assert pipeline.needs_body
    assert pipeline.fail_open == ()


def test_every_key_is_applied(tmp_path: Path) -> None:
    path = tmp_path / "secmw.toml"
    path.write_text(
        """
[inspect]
action = "audit"
threshold = 0.8
scan = ["tool_arguments"]
skip_tools = ["search_docs"]
max_chars = 4096
max_strings = 100
max_depth = 8
max_decode_depth = 1
quoted_discount = 1.0
fail_closed = false

[inspect.weights]
homoglyph = 0.0
role_token = 1.5
""",
        encoding="utf-8",
    )
    pipeline = build_pipeline(load_config(path))
    inspector = pipeline.inspector
    assert isinstance(inspector, PromptInjectionInspector)
    assert (inspector.action, inspector.threshold) == ("audit", 0.8)
    assert inspector.scan == {"tool_arguments"}
    assert inspector.skip_tools == {"search_docs"}
    assert (inspector.max_strings, inspector.max_depth) == (100, 8)
    scanner = inspector.scanner
    assert (scanner.max_chars, scanner.max_decode_depth) == (4096, 1)
    assert scanner.quoted_discount == 1.0
    assert scanner.scan("p\u0430ypal").score == 0.0
    assert pipeline.fail_open == ("inspect.fail_closed", "inspect.action")


@pytest.mark.parametrize(
    ("section", "key"),
    [
        pytest.param({"action": "block"}, "inspect.action", id="action"),
        pytest.param({"threshold": 0}, "inspect.threshold", id="threshold-zero"),
        pytest.param({"threshold": 1.5}, "inspect.threshold", id="threshold-high"),
        pytest.param({"scan": []}, "inspect.scan", id="scan-empty"),
        pytest.param({"scan": ["bodies"]}, "inspect.scan[0]", id="scan-unknown"),
        pytest.param({"max_chars": 10}, "inspect.max_chars", id="max-chars"),
        pytest.param({"max_decode_depth": 9}, "inspect.max_decode_depth", id="decode-depth"),
        pytest.param({"weights": {"nope": 1}}, "inspect.weights", id="weights-kind"),
        pytest.param({"weights": {"homoglyph": 3}}, "inspect.weights", id="weights-range"),
        pytest.param({"treshold": 0.5}, "inspect.treshold", id="typo"),
    ],
)
def test_invalid_values_name_their_key(section: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"inspect": section})
    assert key in [issue.key for issue in caught.value.issues]
