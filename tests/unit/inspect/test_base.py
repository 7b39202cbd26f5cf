"""The switched-off inspector."""

from __future__ import annotations

from secmw.context import RequestContext
from secmw.inspect import NoInspector
from tests.support import http_scope


def test_no_inspector_finds_nothing_and_needs_no_body() -> None:
    inspector = NoInspector()
    assert not inspector.needs_body
    assert inspector.inspect(RequestContext.from_scope(http_scope("/"))) == ()
