"""Structural signals: chat-template role tokens, fake tool calls, exfiltration shapes.

These match on the ``base`` view (case-folded, punctuation kept). Each rule has a
cheap substring gate; its regex runs only when a gate is present in the text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class StructureRule:
    """A regex on the ``base`` view, run only when one of ``gates`` occurs in it.

    ``pre`` is a single character every gate contains, checked first (a C
    ``memchr``) so a text without it skips the gates altogether. With
    ``line_start`` a gate counts only at the start of a line. ``tokens`` gates on
    words of the ``words`` view instead of substrings.
    """

    id: str
    kind: str
    score: float
    regex: re.Pattern[str]
    gates: tuple[str, ...]
    quotable: bool = True
    pre: str = ""
    line_start: bool = False
    tokens: frozenset[str] = frozenset()


def _r(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.MULTILINE)


STRUCTURE_RULES = (
    StructureRule(
        "chat_template_token", "role_token", 0.85, _r(r"<\|[a-z_\u2581]{2,32}\|>"), ("<|",), pre="<"
    ),
    StructureRule("llama_inst", "role_token", 0.8, _r(r"\[/?inst\]"), ("inst]",), pre="]"),
    StructureRule("llama_sys", "role_token", 0.8, _r(r"<</?sys>>"), ("<<sys", "<</sys"), pre="<"),
    StructureRule(
        "turn_tag", "role_token", 0.8, _r(r"<(?:start|end)_of_turn>"), ("_of_turn>",), pre="<"
    ),
    StructureRule(
        "role_tag",
        "role_token",
        0.55,
        _r(
            r"</?(?:system|sys|system_prompt|system-prompt|instructions?|assistant|human|developer)(?:\s[^>\n]{0,60})?>"
        ),
        ("<s", "<i", "<a", "<h", "<d", "</"),
        pre="<",
    ),
    StructureRule(
        "tool_tag",
        "fake_tool_call",
        0.7,
        _r(
            r"</?(?:function_calls|function_call|tool_call|tool_calls|tool_use|tool_result|function_results|invoke|antml:[a-z_]+)\b"
        ),
        ("<f", "<t", "<i", "<a", "</"),
        pre="<",
    ),
    StructureRule(
        "markdown_role_header",
        "role_token",
        0.6,
        _r(
            r"^[ \t]*#{1,4}[ \t]*(?:system|system prompt|new instructions?|new system prompt"
            r"|admin instructions?|developer instructions?)[ \t]*:?[ \t]*$"
        ),
        ("#",),
        pre="#",
        line_start=True,
    ),
    StructureRule(
        "alpaca_header",
        "role_token",
        0.5,
        _r(r"^[ \t]*#{2,4}[ \t]*(?:instruction|response|input)[ \t]*:"),
        ("#",),
        pre="#",
        line_start=True,
    ),
    StructureRule(
        "transcript_turn",
        "role_token",
        0.45,
        _r(r"(?:^|\n)[ \t]*(?:human|assistant)[ \t]*:[ \t]*\S"),
        ("human:", "assistant:"),
        pre=":",
    ),
    StructureRule(
        "system_line",
        "role_token",
        0.7,
        _r(
            r"^[ \t]*\[?system(?:[ \t]+(?:prompt|message|override|instructions?|note|update))?\]?"
            r"[ \t]*:[ \t]*(?:you|ignore|disregard|new|from now|the assistant|the ai|as an ai"
            r"|override|forget)"
        ),
        ("system", "[system"),
        pre=":",
        line_start=True,
    ),
    StructureRule(
        "addressed_to_ai",
        "instruction_injection",
        0.7,
        _r(
            r"\b(?:for|to)[ \t]+(?:the|any|all|every)[ \t]+(?:ai|llm|assistant|ai assistant"
            r"|ai model|language model|chatbot|agent|ai agent)s?[ \t]*:"
        ),
        (
            "ai:",
            "llm:",
            "assistant:",
            "model:",
            "chatbot:",
            "agent:",
            "ais:",
            "assistants:",
            "agents:",
        ),
        pre=":",
    ),
    StructureRule(
        "markdown_system_inline",
        "role_token",
        0.6,
        _r(r"#{2,4}[ \t]*system[ \t]*:"),
        ("system",),
        pre="#",
    ),
    StructureRule(
        "transcript_both_roles",
        "role_token",
        0.75,
        _r(r"(?:^|\n)[ \t]*human[ \t]*:[\s\S]{0,4000}?\n[ \t]*assistant[ \t]*:"),
        ("human:",),
        pre=":",
    ),
    StructureRule(
        "role_switch_tags",
        "role_token",
        0.8,
        _r(r"</(?:user|human)>\s*<(?:system|assistant|developer)\b"),
        ("</user", "</human"),
        pre="<",
    ),
    StructureRule(
        "json_tool_call_object",
        "fake_tool_call",
        0.65,
        _r(r'"(?:tool_calls|function_call)"\s*:\s*\[?\s*\{\s*"(?:name|function|id|type)"'),
        ("_call",),
        pre="_",
    ),
    StructureRule(
        "pipe_to_shell",
        "dangerous_command",
        0.5,
        _r(
            r"\b(?:curl|wget)\b[^\n|]{0,200}\|\s*(?:sudo\s+)?(?:ba|z|da)?sh\b|\brm\s+-rf\s+(?:/|~)(?:\s|$)"
        ),
        ("curl", "wget", "rm -rf"),
    ),
    StructureRule(
        "json_role",
        "role_token",
        0.55,
        _r(r'"role"\s*:\s*"(?:system|developer|assistant|tool)"'),
        ('"role"',),
        pre='"',
    ),
    StructureRule(
        "json_tool_call",
        "fake_tool_call",
        0.55,
        _r(r'"(?:tool_calls|function_call|tool_use|tool_call)"\s*:'),
        ("_call", "tool_use"),
        pre="_",
    ),
    StructureRule(
        "json_call_shape",
        "fake_tool_call",
        0.5,
        _r(
            r'\{\s*"(?:name|tool|function|tool_name)"\s*:\s*"[^"\n]{1,64}"\s*,\s*"(?:arguments|parameters|input|args)"\s*:'
        ),
        ('"arguments"', '"parameters"', '"args"', '"input"'),
        pre='"',
    ),
    StructureRule(
        "markdown_image_exfil",
        "exfiltration",
        0.7,
        _r(
            r"!\[[^\]\n]{0,100}\]\(\s*https?://[^\s)]{1,300}[?&][^\s)=]{1,40}=[^\s)]*(?:\{|\$|%7b|\[|<)"
        ),
        ("](http",),
        quotable=False,
        pre="!",
    ),
    StructureRule(
        "sensitive_path",
        "sensitive_path",
        0.5,
        _r(
            r"\.ssh/(?:id_[a-z0-9]+|authorized_keys)|/etc/(?:passwd|shadow|sudoers)|\.aws/credentials|\.git-credentials|\.netrc\b|\.npmrc\b|\.pypirc\b|\.docker/config\.json|\.kube/config|(?:^|[\s/\"'`])\.env\b"
        ),
        (),
        quotable=False,
        tokens=frozenset(
            ("ssh", "etc", "aws", "git", "netrc", "npmrc", "pypirc", "docker", "kube", "env")
        ),
    ),
)

# Where exfiltrated data would go; its presence raises an exfiltration phrase's score.
DESTINATION = re.compile(
    r"https?://|\bwww\.|@[\w-]+\.[a-z]{2,}|webhook|ngrok|pastebin|requestbin|attacker"
)

__all__ = ["DESTINATION", "STRUCTURE_RULES", "StructureRule"]
