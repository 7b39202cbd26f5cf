"""``secmw policy explain``: the decision and the rules behind it, for a described request."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from secmw.context import Finding, Principal, RequestContext
from secmw.errors import ConfigError, Denial

_USAGE = """request description (JSON, or @FILE), for example:
  {"method": "POST", "path": "/mcp",
   "principal": {"sub": "alice", "roles": ["analyst"], "tenant": "t1", "acr": "urn:mfa"},
   "rpc": {"method": "tools/call", "tool": "delete_file", "arguments": {"path": "/etc"}},
   "headers": {"host": "api.example.com"}, "client": "10.1.2.3",
   "findings": [{"source": "inspect", "kind": "prompt_injection", "score": 0.9}]}
"principal": null (or absent) describes an anonymous request."""


def register(commands: Any) -> None:
    """Add ``policy explain`` to the ``secmw`` command line."""
    policy = commands.add_parser("policy", help="inspect the authorization policy")
    actions = policy.add_subparsers(dest="policy_command", required=True, metavar="ACTION")
    explain = actions.add_parser(
        "explain",
        help="show the decision and every rule's outcome for a described request",
        epilog=_USAGE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    explain.add_argument("--config", required=True, help="the configuration file")
    explain.add_argument("--request", required=True, help="the request, as JSON or @FILE")
    explain.add_argument("--json", action="store_true", help="print JSON instead of text")
    explain.set_defaults(handler=_explain)


def describe(data: Mapping[str, Any]) -> RequestContext:
    """A RequestContext for a request description (see the command's help)."""
    headers = [
        (str(k).lower().encode(), str(v).encode()) for k, v in (data.get("headers") or {}).items()
    ]
    body = None
    if "rpc" in data:
        rpc = data["rpc"]
        params: dict[str, Any] = {}
        if rpc.get("tool") is not None:
            params = {"name": rpc["tool"], "arguments": rpc.get("arguments") or {}}
        elif rpc.get("params") is not None:
            params = rpc["params"]
        body = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": rpc.get("method", "tools/call"),
            "params": params,
        }
    elif "body" in data:
        body = data["body"]
    if body is not None:
        headers.append((b"content-type", b"application/json"))
    path = str(data.get("path", "/"))
    scope = {
        "type": "http",
        "method": str(data.get("method", "POST" if body is not None else "GET")).upper(),
        "path": path,
        "raw_path": path.encode("utf-8", "surrogateescape"),
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": (str(data.get("client", "127.0.0.1")), 0),
    }
    ctx = RequestContext.from_scope(scope)
    if body is not None:
        ctx.load_body(json.dumps(body).encode())
    principal = data.get("principal")
    if principal:
        ctx.principal = _principal(principal)
    for finding in data.get("findings") or ():
        ctx.findings.append(
            Finding(
                str(finding.get("source", "inspect")),
                str(finding["kind"]),
                float(finding.get("score", 1.0)),
            )
        )
    return ctx


def _principal(data: Mapping[str, Any]) -> Principal:
    """The principal a token with these claims would give (the JWT path's own mapping)."""
    from secmw.auth.config import ClaimNames  # noqa: PLC0415 - keeps the CLI start fast
    from secmw.auth.jwt import principal_from_claims  # noqa: PLC0415

    claims = dict(data.get("claims") or {}) | {k: v for k, v in data.items() if k != "claims"}
    # Friendlier spellings the explain format has always accepted.
    if "subject" in claims and "sub" not in claims:
        claims["sub"] = claims["subject"]
    if "scopes" in claims and "scope" not in claims:
        claims["scope"] = claims["scopes"]
    claims.setdefault("sub", "user")
    return principal_from_claims(
        claims, ClaimNames(), auth_method=str(data.get("auth_method", "jwt")), credential_id=None
    )


_KEYS = frozenset({"method", "path", "principal", "rpc", "headers", "client", "findings", "body"})
_RPC_KEYS = frozenset({"method", "tool", "arguments", "params"})
_FINDING_KEYS = frozenset({"source", "kind", "score"})


def _load_request(text: str) -> Mapping[str, Any]:
    raw = Path(text[1:]).read_text(encoding="utf-8") if text.startswith("@") else text
    data = json.loads(raw)
    if not isinstance(data, dict):
        raise TypeError("the request description must be a JSON object")
    # A misspelt key ("pth", "principle") would explain some other request.
    _known("", data, _KEYS)
    rpc = data.get("rpc")
    if isinstance(rpc, dict):
        _known("rpc.", rpc, _RPC_KEYS)
    for index, finding in enumerate(data.get("findings") or ()):
        if isinstance(finding, dict):
            _known(f"findings[{index}].", finding, _FINDING_KEYS)
    return data


def _known(where: str, data: Mapping[str, Any], keys: frozenset[str]) -> None:
    unknown = sorted(set(data) - keys)
    if unknown:
        raise ValueError(f"unknown key {where}{unknown[0]!r} (known: {', '.join(sorted(keys))})")


def _explain(args: argparse.Namespace) -> int:
    from secmw.config import build_pipeline, load_config  # noqa: PLC0415 - cycle

    try:
        pipeline = build_pipeline(load_config(args.config), audit=None)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    try:
        ctx = describe(_load_request(args.request))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        print(f"cannot read the request description: {exc}", file=sys.stderr)
        return 2
    except Denial as denial:
        print(f"the request itself is refused before any rule: {denial.status} ({denial.reason})")
        return 0
    explain = getattr(pipeline.policy, "explain", None)
    if explain is None:
        decision = pipeline.policy.evaluate(ctx)
        traces: tuple[Any, ...] = ()
    else:
        explanation = explain(ctx)
        decision, traces = explanation.decision, explanation.traces
    if args.json:
        document = {
            "decision": decision.effect.value,
            "rule_ids": list(decision.rule_ids),
            "reason": decision.reason,
            "rules": [
                {"id": t.rule_id, "effect": t.effect, "applied": t.applied, "failed": t.failed}
                for t in traces
            ],
        }
        print(json.dumps(document, indent=2))
        return 0
    print(f"decision: {decision.effect.value} by {', '.join(decision.rule_ids)}: {decision.reason}")
    if decision.effect.value == "deny" and not ctx.principal.is_authenticated:
        print("  (anonymous: answered 401 with a challenge)")
    for trace in traces:
        status = "APPLIES" if trace.applied else f"no ({trace.failed})"
        print(f"  {trace.rule_id:32} {trace.effect:8} {status}")
    return 0
