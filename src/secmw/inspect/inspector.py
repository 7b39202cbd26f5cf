"""The request-phase prompt-injection inspector and the denials it raises.

:class:`PromptInjectionInspector` reads the parsed body the adapter hands it
(``needs_body = True``) and scans the strings an LLM will read:

* ``tool_arguments``: every string (and long key) inside the ``arguments`` of each
  MCP ``tools/call`` in the body, batches included;
* ``prompt_arguments``: the ``arguments`` of each MCP ``prompts/get``;
* ``llm_messages``: a non-JSON-RPC JSON object shaped like an LLM API request -
  OpenAI Chat Completions (``messages[].content``, string or parts, ``tool_calls``),
  OpenAI Responses (``input``, ``instructions``), legacy completions
  (``prompt``), Anthropic Messages (``system``, ``messages[].content`` blocks,
  ``tool_result`` content). Keys holding media or ids (``image_url``, ``source``,
  ``data``, ``id``, ...) are skipped.

It then acts on the combined score: ``deny`` raises
:class:`PromptInjectionDetected` (403, audit event ``malicious_prompt_injection``),
``flag`` only returns the findings for the policy, ``audit`` also puts the signals
on the request's audit event. Findings are returned in every mode.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from secmw.context import Finding, RequestContext
from secmw.errors import Denial
from secmw.inspect.results import Budget, ScanState, combine
from secmw.inspect.scanner import PromptInjectionScanner
from secmw.inspect.walk import scan_tree

Action = Literal["deny", "flag", "audit"]
SCAN_TARGETS = ("tool_arguments", "prompt_arguments", "llm_messages")
# Top-level members of LLM API requests that carry text a model reads.
LLM_TEXT_KEYS = ("system", "instructions", "messages", "input", "prompt")
# Members inside them that hold media, ids or markup, never model-read prose.
LLM_SKIP_KEYS = frozenset(
    (
        "image_url",
        "source",
        "data",
        "input_audio",
        "file",
        "file_id",
        "b64_json",
        "id",
        "tool_call_id",
        "tool_use_id",
        "type",
        "role",
        "signature",
        "cache_control",
    )
)
AUDIT_KEY = "audit_details"
_MAX_RULES_IN_AUDIT = 16


class PromptInjectionDetected(Denial):
    """The request carries text scored as prompt injection (403)."""

    status = 403
    title = "Forbidden"
    event = "malicious_prompt_injection"

    def __init__(self, score: float, signals: Sequence[str], *, threshold: float) -> None:
        self.score = score
        self.signals: tuple[str, ...] = tuple(signals)
        super().__init__(
            "The request was refused by content inspection.",
            reason=f"prompt injection score {score:.2f} >= {threshold:.2f}: {', '.join(signals)}",
        )


class InspectionIncomplete(Denial):
    """The body exceeds what the inspector scans, and the inspector fails closed (413)."""

    status = 413
    title = "Content Too Large"
    event = "input_validation_fail"

    def __init__(self, why: str) -> None:
        super().__init__(
            "The request is too large to be inspected.",
            reason=f"prompt-injection inspection incomplete: {why}",
        )


class PromptInjectionInspector:
    """Scores the model-bound text of a request and denies, flags or audits it.

    Built once; :meth:`inspect` keeps its state in locals and in ``ctx``. The
    scan is bounded per request by the scanner's ``max_chars`` (characters,
    decoded payloads included), ``max_strings`` and ``max_depth``; past a bound
    the rest is not scanned and a ``scan_limit`` finding is added, which in
    ``deny`` mode with a fail-closed scanner refuses the request (413).
    """

    __slots__ = ("action", "max_depth", "max_strings", "scan", "scanner", "skip_tools", "threshold")
    needs_body = True

    def __init__(
        self,
        scanner: PromptInjectionScanner | None = None,
        *,
        threshold: float = 0.7,
        action: Action = "deny",
        scan: Sequence[str] = SCAN_TARGETS,
        skip_tools: Sequence[str] = (),
        max_strings: int = 4096,
        max_depth: int = 32,
    ) -> None:
        unknown = set(scan) - set(SCAN_TARGETS)
        if unknown:
            raise ValueError(f"unknown scan target(s): {', '.join(sorted(unknown))}")
        if action not in ("deny", "flag", "audit"):
            raise ValueError(f"unknown action {action!r}")
        self.scanner = scanner if scanner is not None else PromptInjectionScanner()
        self.threshold = threshold
        self.action = action
        self.scan = frozenset(scan)
        self.skip_tools = frozenset(skip_tools)
        self.max_strings = max_strings
        self.max_depth = max_depth

    def inspect(self, ctx: RequestContext) -> Sequence[Finding]:
        """Scan the request's model-bound text; raise a Denial in ``deny`` mode."""
        budget = Budget(self.scanner.max_chars)
        findings: list[Finding] = []
        for source, value, path, skip in self._texts(ctx):
            state = ScanState(source, budget)
            scan_tree(
                self.scanner,
                state,
                value,
                path,
                max_strings=self.max_strings,
                max_depth=self.max_depth,
                skip_keys=skip,
            )
            findings.extend(state.findings)
            if budget.exhausted:
                break
        if not findings:
            return ()
        score = combine(findings)
        signals = tuple(sorted({f.kind for f in findings}))
        summary = Finding("inspect", "prompt_injection", score, detail=",".join(signals))
        result = (*findings, summary)
        if self.action == "audit" and score >= self.threshold:
            self._audit(ctx, score, signals, findings)
        if self.action != "deny":
            return result
        limit = next((f for f in findings if f.kind == "scan_limit" and f.score > 0), None)
        if limit is not None:
            ctx.findings.extend(result)
            raise InspectionIncomplete(limit.detail or "limit reached")
        if score >= self.threshold:
            ctx.findings.extend(result)
            self._audit(ctx, score, signals, findings)
            raise PromptInjectionDetected(score, signals, threshold=self.threshold)
        return result

    def _audit(
        self, ctx: RequestContext, score: float, signals: Sequence[str], findings: list[Finding]
    ) -> None:
        """Put the signals (never the text) on the request's audit event."""
        rules = [f.detail for f in findings if f.detail][:_MAX_RULES_IN_AUDIT]
        details = ctx.state.setdefault(AUDIT_KEY, {})
        details["prompt_injection"] = {
            "score": score,
            "threshold": self.threshold,
            "action": self.action,
            "signals": list(signals),
            "rules": [rule[:128] for rule in rules],
        }

    def _texts(self, ctx: RequestContext) -> list[tuple[str, Any, str, frozenset[str]]]:
        """The (source, value, path, keys to skip) pieces of the body to scan."""
        pieces: list[tuple[str, Any, str, frozenset[str]]] = []
        none: frozenset[str] = frozenset()
        if ctx.rpc:
            for number, call in enumerate(ctx.rpc):
                # In a batch the path names the message too: "[1].arguments.query".
                path = f"[{number}].arguments" if ctx.rpc_batch else "arguments"
                if call.method == "tools/call" and "tool_arguments" in self.scan:
                    if call.target in self.skip_tools or not call.arguments:
                        continue
                    pieces.append(("tool_arguments", call.arguments, path, none))
                elif call.method == "prompts/get" and "prompt_arguments" in self.scan:
                    params = call.params if isinstance(call.params, Mapping) else {}
                    arguments = params.get("arguments")
                    if arguments:
                        pieces.append(("prompt_arguments", arguments, path, none))
        # An LLM request with a "jsonrpc" member added is JSON-RPC to the parser, and
        # still a chat to an OpenAI-compatible server, which ignores the member.
        body = ctx.json
        if "llm_messages" in self.scan and isinstance(body, Mapping):
            for key in LLM_TEXT_KEYS:
                value = body.get(key)
                if value:
                    pieces.append(("llm_messages", value, key, LLM_SKIP_KEYS))
        return pieces


__all__ = [
    "InspectionIncomplete",
    "PromptInjectionDetected",
    "PromptInjectionInspector",
]
