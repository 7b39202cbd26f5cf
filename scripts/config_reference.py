"""Generate docs/reference/configuration.md from the pydantic configuration models.

    python scripts/config_reference.py          # rewrite the file
    python scripts/config_reference.py --check  # exit 1 if the file is out of date

The generated page lists every key, its type and default, and the model's own
docstring, so the reference cannot drift from the code (a test runs --check).
"""

from __future__ import annotations

import argparse
import inspect
import sys
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from secmw.config import Config

TARGET = Path(__file__).resolve().parents[1] / "docs" / "reference" / "configuration.md"
HEADER = """# Configuration reference (generated)

Generated from the pydantic models by `python scripts/config_reference.py`; a test
fails when it is out of date. Every key, its type and its default; the meaning of
each key is explained on the component pages and in [configuration](../configuration.md).
Unknown keys are errors.
"""


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(arg) for arg in typing.get_args(annotation))
    if origin is typing.Literal:
        return " or ".join(repr(arg).replace("'", '"') for arg in typing.get_args(annotation))
    if origin in (list, tuple, set, frozenset):
        args = typing.get_args(annotation)
        return f"list of {_type_name(args[0])}" if args else "list"
    if origin is dict:
        key, value = typing.get_args(annotation)
        return f"table of {_type_name(key)} → {_type_name(value)}"
    if annotation is type(None):
        return "none"
    if inspect.isclass(annotation) and issubclass(annotation, BaseModel):
        return f"table ({annotation.__name__})"
    return getattr(annotation, "__name__", str(annotation))


def _default(field: Any) -> str:
    if field.default is not PydanticUndefined:
        value = field.default
    elif field.default_factory is not None:
        value = field.default_factory()
    else:
        return "**required**"
    if isinstance(value, BaseModel):
        return "(table defaults)"
    if value is None:
        return "absent"
    if isinstance(value, bool):
        return "true" if value else "false"
    return f"`{value!r}`".replace("'", '"')


def _models(annotation: Any) -> list[type[BaseModel]]:
    found: list[type[BaseModel]] = []
    if inspect.isclass(annotation) and issubclass(annotation, BaseModel):
        return [annotation]
    for arg in typing.get_args(annotation):
        found.extend(_models(arg))
    return found


def _section(model: type[BaseModel], key: str, seen: set[str], out: list[str]) -> None:
    title = f"`{key}`" if key else "top level"
    out.append(f"\n## {title}\n")
    doc = inspect.getdoc(model) or ""
    out.append(doc.splitlines()[0] + "\n" if doc else "")
    out.append("| key | type | default |\n|---|---|---|")
    nested: list[tuple[str, type[BaseModel]]] = []
    for name, field in model.model_fields.items():
        shown = field.alias or name
        out.append(f"| `{shown}` | {_type_name(field.annotation)} | {_default(field)} |")
        for inner in _models(field.annotation):
            origin = typing.get_origin(field.annotation)
            suffix = "[]" if origin is list or "list of" in _type_name(field.annotation) else ""
            if "table of" in _type_name(field.annotation):
                suffix = ".<name>"
            nested.append((f"{key}.{shown}{suffix}" if key else f"{shown}{suffix}", inner))
    for child_key, inner in nested:
        if child_key in seen:
            continue
        seen.add(child_key)
        _section(inner, child_key, seen, out)


def render() -> str:
    """The whole reference page."""
    out = [HEADER]
    _section(Config, "", set(), out)
    return "\n".join(out).rstrip() + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the file is out of date")
    args = parser.parse_args()
    text = render()
    if args.check:
        current = TARGET.read_text(encoding="utf-8") if TARGET.exists() else ""
        if current != text:
            print(f"{TARGET} is stale: run python scripts/config_reference.py", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
