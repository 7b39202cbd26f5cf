"""What one kind of secret looks like: :class:`SecretType`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

Validator = Callable[[str], bool]


@dataclass(frozen=True, slots=True)
class SecretType:
    """One kind of secret; see the module docstring for the meaning of each field."""

    name: str
    anchors: tuple[str, ...]
    pattern: str
    max_len: int
    back: int = 0
    check: str | None = None
    before: str | None = None
    extent: str | None = None
    more: str | None = None
    chain: str | None = None
    validate: Validator | None = None
    ignore_case: bool = False
    priority: int = 60
    source: str = ""
    validation: str = ""
