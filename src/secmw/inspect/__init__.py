"""Request inspection (prompt injection and other signals)."""

from secmw.inspect.base import Inspector, NoInspector

__all__ = ["Inspector", "NoInspector"]
