"""The inspection stage's protocol and its switched-off default."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from secmw.context import Finding, RequestContext


class Inspector(Protocol):
    """Protocol: look at a request (and its body) and report findings.

    An inspector only reports; the policy decides what a finding means. Set
    ``needs_body`` to have the adapter buffer and parse the request body first.
    """

    needs_body: bool

    def inspect(self, ctx: RequestContext) -> Sequence[Finding]:
        """Return the findings for ``ctx`` (empty when nothing is suspicious)."""
        ...


class NoInspector:
    """Finds nothing and needs no body."""

    __slots__ = ()
    needs_body = False

    def inspect(self, ctx: RequestContext) -> Sequence[Finding]:
        """Return no findings."""
        return ()
