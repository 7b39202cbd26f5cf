"""Compiling rule conditions to plain closures, once, at load time.

Each condition becomes a ``Check``: a name (for ``explain``) and a predicate over
the request context and the JSON-RPC call being judged (``None`` for a request
that is not JSON-RPC). No parsing, glob or regex compilation happens per request.
"""

from __future__ import annotations

import ipaddress
import time as time_module
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, time
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from secmw._jsonrpc import RpcCall
from secmw.context import RequestContext
from secmw.errors import ConfigError, ConfigIssue
from secmw.policy.arguments import argument_readings, lax_equal
from secmw.policy.base import MISSING, Undecidable
from secmw.policy.config import Conditions, FindingMatch, TimeWindow, ValueMatch
from secmw.policy.glob import GlobError, compile_name_glob, compile_path_glob
from secmw.policy.regex import MAX_SUBJECT, UnsafeRegexError, compile_rule_regex

Predicate = Callable[[RequestContext, "RpcCall | None"], bool]
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True, slots=True)
class Check:
    """One compiled condition: its config key and its predicate.

    ``static`` conditions read nothing but the method, transport and path, the
    principal's roles and whether it is authenticated, and the JSON-RPC method and
    tool name: the engine may remember the decision of rules made only of them.
    """

    name: str
    test: Predicate
    uses_arguments: bool = False
    needs_body: bool = False
    static: bool = False


def compile_value(
    match: ValueMatch, key: str, *, converted: str | None = None
) -> Callable[[Any], bool]:
    """A predicate over one value (``MISSING`` when absent).

    ``equals`` and ``in`` compare type and value. A tool argument, which a server
    converts before the tool sees it, is compared as converted instead:
    ``converted`` is ``"granting"`` (a match lets the call through: only what
    surely converts to the value) or ``"restricting"`` (any reading that may).
    """
    fields = match.model_fields_set
    if "present" in fields:
        wanted = bool(match.present)
        return lambda value: (value is not MISSING) is wanted
    same = _strict_equal if converted is None else partial(lax_equal, loose=converted != "granting")
    if "equals" in fields:
        expected = match.equals
        return lambda value: value is not MISSING and same(value, expected)
    if "in_" in fields:
        options = list(match.in_ or ())
        return lambda value: value is not MISSING and any(same(value, o) for o in options)
    if "prefix" in fields:
        prefix = match.prefix or ""
        return lambda value: isinstance(value, str) and value.startswith(prefix)
    if "contains" in fields:
        member = match.contains
        return lambda value: (
            (isinstance(value, list) and member in value)
            or (isinstance(value, str) and member in value.split())
        )
    try:
        pattern = compile_rule_regex(match.regex or "")
    except UnsafeRegexError as exc:
        raise ConfigError([ConfigIssue(f"{key}.regex", str(exc))]) from None

    def regex(value: Any) -> bool:
        if not isinstance(value, str):
            return False
        if len(value) > MAX_SUBJECT:
            raise Undecidable(f"{key}: value too long for a regex condition")
        return pattern.search(value) is not None

    return regex


def _strict_equal(value: Any, expected: Any) -> bool:
    return type(value) is type(expected) and bool(value == expected)


def json_pointer(document: Any, pointer: str) -> Any:
    """Resolve an RFC 6901 JSON pointer; ``MISSING`` when any step is absent."""
    if pointer == "":
        return document
    value = document
    for raw in pointer[1:].split("/"):
        step = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(value, Mapping):
            if step not in value:
                return MISSING
            value = value[step]
        elif isinstance(value, list) and step.isdigit() and (step == "0" or step[0] != "0"):
            index = int(step)
            if index >= len(value):
                return MISSING
            value = value[index]
        else:
            return MISSING
    return value


def compile_conditions(
    conditions: Conditions,
    key: str,
    *,
    clock: Callable[[], float] = time_module.time,
    granting: bool = False,
) -> list[Check]:
    """Compile a ``when``/``unless`` block; raises ConfigError naming ``key``.

    ``granting`` is true for a block whose match lets a request through (an allow's
    ``when``, a deny's or step-up's ``unless``): tool arguments must then pass under
    every reading a server may give them.
    """
    checks: list[Check] = []
    issues: list[ConfigIssue] = []
    _principal_checks(conditions, key, checks, issues)
    _request_checks(conditions, key, checks, issues, clock, granting=granting)
    _rpc_checks(conditions, key, checks, issues, granting=granting)
    if issues:
        raise ConfigError(issues)
    return checks


def _authenticated(wanted: bool) -> Predicate:
    return lambda ctx, call: ctx.principal.is_authenticated is wanted


def _attribute_in(attr: str, allowed: frozenset[str]) -> Predicate:
    return lambda ctx, call: getattr(ctx.principal, attr) in allowed


def _set_any(attr: str, wanted: frozenset[str]) -> Predicate:
    return lambda ctx, call: not wanted.isdisjoint(getattr(ctx.principal, attr))


def _set_all(attr: str, wanted: frozenset[str]) -> Predicate:
    return lambda ctx, call: wanted.issubset(getattr(ctx.principal, attr))


def _claim(name: str, test: Callable[[Any], bool]) -> Predicate:
    return lambda ctx, call: test(ctx.principal.claims.get(name, MISSING))


def _header_is(name: str, test: Callable[[Any], bool], *, granting: bool) -> Predicate:
    """A test of one header over every reading of it.

    A header sent more than once is read as each value alone (Starlette and
    FastAPI take the first, others the last) and as all of them joined with ``, ``
    (RFC 9110 section 5.3); a spelling with ``_`` for ``-`` is the same header
    (Django and WSGI bridges merge them). As for tool arguments, a restricting
    condition holds when any reading passes, a granting one only when every
    reading does.
    """
    combine = all if granting else any

    def check(ctx: RequestContext, call: RpcCall | None) -> bool:
        values = ctx.headers.get_merged(name)
        if len(values) < 2:
            return test(values[0] if values else MISSING)
        return combine(test(value) for value in (*values, ", ".join(values)))

    return check


def _argument(pointer: str, test: Callable[[Any], bool], *, granting: bool) -> Predicate:
    """A test of one tool argument over every reading of it (see :func:`argument_readings`).

    A condition that restricts (a deny's ``when``, an allow's ``unless``) holds when
    any reading passes; one that grants (an allow's ``when``, a deny's ``unless``)
    only when every reading does: the tool gets one of them, nobody knows which.
    """
    combine = all if granting else any

    def check(ctx: RequestContext, call: RpcCall | None) -> bool:
        if call is None or call.tool is None:
            return False
        return combine(test(value) for value in argument_readings(call.arguments or {}, pointer))

    return check


def _principal_checks(
    c: Conditions, key: str, checks: list[Check], issues: list[ConfigIssue]
) -> None:
    if c.authenticated is not None:
        wanted = c.authenticated
        checks.append(
            Check(
                f"{key}.authenticated",
                lambda ctx, call: ctx.principal.is_authenticated is wanted,
                static=True,
            )
        )
    singles = (
        ("subjects", "subject"),
        ("tenants", "tenant"),
        ("tiers", "tier"),
        ("auth_methods", "auth_method"),
        ("acr", "acr"),
    )
    for name, attr in singles:
        values = getattr(c, name)
        if values is not None:
            checks.append(Check(f"{key}.{name}", _attribute_in(attr, frozenset(values))))
    sets = (
        ("roles_any", "roles", _set_any),
        ("roles_all", "roles", _set_all),
        ("scopes_any", "scopes", _set_any),
        ("scopes_all", "scopes", _set_all),
        ("amr_any", "amr", _set_any),
    )
    for name, attr, factory in sets:
        values = getattr(c, name)
        if values is not None:
            checks.append(
                Check(f"{key}.{name}", factory(attr, frozenset(values)), static=attr == "roles")
            )
    for claim, match in (c.claims or {}).items():
        test = _value_check(match, f"{key}.claims.{claim}", issues)
        if test is not None:
            checks.append(Check(f"{key}.claims.{claim}", _claim(claim, test)))


def _request_checks(
    c: Conditions,
    key: str,
    checks: list[Check],
    issues: list[ConfigIssue],
    clock: Callable[[], float],
    *,
    granting: bool,
) -> None:
    if c.methods is not None:
        methods = frozenset(c.methods)
        checks.append(Check(f"{key}.methods", lambda ctx, call: ctx.method in methods, static=True))
    if c.transport is not None:
        transport = c.transport
        checks.append(
            Check(f"{key}.transport", lambda ctx, call: ctx.transport == transport, static=True)
        )
    if c.paths is not None:
        # Path parameters are read from the path alone; comparing them with the
        # principal's subject or tenant is not static.
        static = not c.principal_matches_path
        checks.append(Check(f"{key}.paths", _path_check(c, key, issues), static=static))
    elif c.path_params or c.principal_matches_path:
        issues.append(
            ConfigIssue(f"{key}.path_params", "path parameters need paths with {name} segments")
        )
    if c.hosts is not None:
        host_check = _names_check(c.hosts, f"{key}.hosts", issues, case_insensitive=True)
        checks.append(Check(f"{key}.hosts", lambda ctx, call: host_check(_host(ctx))))
    if c.client_ips is not None:
        networks = []
        for index, entry in enumerate(c.client_ips):
            try:
                networks.append(ipaddress.ip_network(entry, strict=True))
            except ValueError as exc:
                issues.append(
                    ConfigIssue(f"{key}.client_ips[{index}]", f"not a CIDR network: {exc}")
                )
        checks.append(
            Check(f"{key}.client_ips", lambda ctx, call: _in_networks(ctx.client, networks))
        )
    for header, match in (c.headers or {}).items():
        test = _value_check(match, f"{key}.headers.{header}", issues)
        if test is not None:
            reading = _header_is(header.lower(), test, granting=granting)
            checks.append(Check(f"{key}.headers.{header}", reading))
    if c.time is not None:
        window = _time_check(c.time, f"{key}.time", issues, clock)
        if window is not None:
            checks.append(Check(f"{key}.time", window))
    if c.findings is not None:
        finding_check = _findings_check(c.findings, f"{key}.findings", issues)
        checks.append(Check(f"{key}.findings", finding_check))


def _rpc_checks(
    c: Conditions, key: str, checks: list[Check], issues: list[ConfigIssue], *, granting: bool
) -> None:
    if c.rpc_methods is not None:
        method_check = _names_check(c.rpc_methods, f"{key}.rpc_methods", issues)
        checks.append(
            Check(
                f"{key}.rpc_methods",
                lambda ctx, call: call is not None and method_check(call.method),
                needs_body=True,
                static=True,
            )
        )
    if c.tools is not None:
        tool_check = _names_check(c.tools, f"{key}.tools", issues)
        checks.append(
            Check(
                f"{key}.tools",
                lambda ctx, call: call is not None and tool_check(call.tool),
                needs_body=True,
                static=True,
            )
        )
    for pointer, match in (c.arguments or {}).items():
        name = f"{key}.arguments.{pointer}"
        if pointer and not pointer.startswith("/"):
            issues.append(ConfigIssue(name, "not a JSON pointer (start with '/')"))
            continue
        converted = "granting" if granting else "restricting"
        test = _value_check(match, name, issues, converted=converted)
        if test is not None:
            checks.append(Check(name, _argument(pointer, test, granting=granting), True, True))


def _value_check(
    match: ValueMatch, key: str, issues: list[ConfigIssue], *, converted: str | None = None
) -> Callable[[Any], bool] | None:
    try:
        return compile_value(match, key, converted=converted)
    except ConfigError as exc:
        issues.extend(exc.issues)
        return None


def _names_check(
    patterns: list[str], key: str, issues: list[ConfigIssue], *, case_insensitive: bool = False
) -> Callable[[str | None], bool]:
    exact: set[str] = set()
    compiled = []
    for index, pattern in enumerate(patterns):
        try:
            regex = compile_name_glob(pattern, case_insensitive=case_insensitive)
        except GlobError as exc:
            issues.append(ConfigIssue(f"{key}[{index}]", str(exc)))
            continue
        if "*" in pattern or "?" in pattern or case_insensitive:
            compiled.append(regex)
        else:
            exact.add(pattern)
    frozen = frozenset(exact)

    def check(value: str | None) -> bool:
        if value is None:
            return False
        return value in frozen or any(regex.fullmatch(value) for regex in compiled)

    return check


def _path_check(c: Conditions, key: str, issues: list[ConfigIssue]) -> Predicate:
    globs = []
    for index, pattern in enumerate(c.paths or ()):
        try:
            globs.append(compile_path_glob(pattern))
        except GlobError as exc:
            issues.append(ConfigIssue(f"{key}.paths[{index}]", f"{pattern!r}: {exc}"))
    param_tests: dict[str, Callable[[Any], bool]] = {}
    for name, match in (c.path_params or {}).items():
        test = _value_check(match, f"{key}.path_params.{name}", issues)
        if test is not None:
            param_tests[name] = test
    same = dict(c.principal_matches_path or {})
    wanted = set(param_tests) | set(same.values())
    declared = {param for glob in globs for param in glob.params}
    issues.extend(
        ConfigIssue(f"{key}.path_params", f"no path pattern captures {{{name}}}")
        for name in sorted(wanted - declared)
    )
    issues.extend(
        ConfigIssue(f"{key}.principal_matches_path.{attr}", "use subject, tenant or tier")
        for attr in same
        if attr not in ("subject", "tenant", "tier")
    )
    if not param_tests and not same:
        return lambda ctx, call: any(glob.matches(ctx.path) for glob in globs)

    def check(ctx: RequestContext, call: RpcCall | None) -> bool:
        for glob in globs:
            params = glob.match(ctx.path)
            if params is None:
                continue
            if all(test(params.get(name, MISSING)) for name, test in param_tests.items()) and all(
                getattr(ctx.principal, attr) is not None
                and getattr(ctx.principal, attr) == params.get(param)
                for attr, param in same.items()
            ):
                return True
        return False

    return check


def _same(principal_value: str | None, path_value: str | None) -> bool:
    return principal_value is not None and principal_value == path_value


def _host(ctx: RequestContext) -> str | None:
    host = ctx.host
    if host is None:
        return None
    if host.startswith("["):
        return host.split("]", 1)[0] + "]"
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    # "admin.example.com." names the same host (the root label is implicit).
    return name[:-1] if name.endswith(".") else name


def _in_networks(client: str | None, networks: list[Any]) -> bool:
    if client is None:
        return False
    try:
        address = ipaddress.ip_address(client)
    except ValueError:
        return False
    return any(address in network for network in networks)


def _time_check(
    window: TimeWindow, key: str, issues: list[ConfigIssue], clock: Callable[[], float]
) -> Predicate | None:
    try:
        zone = ZoneInfo(window.tz)
    except (ZoneInfoNotFoundError, ValueError):
        issues.append(ConfigIssue(f"{key}.tz", f"unknown time zone {window.tz!r}"))
        return None
    days = frozenset(_DAYS.index(day) for day in window.days) if window.days else None
    start = end = None
    if window.between:
        first, second = window.between.split("-")
        try:
            start, end = time.fromisoformat(first), time.fromisoformat(second)
        except ValueError:
            issues.append(
                ConfigIssue(f"{key}.between", "times must be HH:MM between 00:00 and 23:59")
            )
            return None

    def check(ctx: RequestContext, call: RpcCall | None) -> bool:
        now = datetime.fromtimestamp(clock(), zone)
        if days is not None and now.weekday() not in days:
            return False
        if start is not None and end is not None:
            moment = now.time()
            inside = start <= moment < end if start <= end else (moment >= start or moment < end)
            if not inside:
                return False
        return True

    return check


def _findings_check(matches: list[FindingMatch], key: str, issues: list[ConfigIssue]) -> Predicate:
    compiled = []
    for index, match in enumerate(matches):
        try:
            kind = compile_name_glob(match.kind)
        except GlobError as exc:
            issues.append(ConfigIssue(f"{key}[{index}].kind", str(exc)))
            continue
        compiled.append((match.source, kind, match.min_score))

    def check(ctx: RequestContext, call: RpcCall | None) -> bool:
        return any(
            (source is None or finding.source == source)
            and kind.fullmatch(finding.kind) is not None
            and finding.score >= minimum
            for finding in ctx.findings
            for source, kind, minimum in compiled
        )

    return check
