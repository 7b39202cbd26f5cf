"""The composite check against a model: every tier must admit, and a refusal consumes nothing."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from secmw.ratelimit import MemoryStore
from secmw.ratelimit.algorithms import ALGORITHMS, Limit
from tests.unit.ratelimit.test_algorithms import Reference

STEP = st.tuples(
    st.sampled_from([0.0, 0.0, 0.25, 1.0, 3.0]),  # wait
    st.sampled_from(["a", "b"]),  # which principal
    st.integers(0, 2),  # cost
)


@settings(max_examples=150, deadline=None)
@given(
    algorithms=st.lists(st.sampled_from(ALGORITHMS), min_size=2, max_size=3),
    shadow=st.booleans(),
    steps=st.lists(STEP, max_size=40),
)
def test_memory_composite_matches_independent_models(
    algorithms: list[str], shadow: bool, steps: list[tuple[float, str, int]]
) -> None:
    # Tier 0 is global; the others are per principal with different sizes.
    limits = [
        Limit(f"t{i}", f"t{i}:4", f"t{i}", algorithm, 3 + i, 4.0, 2 + i, shadow and i == 1)
        for i, algorithm in enumerate(algorithms)
    ]
    store = MemoryStore(clock=lambda: 0.0)
    models: dict[tuple[int, str], Reference] = {}
    now = 100.0
    for wait, who, cost in steps:
        now += wait
        keys = ["*" if i == 0 else who for i in range(len(limits))]
        checks = [(limit, key, cost) for limit, key in zip(limits, keys, strict=True)]
        refs = [
            models.setdefault((i, key), Reference(limit))
            for i, (limit, key) in enumerate(zip(limits, keys, strict=True))
        ]
        verdicts = [ref.admits(now, cost) for ref in refs]
        admitted = all(v for v, limit in zip(verdicts, limits, strict=True) if not limit.shadow)
        outcomes = store.apply(checks, now)
        assert [o.allowed for o in outcomes] == verdicts
        if admitted:
            for ref, verdict in zip(refs, verdicts, strict=True):
                if verdict:
                    ref.admit(now, cost)
