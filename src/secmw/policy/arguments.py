"""Tool arguments as the tool receives them: the conversions servers make first.

The MCP SDK parses a string argument that holds a JSON array or object (or
``null``) for any parameter not declared as a string, and validates with
pydantic's lax mode, which reads ``"true"`` as ``True`` and ``" 5 "`` as 5. A
condition on a tool argument must judge every value the tool may end up with.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from secmw._jsonrpc import may_be_json
from secmw.policy.base import MISSING, Undecidable

# Strings servers read as other types before a tool runs (pydantic's lax mode).
_TRUE = frozenset({"true", "t", "yes", "y", "on", "1"})
_FALSE = frozenset({"false", "f", "no", "n", "off", "0"})
_NUMBER_TYPES = (int, float)


def lax_equal(value: Any, expected: Any, *, loose: bool = False) -> bool:
    """``value`` equals ``expected`` as the tool may receive it.

    Same type and value, or a value a server converts to ``expected``: pydantic
    (lax, as the MCP SDK validates arguments) reads ``"true"``, ``"yes"`` or ``1``
    as ``True`` and ``"5"`` or ``5.0`` as ``5``; it never turns a number into a string.
    """
    kind = type(expected)
    if type(value) is kind:
        return bool(value == expected)
    if kind is bool:
        if type(value) is str:
            return value.lower() in (_TRUE if expected else _FALSE)
        return type(value) in _NUMBER_TYPES and value == expected
    if kind in _NUMBER_TYPES:
        if type(value) in (*_NUMBER_TYPES, bool):
            return bool(value == expected)
        if type(value) is str:
            return _numeric_text_equals(value, expected, loose=loose)
    return False


# Longer numeric strings are not read loosely (Decimal of a huge exponent is slow);
# the exact integer reading below still applies to them.
_MAX_NUMBER_TEXT = 4096

# An integer as pydantic reads one from a string: surrounding whitespace, a sign,
# any number of leading zeros, single "_" between digits, and a zero fraction ("5.0").
_INTEGER_TEXT = re.compile(r"([+-]?)([0-9]+(?:_[0-9]+)*)(?:\.0+)?")


def _numeric_text_equals(text: str, expected: float, *, loose: bool = False) -> bool:
    """``text`` read as pydantic reads a number for a field of ``expected``'s type.

    ``loose`` also counts the readings of a ``float`` or ``Decimal`` parameter
    (exponents, rounding, any Unicode digits): the rule's number does not say how
    the tool declares it.
    """
    stripped = text.strip()
    if loose and len(stripped) <= _MAX_NUMBER_TEXT:
        try:
            if float(stripped) == expected or Decimal(stripped) == expected:
                return True
        except (ValueError, ArithmeticError):
            pass
    if type(expected) is int:
        match = _INTEGER_TEXT.fullmatch(stripped)
        if match is None:
            return False
        sign, digits = match.groups()
        digits = digits.replace("_", "").lstrip("0") or "0"
        # Compared exactly, and never built when longer than the expected number.
        if len(digits) > len(str(abs(expected))):
            return False
        return int(sign + digits) == expected
    try:
        return float(stripped) == expected  # Python's float reads what pydantic's does
    except ValueError:
        return False


# A string holding JSON is decoded up to this size; a longer one makes the rule undecidable.
_MAX_DECODED = 64 * 1024


def _decoded(text: str) -> Any:
    """The JSON array, object or ``null`` a string holds (as servers pre-parse it), else MISSING."""
    stripped = text.lstrip()
    if not stripped.startswith(("[", "{", "null")):
        return MISSING
    if len(text) > _MAX_DECODED:
        raise Undecidable("a tool argument holds JSON too long to decode")
    try:
        value = json.loads(text)
    except RecursionError:
        if may_be_json(text):  # a server parsing on a shallower stack may read it
            raise Undecidable("a tool argument holds JSON nested too deeply") from None
        return MISSING
    except ValueError:
        return MISSING
    return value if value is None or isinstance(value, (list, dict)) else MISSING


def argument_readings(arguments: Any, pointer: str) -> list[Any]:
    """The values at ``pointer`` as the tool may receive them.

    The MCP SDK parses a string argument that holds a JSON array or object (or
    ``null``) into that value for any parameter not declared as a string, so a
    step into a string reads the JSON it holds, and a string at the end counts
    both as itself and as what it decodes to.
    """
    value = arguments
    steps = pointer[1:].split("/") if pointer else []
    for raw in steps:
        step = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(value, str):
            value = _decoded(value)
        if isinstance(value, Mapping):
            value = value.get(step, MISSING)
        elif isinstance(value, list) and step.isdigit() and (step == "0" or step[0] != "0"):
            index = int(step)
            value = value[index] if index < len(value) else MISSING
        else:
            return [MISSING]
        if value is MISSING:
            return [MISSING]
    if isinstance(value, str):
        decoded = _decoded(value)
        if decoded is not MISSING:
            return [value, decoded]
    return [value]


__all__ = ["argument_readings", "lax_equal"]
