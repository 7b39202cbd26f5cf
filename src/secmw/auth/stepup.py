"""Step-up authentication (RFC 9470): is the principal's authentication strong and fresh enough?

The policy component decides *when* a route or tool needs step-up; this module
answers the question for one principal, and the pipeline renders the 401
``insufficient_user_authentication`` challenge with ``acr_values`` / ``max_age``.

Strength: the principal's ``acr`` must be one of the required ``acr_values``, or
its ``amr`` claim (RFC 8176 values) must show a multi-factor login. The ``amr``
values that count as MFA are :data:`MFA_AMR_VALUES`: ``mfa`` (multiple factors),
``hwk`` (proof of possession of a hardware key), ``otp`` (one-time password),
``sms`` (a code by SMS), ``swk`` (a software key), ``sc`` (smart card), ``fido``
(a FIDO authenticator; common in practice though not in RFC 8176) - each of
these is a second factor that is not a password. ``pwd``, ``pin``, ``kba`` and
biometrics alone do not count. The ``amr`` route exists because many issuers
report MFA in ``amr`` and leave ``acr`` empty.

Freshness: with ``max_age``, ``auth_time`` must be present and no older than
``max_age`` seconds (an ``auth_time`` in the future does not count as fresh).
"""

from __future__ import annotations

from collections.abc import Iterable

from secmw.context import Principal

MFA_AMR_VALUES = frozenset({"mfa", "hwk", "otp", "sms", "swk", "sc", "fido"})
# A clock skew tolerated for an auth_time slightly ahead of our clock.
_SKEW = 30.0


def step_up_needed(
    principal: Principal,
    *,
    acr_values: Iterable[str] = (),
    max_age: float | None = None,
    now: float,
    mfa_amr: Iterable[str] = MFA_AMR_VALUES,
) -> bool:
    """True when ``principal`` must authenticate again (stronger or more recently).

    ``acr_values`` empty means no strength requirement; ``max_age`` ``None``
    means no freshness requirement. An anonymous principal always needs step-up
    when anything is required. ``mfa_amr`` replaces the ``amr`` values that stand
    in for ``acr`` (empty: only ``acr`` itself counts).
    """
    required = frozenset(acr_values)
    if not required and max_age is None:
        return False
    if not principal.is_authenticated:
        return True
    if required:
        strong = principal.acr in required or not frozenset(mfa_amr).isdisjoint(principal.amr)
        if not strong:
            return True
    if max_age is not None:
        auth_time = principal.auth_time
        if auth_time is None or auth_time > now + _SKEW or now - auth_time > max_age:
            return True
    return False


__all__ = ["MFA_AMR_VALUES", "step_up_needed"]
