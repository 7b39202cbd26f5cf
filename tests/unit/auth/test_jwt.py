"""JWTAuthenticator: hostile tokens are refused, good ones map to a Principal."""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from secmw.auth.jwt import JWTAuthenticator, key_from_jwk, key_from_pem
from secmw.config import ClaimNames, build_pipeline, parse_config
from secmw.context import RequestContext
from secmw.errors import AuthenticationError, ConfigError
from secmw.testing import TokenIssuer
from tests.support import http_scope

ISSUER = TokenIssuer(algorithm="RS256", kid="rsa-1")
OTHER = TokenIssuer(algorithm="RS256", kid="rsa-1", issuer=ISSUER.issuer, audience=ISSUER.audience)


def authenticator(**overrides: Any) -> JWTAuthenticator:
    return JWTAuthenticator(
        [key_from_jwk(ISSUER.public_jwk)],
        issuer=ISSUER.issuer,
        audience=ISSUER.audience,
        **overrides,
    )


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict[str, Any], payload: dict[str, Any], signature: bytes = b"sig") -> str:
    return ".".join(
        [b64(json.dumps(header).encode()), b64(json.dumps(payload).encode()), b64(signature)]
    )


def sign_raw(payload: dict[str, Any], **headers: Any) -> str:
    """Sign claims PyJWT's encoder would refuse (it validates iss/kid types)."""
    body = json.dumps(payload).encode()
    return jwt.api_jws.PyJWS().encode(
        body,
        ISSUER._private,
        "RS256",
        headers={"kid": "rsa-1", **headers},
    )


def good_claims() -> dict[str, Any]:
    now = int(time.time())
    return {"iss": ISSUER.issuer, "aud": ISSUER.audience, "sub": "u", "iat": now, "exp": now + 60}


def public_pem() -> bytes:
    return ISSUER._private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def tamper_payload(token: str) -> str:
    head, _, sig = token.split(".")
    payload = good_claims() | {"sub": "admin"}
    return ".".join([head, b64(json.dumps(payload).encode()), sig])


def hs_confusion() -> str:
    # The classic: sign HS256 with the RSA public key bytes as the HMAC secret.
    import hashlib
    import hmac

    header = b64(json.dumps({"alg": "HS256", "kid": "rsa-1"}).encode())
    payload = b64(json.dumps(good_claims()).encode())
    signature = hmac.new(public_pem(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{b64(signature)}"


HOSTILE: list[Any] = [
    pytest.param(
        lambda: forge({"alg": "none", "kid": "rsa-1"}, good_claims()), "alg", id="alg-none"
    ),
    pytest.param(
        lambda: forge({"alg": "None", "kid": "rsa-1"}, good_claims()), "alg", id="alg-None"
    ),
    pytest.param(
        lambda: forge({"alg": "none"}, good_claims(), b""), "compact JWS", id="alg-none-unsigned"
    ),
    pytest.param(hs_confusion, "alg", id="hs256-with-rsa-public-key"),
    pytest.param(
        lambda: forge({"alg": "ES256", "kid": "rsa-1"}, good_claims(), b"x" * 64),
        "alg",
        id="es256-on-rsa-key",
    ),
    pytest.param(
        lambda: forge({"alg": "RS256", "kid": "rsa-1", "crit": ["exp"]}, good_claims()),
        "crit|JOSE header",
        id="crit",
    ),
    pytest.param(
        lambda: forge(
            {"alg": "RS256", "kid": "rsa-1", "crit": ["x-ours"], "x-ours": 1}, good_claims()
        ),
        "crit|JOSE header",
        id="crit-custom",
    ),
    pytest.param(
        lambda: ISSUER.mint(headers={"kid": "../../../etc/passwd"}), "unknown kid", id="kid-path"
    ),
    pytest.param(
        lambda: ISSUER.mint(headers={"kid": "http://evil/key"}), "unknown kid", id="kid-url"
    ),
    pytest.param(
        lambda: forge({"alg": "RS256", "kid": 1}, good_claims()), "kid|JOSE header", id="kid-number"
    ),
    pytest.param(
        lambda: OTHER.mint(headers={"jku": "https://evil/jwks"}), "bad signature", id="jku-ignored"
    ),
    pytest.param(
        lambda: OTHER.mint(headers={"x5u": "https://evil/cert"}), "bad signature", id="x5u-ignored"
    ),
    pytest.param(
        lambda: OTHER.mint(headers={"jwk": OTHER.public_jwk}),
        "bad signature",
        id="embedded-jwk-ignored",
    ),
    pytest.param(OTHER.mint, "bad signature", id="foreign-key-same-kid"),
    pytest.param(lambda: tamper_payload(ISSUER.mint()), "bad signature", id="tampered-payload"),
    pytest.param(lambda: ISSUER.mint()[:-4] + "AAAA", "bad signature", id="tampered-signature"),
    pytest.param(lambda: ISSUER.mint(expires_in=-120), "token expired", id="expired"),
    pytest.param(
        lambda: ISSUER.mint(now=time.time() + 3600), "issued in the future", id="issued-in-future"
    ),
    pytest.param(
        lambda: ISSUER.mint(claims={"nbf": int(time.time()) + 3600}), "not yet valid", id="immature"
    ),
    pytest.param(lambda: ISSUER.mint(claims={"exp": None}), "missing claim exp", id="no-exp"),
    pytest.param(lambda: ISSUER.mint(claims={"sub": None}), "missing claim sub", id="no-sub"),
    pytest.param(lambda: ISSUER.mint(claims={"sub": ""}), "empty subject", id="empty-sub"),
    pytest.param(
        lambda: ISSUER.mint(claims={"exp": str(int(time.time()) + 600)}),
        "exp is not a number",
        id="exp-numeric-string",
    ),
    pytest.param(
        lambda: ISSUER.mint(claims={"exp": "soon"}), "exp is not a number", id="exp-garbage"
    ),
    pytest.param(
        lambda: ISSUER.mint(claims={"iss": ISSUER.issuer[:-1]}),
        "issuer mismatch",
        id="partial-issuer",
    ),
    pytest.param(
        lambda: sign_raw(good_claims() | {"iss": [ISSUER.issuer]}),
        "issuer mismatch",
        id="issuer-list",
    ),
    pytest.param(lambda: ISSUER.mint(claims={"iss": None}), "issuer mismatch", id="no-issuer"),
    pytest.param(
        lambda: ISSUER.mint(claims={"aud": "https://other"}),
        "audience mismatch",
        id="wrong-audience",
    ),
    pytest.param(lambda: ISSUER.mint(claims={"aud": None}), "missing claim aud", id="no-audience"),
    pytest.param(
        lambda: ISSUER.mint(claims={"aud": ISSUER.audience[:-1]}),
        "audience mismatch",
        id="partial-audience",
    ),
    pytest.param(lambda: "a" * 9000, "max_token_bytes", id="oversized"),
    pytest.param(
        lambda: ISSUER.mint(claims={"pad": "x" * 9000}), "max_token_bytes", id="oversized-valid"
    ),
    pytest.param(lambda: "not-a-jwt", "compact JWS", id="garbage"),
    pytest.param(lambda: "a.b", "compact JWS", id="two-parts"),
    pytest.param(lambda: "a.b.c.d.e", "compact JWS", id="jwe-shape"),
    pytest.param(lambda: ISSUER.mint() + ".", "compact JWS", id="trailing-dot"),
    pytest.param(lambda: "e30.e30.", "compact JWS", id="empty-signature"),
    pytest.param(lambda: "!!!.e30.abc", "compact JWS", id="bad-alphabet"),
    pytest.param(
        lambda: b64(b"[1]") + ".e30.abc", "unreadable JOSE header", id="header-not-object"
    ),
    pytest.param(
        lambda: b64(b"\xff\xfe") + ".e30.abc", "unreadable JOSE header", id="header-not-utf8"
    ),
    pytest.param(
        lambda: forge({"alg": "RS256", "kid": "rsa-1"}, good_claims(), b"\x00" * 256),
        "bad signature",
        id="zero-signature",
    ),
    pytest.param(
        lambda: forge({"alg": ["RS256"], "kid": "rsa-1"}, good_claims()),
        "alg|JOSE header",
        id="alg-list",
    ),
    pytest.param(
        lambda: forge({"kid": "rsa-1"}, good_claims()), "alg|JOSE header", id="alg-missing"
    ),
]


@pytest.mark.parametrize(("make", "reason"), HOSTILE)
def test_hostile_tokens_are_refused(make: Callable[[], str], reason: str) -> None:
    with pytest.raises(AuthenticationError) as info:
        authenticator().verify(make())
    assert re.search(reason, info.value.reason), info.value.reason
    assert info.value.status == 401
    assert info.value.error == "invalid_token"


def test_expired_tokens_have_their_own_event() -> None:
    with pytest.raises(AuthenticationError) as info:
        authenticator().verify(ISSUER.mint(expires_in=-120))
    assert info.value.event == "authn_token_expired"


def test_leeway_is_applied() -> None:
    token = ISSUER.mint(expires_in=-10)
    assert authenticator(leeway=30).verify(token).subject == "user-1"
    with pytest.raises(AuthenticationError):
        authenticator(leeway=0).verify(token)


def test_typ_check_is_optional_and_exact() -> None:
    assert authenticator(typ="at+jwt").verify(ISSUER.mint()).subject
    assert (
        authenticator(typ="at+jwt")
        .verify(ISSUER.mint(headers={"typ": "application/at+jwt"}))
        .subject
    )
    with pytest.raises(AuthenticationError, match="typ"):
        authenticator(typ="at+jwt").verify(ISSUER.mint(headers={"typ": "JWT"}))


def test_claims_map_to_principal() -> None:
    token = ISSUER.mint(
        "alice",
        scopes=["a", "b"],
        roles=["admin"],
        tenant="t1",
        tier="paid",
        acr="urn:mfa",
        amr=["pwd", "otp"],
        claims={"scp": ["c"], "auth_time": 1700000000, "jti": "j-1"},
    )
    principal = authenticator().verify(token)
    assert principal.subject == "alice"
    assert principal.scopes == {"a", "b", "c"}
    assert principal.roles == {"admin"}
    assert (principal.tenant, principal.tier, principal.acr) == ("t1", "paid", "urn:mfa")
    assert principal.amr == ("otp", "pwd")
    assert principal.auth_time == 1700000000.0
    assert principal.expires_at is not None
    assert principal.auth_method == "jwt"
    assert principal.credential_id == "jti:j-1"
    assert principal.claims["sub"] == "alice"


def test_claim_names_are_configurable_and_bad_types_ignored() -> None:
    names = ClaimNames(subject="uid", roles="groups", tenant="org")
    token = ISSUER.mint(claims={"uid": "u-9", "groups": "x y", "org": 5, "jti": None})
    principal = authenticator(claims=names).verify(token)
    assert principal.subject == "u-9"
    assert principal.roles == {"x", "y"}
    assert principal.tenant is None
    assert principal.credential_id is not None and principal.credential_id.startswith("sha256:")
    assert token not in principal.credential_id


@pytest.mark.parametrize("algorithm", ["RS256", "ES256", "EdDSA"])
def test_each_key_type_verifies_only_its_algorithms(algorithm: str) -> None:
    issuer = TokenIssuer(algorithm=algorithm)  # type: ignore[arg-type]
    key = key_from_jwk(issuer.public_jwk)
    assert key.algorithms == {algorithm}  # the JWK's alg pins it
    loose = key_from_pem(issuer.private_pem())
    assert algorithm in loose.algorithms
    assert "HS256" not in loose.algorithms and "none" not in loose.algorithms
    auth = JWTAuthenticator([loose], issuer=issuer.issuer, audience=issuer.audience)
    assert auth.verify(issuer.mint(headers={"kid": None})).subject == "user-1"


def test_rsa_key_family_without_pin() -> None:
    key = key_from_pem(public_pem())
    assert key.algorithms == {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}


def test_hmac_keys_work_but_never_verify_rsa_tokens() -> None:
    secret = b"k" * 32
    key = key_from_jwk({"kty": "oct", "k": b64(secret), "kid": "h"})
    auth = JWTAuthenticator([key], issuer="i", audience="a")
    now = int(time.time())
    token = jwt.encode(
        {"iss": "i", "aud": "a", "sub": "s", "exp": now + 60},
        secret,
        algorithm="HS256",
        headers={"kid": "h"},
    )
    assert auth.verify(token).subject == "s"
    with pytest.raises(AuthenticationError):
        auth.verify(ISSUER.mint(headers={"kid": "h"}))


def test_algorithm_allow_list_filters_keys() -> None:
    with pytest.raises(ConfigError):
        JWTAuthenticator(
            [key_from_jwk(ISSUER.public_jwk)], issuer="i", audience="a", algorithms=["ES256"]
        )
    with pytest.raises(ConfigError, match="unsupported"):
        JWTAuthenticator(
            [key_from_jwk(ISSUER.public_jwk)], issuer="i", audience="a", algorithms=["none"]
        )


def test_key_choice_without_kid_must_be_unambiguous() -> None:
    one, two = TokenIssuer(algorithm="ES256"), TokenIssuer(algorithm="ES256")
    keys = [key_from_pem(one.private_pem()), key_from_pem(two.private_pem())]
    auth = JWTAuthenticator(keys, issuer=one.issuer, audience=one.audience)
    with pytest.raises(AuthenticationError, match="no kid"):
        auth.verify(one.mint(headers={"kid": None}))


RSA = TokenIssuer(algorithm="RS256", kid="rsa1", issuer=ISSUER.issuer, audience=ISSUER.audience)
RSA_2 = TokenIssuer(algorithm="RS256", kid="rsa2", issuer=ISSUER.issuer, audience=ISSUER.audience)
EC = TokenIssuer(algorithm="ES256", kid="ec1", issuer=ISSUER.issuer, audience=ISSUER.audience)


def named(issuer: TokenIssuer) -> Any:
    return key_from_jwk(issuer.public_jwk)


def unnamed(issuer: TokenIssuer) -> Any:
    return key_from_pem(issuer.private_pem())


@pytest.mark.parametrize(
    ("keys", "signer", "accepted"),
    [
        pytest.param([named(RSA), named(EC)], EC, True, id="two-named-keys-one-fits-es256"),
        pytest.param([named(RSA), named(EC)], RSA, True, id="two-named-keys-one-fits-rs256"),
        pytest.param([unnamed(RSA), named(EC)], EC, True, id="unnamed-rsa-named-ec"),
        pytest.param([named(RSA), unnamed(EC)], RSA, True, id="named-rsa-unnamed-ec"),
        pytest.param([named(RSA)], RSA, True, id="one-named-key"),
        pytest.param([named(RSA), named(RSA_2)], RSA, False, id="two-named-keys-fit"),
        pytest.param([unnamed(RSA), named(RSA_2)], RSA, False, id="unnamed-and-named-fit"),
        pytest.param([unnamed(RSA), unnamed(RSA_2)], RSA, False, id="two-unnamed-keys-fit"),
        pytest.param([named(RSA)], EC, False, id="no-key-fits"),
    ],
)
def test_a_token_without_kid_is_checked_with_the_single_key_that_fits_its_alg(
    keys: list[Any], signer: TokenIssuer, accepted: bool
) -> None:
    auth = JWTAuthenticator(keys, issuer=ISSUER.issuer, audience=ISSUER.audience)
    token = signer.mint(headers={"kid": None})
    if accepted:
        assert auth.verify(token).subject == "user-1"
    else:
        with pytest.raises(AuthenticationError, match="no kid and no unique key"):
            auth.verify(token)


def test_weak_rsa_and_none_jwk_are_refused() -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    pem = small.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(ValueError, match="too small"):
        key_from_pem(pem)
    with pytest.raises(ValueError, match="none"):
        key_from_jwk({**ISSUER.public_jwk, "alg": "none"})
    with pytest.raises(ValueError, match="does not fit"):
        key_from_jwk(ISSUER.public_jwk, alg="ES256")


def test_jwks_file_and_config(tmp_path: Any) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(ISSUER.jwks()))
    config = parse_config(
        {
            "auth": {
                "jwt": {
                    "issuer": ISSUER.issuer,
                    "audience": ISSUER.audience,
                    "jwks_file": str(path),
                }
            }
        }
    )
    assert config.auth.jwt is not None
    auth = JWTAuthenticator.from_config(config.auth.jwt)
    assert auth.verify(ISSUER.mint()).subject == "user-1"
    path.write_text(json.dumps({"keys": [{"kty": "EC"}]}))
    with pytest.raises(ConfigError, match=r"jwks_file.keys\[0\]"):
        JWTAuthenticator.from_config(config.auth.jwt)


@pytest.mark.anyio
async def test_authenticate_reads_the_bearer_header() -> None:
    auth = authenticator()
    ctx = RequestContext.from_scope(
        http_scope("/", headers=[("authorization", f"bearer  {ISSUER.mint('z')}")])
    )
    principal = await auth.authenticate(ctx)
    assert principal is not None and principal.subject == "z"
    assert await auth.authenticate(RequestContext.from_scope(http_scope("/"))) is None


def test_time_claims_follow_the_injected_clock() -> None:
    token = ISSUER.mint(now=1_000_000, expires_in=60, claims={"nbf": 1_000_010})
    at = [1_000_020.0]
    auth = authenticator(clock=lambda: at[0], leeway=0)
    assert auth.verify(token).subject == "user-1"
    at[0] = 1_000_005.0
    with pytest.raises(AuthenticationError, match="not yet valid"):
        auth.verify(token)
    at[0] = 1_000_060.0
    with pytest.raises(AuthenticationError, match="expired"):
        auth.verify(token)


def test_the_second_form_of_an_ecdsa_signature_is_the_same_credential() -> None:
    # ECDSA (r, s) and (r, n - s) both verify: without a jti, the credential id
    # (rate-limit keys, anomaly counts, blocks) must not tell the two apart.
    issuer = TokenIssuer(algorithm="ES256", kid="ec-1")
    auth = JWTAuthenticator(
        [key_from_jwk(issuer.public_jwk)], issuer=issuer.issuer, audience=issuer.audience
    )
    token = issuer.mint(claims={"jti": None})
    signed, _, signature = token.rpartition(".")
    raw = base64.urlsafe_b64decode(signature + "==")
    order = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551  # P-256 n
    other = raw[:32] + (order - int.from_bytes(raw[32:], "big")).to_bytes(32, "big")
    twin = signed + "." + b64(other)
    assert twin != token
    first, second = auth.verify(token), auth.verify(twin)
    assert first.credential_id == second.credential_id


MISTYPED_MEMBERS = [
    pytest.param({"alg": {}}, "alg", id="alg-an-object"),
    pytest.param({"alg": ["RS256"]}, "alg", id="alg-a-list"),
    pytest.param({"alg": 256}, "alg", id="alg-a-number"),
    pytest.param({"kty": ["RSA"]}, "kty", id="kty-a-list"),
    pytest.param({"use": ["sig"]}, "use", id="use-a-list"),
    pytest.param({"key_ops": "verify"}, "key_ops", id="key-ops-a-string"),
    pytest.param({"kid": ["rsa-1"]}, "kid", id="kid-a-list"),
]


@pytest.mark.parametrize(("member", "name"), MISTYPED_MEMBERS)
def test_a_configured_jwk_with_a_member_of_the_wrong_type_is_a_config_error(
    tmp_path: Any, member: dict[str, Any], name: str
) -> None:
    jwk = {**ISSUER.public_jwk, **member}
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [jwk, OTHER.public_jwk]}))
    for jwt_section, key in (
        ({"keys": [{"jwk": jwk}]}, r"auth\.jwt\.keys\[0\]"),
        ({"jwks_file": str(path)}, r"auth\.jwt\.jwks_file\.keys\[0\]"),
    ):
        section = {"issuer": ISSUER.issuer, "audience": ISSUER.audience, **jwt_section}
        with pytest.raises(ConfigError, match=f"{key}: {name} is not"):
            build_pipeline(parse_config({"auth": {"jwt": section}}))
