"""The ``secret_redacted`` audit event: what was redacted from a response, never the values."""

from __future__ import annotations

from collections.abc import Sequence

from secmw.audit.base import AuditEvent
from secmw.context import Finding, RequestContext
from secmw.redact.redactor import SOURCE


def redaction_event(ctx: RequestContext, findings: Sequence[Finding]) -> AuditEvent | None:
    """One event per response that had secrets: counts by type, correlated by request id.

    Severity is ``warning``: the application was about to send a credential. The
    event holds type names, counts and fingerprints only.
    """
    counts: dict[str, int] = {}
    prints: set[str] = set()
    total = 0
    for finding in findings:
        if finding.source == SOURCE:
            total += 1
            counts[finding.kind] = counts.get(finding.kind, 0) + 1
            if finding.fingerprint:
                prints.add(finding.fingerprint)
    if not total:
        return None
    return AuditEvent(
        name="secret_redacted",
        outcome="success",
        severity="warning",
        request_id=ctx.request_id,
        transport=ctx.transport,
        method=ctx.method,
        path=ctx.path,
        client=ctx.client,
        subject=ctx.principal.subject or None,
        tenant=ctx.principal.tenant,
        status=ctx.status,
        details={
            "count": total,
            "types": dict(sorted(counts.items())) if len(counts) > 1 else counts,
            "fingerprints": sorted(prints)[:32],
        },
    )
