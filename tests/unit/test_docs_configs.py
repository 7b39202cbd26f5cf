"""Every secmw configuration shown in the README and docs is one secmw accepts.

A reader copies these blocks; a renamed key or a wrong value in one of them
would be refused at start-up. Blocks for other programs (Vector's own
``[sources...]``) are told apart by their top-level tables.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from secmw.config import Config

ROOT = Path(__file__).resolve().parents[2]
FOREIGN = {"sources", "transforms", "sinks"}  # Vector configuration, not ours


def blocks() -> list[tuple[str, str]]:
    files = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    found = []
    for path in files:
        text = path.read_text(encoding="utf-8")
        for match in re.finditer(r"```toml\n(.*?)```", text, re.DOTALL):
            line = text[: match.start()].count("\n") + 1
            found.append((f"{path.relative_to(ROOT)}:{line}", match.group(1)))
    return found


BLOCKS = blocks()


def test_the_docs_show_configurations() -> None:
    assert len(BLOCKS) >= 20


@pytest.mark.parametrize(("where", "block"), BLOCKS, ids=[where for where, _ in BLOCKS])
def test_every_toml_block_is_a_valid_configuration(where: str, block: str) -> None:
    data = tomllib.loads(block)
    if set(data) <= FOREIGN:
        return
    Config.model_validate(data)
