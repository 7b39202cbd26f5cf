"""step_up_needed: RFC 9470 acr/max_age semantics."""

from __future__ import annotations

import pytest

from secmw.auth.stepup import step_up_needed
from secmw.context import ANONYMOUS, Principal


@pytest.mark.parametrize(
    ("principal", "acr_values", "max_age", "now", "needed"),
    [
        pytest.param(Principal(subject="a", acr="gold"), ["gold"], None, 0.0, False, id="acr-ok"),
        pytest.param(
            Principal(subject="a", acr="silver"), ["gold"], None, 0.0, True, id="acr-weak"
        ),
        pytest.param(
            Principal(subject="a", amr=("pwd", "hwk")), ["gold"], None, 0.0, False, id="amr-mfa"
        ),
        pytest.param(
            Principal(subject="a", amr=("pwd",)), ["gold"], None, 0.0, True, id="amr-password-only"
        ),
        pytest.param(Principal(subject="a", auth_time=100.0), [], 60, 150.0, False, id="fresh"),
        pytest.param(Principal(subject="a", auth_time=100.0), [], 60, 161.0, True, id="stale"),
        pytest.param(Principal(subject="a"), [], 60, 161.0, True, id="no-auth-time"),
        pytest.param(
            Principal(subject="a", acr="gold", auth_time=100.0),
            ["gold"],
            60,
            120.0,
            False,
            id="both-ok",
        ),
        pytest.param(ANONYMOUS, [], None, 0.0, True, id="anonymous"),
        pytest.param(Principal(subject="a"), [], None, 0.0, False, id="no-requirement"),
    ],
)
def test_step_up_needed(
    principal: Principal, acr_values: list[str], max_age: int | None, now: float, needed: bool
) -> None:
    assert step_up_needed(principal, acr_values=acr_values, max_age=max_age, now=now) is needed


def test_mfa_amr_values_are_configurable() -> None:
    principal = Principal(subject="a", amr=("otp",))
    assert step_up_needed(principal, acr_values=["gold"], now=0.0, mfa_amr=())
