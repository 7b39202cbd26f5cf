"""Building the configured redactor from the ``redact`` section."""

from __future__ import annotations

import re

from secmw.errors import ConfigError, ConfigIssue
from secmw.redact import _checks
from secmw.redact.catalogue import BUILTIN, SecretType, Validator
from secmw.redact.config import CustomSecretConfig, RedactConfig
from secmw.redact.engine import Scanner
from secmw.redact.redactor import SecretRedactor
from secmw.redact.styles import Styler


def _custom(index: int, item: CustomSecretConfig, issues: list[ConfigIssue]) -> SecretType:
    validate: Validator | None = None
    if item.min_entropy is not None:
        threshold = item.min_entropy

        def validate(value: str) -> bool:
            return not _checks.placeholder(value) and _checks.entropy(value) >= threshold

    regex = re.compile(item.pattern)
    if regex.groups and "s" not in regex.groupindex:
        issues.append(
            ConfigIssue(
                f"custom[{index}].pattern", "name the secret's group (?P<s>...) or use none"
            )
        )
    return SecretType(
        item.name,
        tuple(item.anchors),
        item.pattern,
        item.max_len,
        back=item.back,
        validate=validate,
        ignore_case=item.ignore_case,
        priority=item.priority,
        source="custom pattern",
    )


def catalogue(config: RedactConfig) -> list[SecretType]:
    """The secret types a configuration selects: built-ins minus disabled, plus custom."""
    issues: list[ConfigIssue] = []
    known = {secret.name for secret in BUILTIN}
    for index, name in enumerate(config.disabled_types):
        if name not in known:
            issues.append(ConfigIssue(f"disabled_types[{index}]", f"unknown secret type {name!r}"))
    types = [secret for secret in BUILTIN if secret.name not in config.disabled_types]
    for index, item in enumerate(config.custom):
        if item.name in known:
            issues.append(ConfigIssue(f"custom[{index}].name", "clashes with a built-in type"))
        if item.back + item.max_len + 2 > config.max_holdback:
            issues.append(
                ConfigIssue(f"custom[{index}].max_len", "back + max_len exceeds max_holdback")
            )
        types.append(_custom(index, item, issues))
    if issues:
        raise ConfigError(issues)
    return types


def build_redactor(config: RedactConfig) -> SecretRedactor | None:
    """The redactor the ``redact`` section describes; ``None`` when it is off."""
    if not config.enabled:
        return None
    scanner = Scanner(catalogue(config), allow=config.allow, allow_patterns=config.allow_patterns)
    if scanner.max_window > config.max_holdback:
        raise ConfigError(
            [ConfigIssue("max_holdback", f"must be at least {scanner.max_window} (longest window)")]
        )
    styler = Styler(config.style, config.salt.encode() if config.salt else None)
    return SecretRedactor(
        scanner,
        styler,
        json_keys=frozenset(key.lower().replace("-", "_") for key in config.json_keys),
        max_holdback=config.max_holdback,
        max_event=config.max_event,
        pass_compressed=config.compressed == "pass",
    )
