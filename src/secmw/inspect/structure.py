"""Structural signals: chat-template role tokens, fake tool calls, exfiltration shapes.

These match on the ``base`` view (case-folded, punctuation kept). Each rule has
cheap gates, checked in this order, and its regex runs only when all pass:
``pre``, one character that must occur (a C ``memchr``); ``tokens``, words of
which one must occur in the ``words`` view (a set lookup); ``gates``, substrings
of which one must occur (at the start of a line when ``line_start``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from secmw.inspect.normalize import WORD_TABLE


@dataclass(frozen=True, slots=True)
class StructureRule:
    """A regex on the ``base`` view behind cheap gates (see the module docstring)."""

    id: str
    kind: str
    score: float
    regex: re.Pattern[str]
    pre: str = ""
    tokens: frozenset[str] = frozenset()
    gates: tuple[str, ...] = ()
    line_start: bool = False
    quotable: bool = True
    line_gates: tuple[str, ...] = field(init=False, default=())

    def __post_init__(self) -> None:
        # The gates as they appear at the start of a line (after a newline).
        object.__setattr__(self, "line_gates", tuple(f"\n{gate}" for gate in self.gates))


def _r(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.MULTILINE)


def _t(text: str) -> frozenset[str]:
    """Gate words, folded like the ``words`` view (``tool_calls`` reads ``tool caiis``)."""
    return frozenset(text.translate(WORD_TABLE).split())


STRUCTURE_RULES = (
    StructureRule(
        "chat_template_token",
        "role_token",
        0.85,
        _r(r"<\|[a-z_\u2581]{2,32}\|>"),
        "<",
        gates=("<|",),
    ),
    StructureRule(
        "llama_inst",
        "role_token",
        0.8,
        _r(r"(?:^|[\s>])\[inst\][ \t]+\S|\[/inst\]"),
        "]",
        _t("inst"),
    ),
    StructureRule("llama_sys", "role_token", 0.8, _r(r"<</?sys>>"), "<", _t("sys")),
    StructureRule(
        "turn_tag", "role_token", 0.8, _r(r"<(?:start|end)_of_turn>"), "<", gates=("_of_turn>",)
    ),
    StructureRule(
        "role_tag",
        "role_token",
        0.55,
        _r(
            r"</?(?:system|sys|system_prompt|system-prompt|instructions?|assistant|human|developer)"
            r"(?:\s[^>\n]{0,60})?>"
        ),
        "<",
        _t("system sys instruction instructions assistant human developer"),
    ),
    StructureRule(
        "role_switch_tags",
        "role_token",
        0.8,
        _r(r"</(?:user|human)>\s*<(?:system|assistant|developer)\b"),
        "<",
        gates=("</user", "</human"),
    ),
    StructureRule(
        "tool_tag",
        "fake_tool_call",
        0.7,
        _r(
            r"</?(?:function_calls|function_call|tool_call|tool_calls|tool_use|tool_result"
            r"|function_results|invoke|antml:[a-z_]+)\b"
        ),
        "<",
        _t("function tool invoke antml"),
    ),
    StructureRule(
        "markdown_role_header",
        "role_token",
        0.6,
        _r(
            r"^[ \t]*#{1,4}[ \t]*(?:system|system prompt|new instructions?|new system prompt"
            r"|admin instructions?|developer instructions?)[ \t]*:?[ \t]*$"
        ),
        "#",
        gates=("#",),
        line_start=True,
    ),
    StructureRule(
        "markdown_system_inline",
        "role_token",
        0.6,
        _r(r"#{2,4}[ \t]*system[ \t]*:"),
        "#",
        _t("system"),
    ),
    StructureRule(
        "alpaca_header",
        "role_token",
        0.5,
        _r(r"^[ \t]*#{2,4}[ \t]*(?:instruction|response|input)[ \t]*:"),
        "#",
        gates=("#",),
        line_start=True,
    ),
    StructureRule(
        "transcript_turn",
        "role_token",
        0.45,
        _r(r"(?:^|\n)[ \t]*(?:human|assistant)[ \t]*:[ \t]*\S"),
        ":",
        _t("human assistant"),
    ),
    StructureRule(
        "transcript_both_roles",
        "role_token",
        0.75,
        # An "Assistant:" turn in a text that also has a "Human:" turn (a linear check;
        # matching the pair in order with one regex is quadratic on repeated turns).
        _r(r"^[ \t]*assistant[ \t]*:"),
        ":",
        _t("assistant"),
        gates=("human:",),
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
        ":",
        _t("system"),
        gates=("system", "[system"),
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
        ":",
        _t("ai ais llm llms assistant assistants model models chatbot chatbots agent agents"),
    ),
    StructureRule(
        "json_role",
        "role_token",
        0.55,
        _r(r'"role"\s*:\s*"(?:system|developer|assistant|tool)"'),
        '"',
        gates=('"role"',),
    ),
    StructureRule(
        "json_tool_call",
        "fake_tool_call",
        0.55,
        _r(r'"(?:tool_calls|function_call|tool_use|tool_call)"\s*:'),
        '"',
        _t("tool function"),
    ),
    StructureRule(
        "json_tool_call_object",
        "fake_tool_call",
        0.65,
        _r(r'"(?:tool_calls|function_call)"\s*:\s*\[?\s*\{\s*"(?:name|function|id|type)"'),
        '"',
        _t("tool function"),
    ),
    StructureRule(
        "json_call_shape",
        "fake_tool_call",
        0.5,
        _r(
            r'\{\s*"(?:name|tool|function|tool_name)"\s*:\s*"[^"\n]{1,64}"\s*,\s*'
            r'"(?:arguments|parameters|input|args)"\s*:'
        ),
        '"',
        _t("arguments parameters input args"),
    ),
    StructureRule(
        "pipe_to_shell",
        "dangerous_command",
        0.5,
        _r(
            r"\b(?:curl|wget)\b[^\n|]{0,200}\|\s*(?:sudo\s+)?(?:ba|z|da)?sh\b|\brm\s+-rf\s+(?:/|~)(?:\s|$)"
        ),
        tokens=_t("curl wget rm"),
    ),
    StructureRule(
        "markdown_image_exfil",
        "exfiltration",
        0.7,
        _r(
            # A template marker in a query value ({secret}, $DATA, [x], <x>); "$." and
            # "$[" open a JSONPath, as dynamic badges (shields.io query=$.version) use.
            r"!\[[^\]\n]{0,100}\]\(\s*https?://[^\s)]{1,300}[?&][^\s)=]{1,40}=[^\s)]*"
            r"(?:\{|\$(?![.\[])|%7b|(?<!\$)\[|<)"
        ),
        "!",
        gates=("](http",),
        quotable=False,
    ),
    StructureRule(
        "sensitive_path",
        "sensitive_path",
        0.5,
        _r(
            # A public key (id_rsa.pub) is not a secret: only the private file counts.
            r"\.ssh/(?:id_[a-z0-9]+\b(?!\.pub\b)|authorized_keys)|/etc/(?:passwd|shadow|sudoers)"
            r"|\.aws/credentials|\.git-credentials|\.netrc\b|\.npmrc\b|\.pypirc\b"
            r"|\.docker/config\.json|\.kube/config|(?:^|[\s/\"'`])\.env\b"
        ),
        tokens=_t("ssh etc aws git netrc npmrc pypirc docker kube env"),
        quotable=False,
    ),
)

# Where exfiltrated data would go; its presence raises an exfiltration phrase's score.
DESTINATION = re.compile(
    r"https?://|\bwww\.|@[\w-]+\.[a-z]{2,}|webhook|ngrok|pastebin|requestbin|attacker"
)

__all__ = ["DESTINATION", "STRUCTURE_RULES", "StructureRule"]
