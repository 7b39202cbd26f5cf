"""Step-up authentication checks (RFC 9470): is the principal's login strong and fresh enough?"""

from __future__ import annotations

from collections.abc import Collection

from secmw.context import Principal

# amr values (RFC 8176) that show a second factor or a phishing-resistant method.
MFA_AMR = frozenset({"mfa", "otp", "hwk", "swk", "sms", "fido", "sc", "face", "fpt", "iris"})


def step_up_needed(
    principal: Principal,
    *,
    acr_values: Collection[str] = (),
    max_age: float | None = None,
    now: float,
    mfa_amr: Collection[str] = MFA_AMR,
) -> bool:
    """True when ``principal`` must authenticate again, more strongly or more recently.

    The ``acr`` requirement holds when the principal's ``acr`` is one of
    ``acr_values``, or when its ``amr`` claims include one of ``mfa_amr`` (a
    second factor stands in for an MFA assurance level). The ``max_age``
    requirement holds when ``auth_time`` is known and no older than ``max_age``
    seconds. An anonymous principal always needs to authenticate.
    """
    if not principal.is_authenticated:
        return True
    if acr_values:
        strong = principal.acr in acr_values or not frozenset(mfa_amr).isdisjoint(principal.amr)
        if not strong:
            return True
    return max_age is not None and (
        principal.auth_time is None or now - principal.auth_time > max_age
    )
