"""Policy evaluation cost for 10, 100 and 1,000 rules: secmw vs pycasbin vs cel-python.

The same RBAC rule set in each engine: rule i lets role ``role_i`` GET
``/res<i>/<id>``. The request comes from a user holding the role of the LAST rule
(the worst case for a scan), asking for a path that rule covers; a second request
matches no rule (default deny). A third secmw variant uses rules the index cannot
narrow (role conditions only, no path), to show the cost of a full scan.

pycasbin: model ``g(r.sub, p.sub) && keyMatch2(r.obj, p.obj) && r.act == p.act``.
cel-python: one compiled program per rule, evaluated in order until one is true
(first-applicable), which is how CEL policies are usually run.

    python benchmarks/bench_policy.py [--seconds 0.5]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import casbin
import celpy

from secmw.context import Principal, RequestContext
from secmw.policy import PolicyConfig, PolicyEngine

SIZES = (10, 100, 1000)
MODEL = """
[request_definition]
r = sub, obj, act
[policy_definition]
p = sub, obj, act
[role_definition]
g = _, _
[policy_effect]
e = some(where (p.eft == allow))
[matchers]
m = g(r.sub, p.sub) && keyMatch2(r.obj, p.obj) && r.act == p.act
"""


def timed(fn: Callable[[], object], seconds: float) -> tuple[float, float]:
    """Median and p99 of one call, in microseconds, over about ``seconds``."""
    for _ in range(20):
        fn()
    samples: list[float] = []
    clock = time.perf_counter_ns
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and len(samples) < 200_000:
        started = clock()
        fn()
        samples.append((clock() - started) / 1000.0)
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, int(0.99 * len(samples)))]


def context(path: str, role: str) -> RequestContext:
    scope = {
        "type": "http",
        "method": "GET",
        "path": path,
        "raw_path": path.encode(),
        "headers": [],
        "client": ("10.0.0.1", 1),
    }
    ctx = RequestContext.from_scope(scope)
    ctx.principal = Principal(subject="alice", roles=frozenset({role}), auth_method="jwt")
    return ctx


def secmw_engine(size: int, *, indexed: bool) -> PolicyEngine:
    rules: list[dict[str, Any]] = []
    for i in range(size):
        if indexed:
            when: dict[str, Any] = {
                "roles_any": [f"role_{i}"],
                "methods": ["GET"],
                "paths": [f"/res{i}/*"],
            }
        else:  # conditions the index cannot use: every rule is checked in turn
            when = {"claims": {"dept": {"equals": f"d{i}"}}, "methods": ["GET"]}
        rules.append({"id": f"r{i}", "effect": "allow", "when": when})
    return PolicyEngine.from_config(PolicyConfig.model_validate({"rules": rules}))


def casbin_enforcer(size: int, model_path: str) -> casbin.Enforcer:
    enforcer = casbin.Enforcer(model_path)
    for i in range(size):
        enforcer.add_policy(f"role_{i}", f"/res{i}/:id", "GET")
    enforcer.add_grouping_policy("alice", f"role_{size - 1}")
    return enforcer


def cel_programs(size: int) -> list[Any]:
    env = celpy.Environment()
    programs = []
    for i in range(size):
        source = f'"role_{i}" in roles && path.startsWith("/res{i}/") && method == "GET"'
        programs.append(env.program(env.compile(source)))
    return programs


def run_cel(programs: list[Any], activation: dict[str, Any]) -> bool:
    return any(bool(program.evaluate(activation)) for program in programs)


def rows_for(size: int, model_path: str) -> list[tuple[str, Callable[[], object]]]:
    """The engines to time at one rule-set size, each checked to give the right answer."""
    last = size - 1
    hit = context(f"/res{last}/42", f"role_{last}")
    miss = context("/nowhere/1", f"role_{last}")
    indexed, scan = secmw_engine(size, indexed=True), secmw_engine(size, indexed=False)
    scan_ctx = context(f"/res{last}/42", f"role_{last}")
    scan_ctx.principal = Principal(
        subject="alice",
        roles=frozenset({f"role_{last}"}),
        claims={"dept": f"d{last}"},
        auth_method="jwt",
    )
    assert indexed.evaluate(hit).allowed
    assert not indexed.evaluate(miss).allowed
    assert scan.evaluate(scan_ctx).allowed
    enforcer = casbin_enforcer(size, model_path)
    target = f"/res{last}/42"
    assert enforcer.enforce("alice", target, "GET")
    rows: list[tuple[str, Callable[[], object]]] = [
        ("secmw (indexed), allow", lambda: indexed.evaluate(hit)),
        ("secmw (indexed), no match", lambda: indexed.evaluate(miss)),
        ("secmw (claims only: full scan)", lambda: scan.evaluate(scan_ctx)),
        ("pycasbin RBAC keyMatch2, allow", lambda: enforcer.enforce("alice", target, "GET")),
    ]
    if size <= 100:  # cel-python at 1,000 rules takes tens of ms per request
        programs = cel_programs(size)
        activation = {
            "roles": celpy.json_to_cel([f"role_{last}"]),
            "path": celpy.json_to_cel(target),
            "method": celpy.json_to_cel("GET"),
        }
        assert run_cel(programs, activation)
        rows.append(("cel-python, allow", lambda: run_cel(programs, activation)))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.5, help="time per measurement")
    args = parser.parse_args()
    with tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False) as handle:
        handle.write(MODEL)
        model_path = handle.name
    version = platform.python_version()
    print(f"policy evaluation, worst case (the last rule applies); Python {version}")
    print(f"{'rules':>6} {'engine':34} {'p50 us':>10} {'p99 us':>10}")
    try:
        for size in SIZES:
            for name, fn in rows_for(size, model_path):
                p50, p99 = timed(fn, args.seconds)
                print(f"{size:>6} {name:34} {p50:10.2f} {p99:10.2f}")
    finally:
        os.unlink(model_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
