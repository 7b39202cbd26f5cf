"""step_up_needed: acr or MFA amr for strength, auth_time within max_age for freshness."""

from __future__ import annotations

from typing import Any

import pytest

from secmw.auth import MFA_AMR_VALUES, step_up_needed
from secmw.context import ANONYMOUS, Principal

NOW = 1_800_000_000.0


def who(**fields: Any) -> Principal:
    return Principal(subject="u", auth_method="jwt", **fields)


@pytest.mark.parametrize(
    ("principal", "acr_values", "max_age", "needed"),
    [
        pytest.param(who(), (), None, False, id="nothing-required"),
        pytest.param(ANONYMOUS, (), None, False, id="anonymous-nothing-required"),
        pytest.param(ANONYMOUS, ("urn:mfa",), None, True, id="anonymous-acr"),
        pytest.param(who(acr="urn:mfa"), ("urn:mfa",), None, False, id="acr-matches"),
        pytest.param(who(acr="urn:pwd"), ("urn:mfa", "urn:hw"), None, True, id="acr-differs"),
        pytest.param(who(), ("urn:mfa",), None, True, id="no-acr"),
        pytest.param(who(amr=("otp", "pwd")), ("urn:mfa",), None, False, id="amr-otp"),
        pytest.param(who(amr=("mfa",)), ("urn:mfa",), None, False, id="amr-mfa"),
        pytest.param(who(amr=("hwk",)), ("urn:mfa",), None, False, id="amr-hwk"),
        pytest.param(who(amr=("pwd",)), ("urn:mfa",), None, True, id="amr-password-only"),
        pytest.param(who(amr=("pwd", "kba")), ("urn:mfa",), None, True, id="amr-kba"),
        pytest.param(who(auth_time=NOW - 100), (), 300, False, id="fresh"),
        pytest.param(who(auth_time=NOW - 301), (), 300, True, id="stale"),
        pytest.param(who(), (), 300, True, id="no-auth-time"),
        pytest.param(who(auth_time=NOW + 3600), (), 300, True, id="auth-time-in-future"),
        pytest.param(who(auth_time=NOW + 10), (), 300, False, id="small-skew"),
        pytest.param(
            who(acr="urn:mfa", auth_time=NOW - 400), ("urn:mfa",), 300, True, id="strong-but-stale"
        ),
        pytest.param(
            who(acr="urn:mfa", auth_time=NOW - 10), ("urn:mfa",), 300, False, id="strong-and-fresh"
        ),
        pytest.param(who(auth_time=NOW), (), 0, False, id="max-age-zero-just-now"),
    ],
)
def test_step_up_table(
    principal: Principal, acr_values: tuple[str, ...], max_age: int | None, needed: bool
) -> None:
    assert step_up_needed(principal, acr_values=acr_values, max_age=max_age, now=NOW) is needed


def test_documented_mfa_values() -> None:
    assert {"mfa", "otp", "hwk"} <= MFA_AMR_VALUES
    assert not {"pwd", "pin", "kba"} & MFA_AMR_VALUES


def test_mfa_amr_values_are_replaceable() -> None:
    principal = who(amr=("otp",))
    assert not step_up_needed(principal, acr_values=["gold"], now=NOW)
    assert step_up_needed(principal, acr_values=["gold"], now=NOW, mfa_amr=())
    assert not step_up_needed(who(amr=("face",)), acr_values=["gold"], now=NOW, mfa_amr=["face"])
