"""What a component must be, and what it must answer: checked at construction and per call.

A custom component that breaks the protocol fails closed and clearly: a
``TypeError`` when the :class:`~secmw.pipeline.Pipeline` is built, or its stage's
503 when it answers the wrong type.
"""

from __future__ import annotations

import inspect
from typing import Any, TypeVar

from secmw.errors import Denial

_T = TypeVar("_T")


def check_audit_sink(audit: object) -> None:
    """Refuse (``TypeError``) an audit sink that cannot work: a class, no async ``emit``.

    Run by :class:`Pipeline`, and by the anomaly stage before it wraps the sink.
    """
    check_component("audit", audit, (("emit", True), ("aclose", True)))


def check_component(role: str, component: object, methods: tuple[tuple[str, bool], ...]) -> None:
    """A clear error at construction for a component that cannot work (not per request)."""
    if component is None:
        return
    if isinstance(component, type):
        raise TypeError(f"{role}: pass an instance of {component.__name__}, not the class")
    for name, wanted_async in methods:
        method = getattr(component, name, None)
        if method is None and name == "aclose":
            continue  # optional: a sink with nothing to close
        if not callable(method):
            raise TypeError(f"{role}: {type(component).__name__} has no {name}() method")
        # The method that will be called, as it is (a wrapper decides, not what it wraps).
        is_async = inspect.iscoroutinefunction(method)
        plain = inspect.isfunction(getattr(method, "__func__", method))
        # Only plain functions are judged: a mock or a callable object may await either way.
        if wanted_async and not is_async and plain:
            raise TypeError(f"{role}: {type(component).__name__}.{name} must be async def")
        if not wanted_async and is_async:
            raise TypeError(f"{role}: {type(component).__name__}.{name} must not be async def")


def checked(value: Any, kind: type[_T], method: str) -> _T:
    """``value`` when it is a ``kind``; a custom component's wrong answer fails its stage."""
    if not isinstance(value, kind):
        raise TypeError(f"{method} returned {type(value).__name__}, not {kind.__name__}")
    return value


def sole_denial(exc: Exception) -> Denial | None:
    """The one Denial an exception group carries (a component's own task group raised it)."""
    if not isinstance(exc, BaseExceptionGroup):
        return None
    leaves: list[BaseException] = []
    pending: list[BaseException] = [exc]
    while pending:
        current = pending.pop()
        if isinstance(current, BaseExceptionGroup):
            pending.extend(current.exceptions)
        else:
            leaves.append(current)
    if len(leaves) == 1 and isinstance(leaves[0], Denial):
        return leaves[0]
    return None


__all__ = ["check_audit_sink", "check_component", "checked", "sole_denial"]
