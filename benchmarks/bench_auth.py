"""Per-call cost of secmw's authenticators next to PyJWT and Authlib, in one run.

For RS256, ES256 and EdDSA, on the same key and the same token:

* ``pyjwt jwt.decode``: PyJWT alone, checking signature, iss, aud, exp and the
  required claims (what a hand-written resource server would do);
* ``authlib JWTBearerTokenValidator``: RFC 9068 validation, authenticate_token +
  validate_token, with the key imported once;
* ``secmw verify (uncached)``: JWTAuthenticator.verify, the full secmw check
  (size, shape, kid/alg rules, crit, typ, iss/aud/exp/nbf/iat, claim mapping);
* ``secmw check (cached)``: the verified-token cache hit (digest, lookup, expiry);
* ``secmw authenticate (cached)``: the same from a request context, i.e. with
  the Authorization header parsed.

Then API keys: ``APIKeyAuthenticator.check`` and ``authenticate`` (memory store).
Coroutines that never suspend are driven with ``send(None)``, so no event loop
cost is included. Variants are interleaved round by round; the figure is the
median per-call time over rounds ("best" is the fastest round, the figure
least disturbed by other processes on a shared machine); "vs pyjwt" compares
medians, and best rounds, on the same key.

    python benchmarks/bench_auth.py [--rounds 15] [--budget 0.02]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any

import jwt

from secmw.auth import APIKeyAuthenticator, MemoryAPIKeyStore
from secmw.auth.jwt import JWTAuthenticator
from secmw.auth.keys import key_from_jwk
from secmw.context import RequestContext
from secmw.testing import TokenIssuer

ISSUER = "https://issuer.example.test"
AUDIENCE = "https://api.example.test"
SKIPPED: list[str] = []


def drive(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine that does not suspend, without an event loop."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    raise RuntimeError("the coroutine suspended")


def context(headers: list[tuple[bytes, bytes]]) -> RequestContext:
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/api",
        "raw_path": b"/api",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 1),
    }
    ctx = RequestContext.from_scope(scope)
    ctx.headers.get("authorization")  # the header index is the pipeline's cost
    return ctx


def authlib_validator(issuer: TokenIssuer) -> Callable[[str], Any] | None:
    try:
        from authlib.oauth2.rfc9068 import JWTBearerTokenValidator  # noqa: PLC0415 - optional peer
        from joserfc.jwk import KeySet  # noqa: PLC0415 - optional peer
    except ImportError:
        return None
    keys = KeySet.import_key_set(issuer.jwks())

    class Validator(JWTBearerTokenValidator):  # type: ignore[misc]
        def get_jwks(self) -> Any:
            return keys

    validator = Validator(issuer=ISSUER, resource_server=AUDIENCE)

    def validate(token: str) -> Any:
        claims = validator.authenticate_token(token)
        validator.validate_token(claims, [], None)
        return claims

    return validate


def jwt_variants(algorithm: str) -> list[tuple[str, Callable[[], Any]]]:
    issuer = TokenIssuer(issuer=ISSUER, audience=AUDIENCE, algorithm=algorithm)  # type: ignore[arg-type]
    token = issuer.mint(
        "bench-user", scopes=["read", "write"], expires_in=3600, claims={"client_id": "bench"}
    )
    key = key_from_jwk(issuer.public_jwk)
    raw_key = key.key
    uncached = JWTAuthenticator([key], issuer=ISSUER, audience=AUDIENCE)
    cached = JWTAuthenticator([key], issuer=ISSUER, audience=AUDIENCE, cache_size=1000)
    drive(cached.check(token))
    ctx = context([(b"authorization", f"Bearer {token}".encode())])
    options: Any = {"require": ["exp", "sub", "iss", "aud"]}

    def pyjwt() -> Any:
        return jwt.decode(
            token,
            raw_key,
            algorithms=[algorithm],
            audience=AUDIENCE,
            issuer=ISSUER,
            options=options,
        )

    variants: list[tuple[str, Callable[[], Any]]] = [
        (f"{algorithm} pyjwt jwt.decode", pyjwt),
        (f"{algorithm} secmw verify (uncached)", lambda: uncached.verify(token)),
        (f"{algorithm} secmw check (cached)", lambda: drive(cached.check(token))),
        (f"{algorithm} secmw authenticate (cached)", lambda: drive(cached.authenticate(ctx))),
    ]
    validate = authlib_validator(issuer)
    if validate is not None:
        try:
            validate(token)
        except Exception as exc:  # reported in the table, not hidden
            cause = exc.__cause__ or exc
            SKIPPED.append(f"{algorithm} authlib JWTBearerTokenValidator: {cause}")
        else:
            name = f"{algorithm} authlib JWTBearerTokenValidator"
            variants.insert(1, (name, lambda: validate(token)))
    return variants


def apikey_variants() -> list[tuple[str, Callable[[], Any]]]:
    store = MemoryAPIKeyStore()
    _, key = store.create("bench-service", scopes=["read"])
    auth = APIKeyAuthenticator(store)
    ctx = context([(b"x-api-key", key.encode())])
    return [
        ("api key check", lambda: drive(auth.check(key))),
        ("api key authenticate", lambda: drive(auth.authenticate(ctx))),
    ]


def calibrate(function: Callable[[], Any], budget: float) -> int:
    """How many calls fit in ``budget`` seconds (at least 10)."""
    started = time.perf_counter()
    calls = 0
    while time.perf_counter() - started < budget / 4:
        function()
        calls += 1
    return max(10, calls * 4)


def measure(
    variants: list[tuple[str, Callable[[], Any]]], rounds: int, budget: float
) -> dict[str, list[float]]:
    sizes = {name: calibrate(function, budget) for name, function in variants}
    results: dict[str, list[float]] = {name: [] for name, _ in variants}
    for _ in range(rounds):
        for name, function in variants:
            count = sizes[name]
            started = time.perf_counter_ns()
            for _ in range(count):
                function()
            results[name].append((time.perf_counter_ns() - started) / count / 1000)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--budget", type=float, default=0.02, help="seconds per variant per round")
    args = parser.parse_args()
    variants: list[tuple[str, Callable[[], Any]]] = []
    for algorithm in ("RS256", "ES256", "EdDSA"):
        variants.extend(jwt_variants(algorithm))
    variants.extend(apikey_variants())
    results = measure(variants, args.rounds, args.budget)
    print(
        f"secmw auth benchmark - CPython {platform.python_version()} on {platform.machine()}, "
        f"{args.rounds} rounds; median per call"
    )
    print(f"{'variant':<46} {'median µs':>10} {'best µs':>9} {'median':>7} {'best':>6}")
    print(f"{'':<46} {'':>10} {'':>9} {'vs pyjwt':>14}")
    baseline: tuple[float, float] | None = None
    for name, _ in variants:
        median = statistics.median(results[name])
        best = min(results[name])
        if "pyjwt" in name:
            baseline = (median, best)
        ratios = ""
        if baseline is not None and not name.startswith("api"):
            ratios = f"{median / baseline[0]:>6.2f}x {best / baseline[1]:>5.2f}x"
        print(f"{name:<46} {median:>10.2f} {best:>9.2f} {ratios}")
    for reason in SKIPPED:
        print(f"not measured: {reason}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
