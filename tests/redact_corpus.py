"""A generated corpus of secrets and near misses, one entry per catalogue type.

Everything here is computed independently of ``secmw.redact`` (checksums
included), so a wrong validator in the library makes the corpus tests fail.
Each sample is ``(text, secret)``: the text as it would appear in a response and
the exact substring that must disappear.
"""

from __future__ import annotations

import base64
import json
import random
import string
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

AN = string.ascii_letters + string.digits
U = AN + "_-"
HEX = "0123456789abcdef"
B64 = AN + "+/"
UPPER32 = string.ascii_uppercase + "234567"
BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"

Sample = tuple[str, str]
Make = Callable[[random.Random], Sample]


def rs(rng: random.Random, alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def crc_token(rng: random.Random, prefix: str) -> str:
    body = rs(rng, AN, 30)
    value = zlib.crc32(body.encode())
    digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    tail = ""
    while value:
        value, rest = divmod(value, 62)
        tail = digits[rest] + tail
    return prefix + body + tail.rjust(6, "0")


def _polymod(values: list[int]) -> int:
    generators = [0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3]
    check = 1
    for value in values:
        top = check >> 25
        check = (check & 0x1FFFFFF) << 5 ^ value
        for i in range(5):
            check ^= generators[i] if (top >> i) & 1 else 0
    return check


def age_key(rng: random.Random) -> str:
    hrp = "age-secret-key-"
    data = [rng.randrange(32) for _ in range(52)]
    expanded = [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]
    mod = _polymod(expanded + data + [0] * 6) ^ 1
    data += [(mod >> 5 * (5 - i)) & 31 for i in range(6)]
    return (hrp + "1" + "".join(BECH32[d] for d in data)).upper()


def luhn_card(rng: random.Random, prefix: str = "4", length: int = 16) -> str:
    digits = [int(c) for c in prefix] + [rng.randrange(10) for _ in range(length - len(prefix) - 1)]
    total = 0
    for index, digit in enumerate(reversed(digits)):
        doubled = digit * 2 if index % 2 == 0 else digit
        total += doubled - 9 if doubled > 9 else doubled
    return "".join(map(str, digits)) + str((10 - total % 10) % 10)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def jwt(rng: random.Random) -> str:
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = b64url(
        json.dumps({"sub": rs(rng, AN, 8), "exp": rng.randrange(10**9, 2 * 10**9)}).encode()
    )
    return f"{header}.{payload}.{rs(rng, U, 43)}"


def pem(rng: random.Random, kind: str = "RSA PRIVATE KEY") -> str:
    lines = [rs(rng, B64, 64) for _ in range(6)]
    return f"-----BEGIN {kind}-----\n" + "\n".join(lines) + f"\n-----END {kind}-----"


def putty(rng: random.Random) -> str:
    return (
        "PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none\nComment: deploy\n"
        f"Public-Lines: 2\n{rs(rng, B64, 64)}\n{rs(rng, B64, 20)}\nPrivate-Lines: 1\n"
        f"{rs(rng, B64, 44)}\nPrivate-MAC: {rs(rng, HEX, 64)}"
    )


@dataclass
class Spec:
    """How to make one type's samples, and which near misses apply to it."""

    make: Make
    prefix: int = 0  # length of the literal prefix inside the secret (for the case near miss)
    short: int = 1  # characters to drop to fall under the minimum length
    checksum: bool = False
    glued: bool = True
    placeholder: bool = True
    extra: list[Make] = field(default_factory=list)  # type-specific near misses


def wrap(template: str, secret: str) -> Sample:
    """``template`` with ``{}`` replaced by the secret, and the secret."""
    return template.replace("{}", secret), secret


def token(prefix: str, body: Callable[[random.Random], str], **kw: object) -> Spec:
    return Spec(lambda rng: wrap("key: {} end", prefix + body(rng)), prefix=len(prefix), **kw)  # type: ignore[arg-type]


def ctx(before: str, value: Callable[[random.Random], str], after: str = "", **kw: object) -> Spec:
    kw.setdefault("glued", False)
    return Spec(lambda rng: wrap(before + "{}" + after, value(rng)), **kw)  # type: ignore[arg-type]


def r(alphabet: str, n: int) -> Callable[[random.Random], str]:
    return lambda rng: rs(rng, alphabet, n)


def discord(rng: random.Random) -> str:
    # Snowflake ids of 17 to 19 digits (19 since 2022): a first segment of 23 to 26 characters.
    digits = rng.choice((17, 18, 19))
    user = str(rng.randrange(10 ** (digits - 1), 10**digits))
    return (
        base64.b64encode(user.encode()).decode().rstrip("=")
        + "."
        + rs(rng, U, 6)
        + "."
        + rs(rng, U, 27)
    )


SPECS: dict[str, Spec] = {
    "aws_access_key_id": token("AKIA", r(UPPER32, 16)),
    "aws_bedrock_api_key": token(
        "ABSK",
        lambda rng: base64.b64encode(b"BedrockAPIKey-" + rng.randbytes(70)).decode(),
        short=40,
        checksum=True,
    ),
    "google_api_key": token("AIza", r(U, 35)),
    "google_oauth_client_secret": token("GOCSPX-", r(U, 28)),
    "github_token": Spec(
        lambda rng: wrap("token {}", crc_token(rng, rng.choice(["ghp_", "gho_", "ghs_"]))),
        prefix=4,
        checksum=True,
    ),
    "github_fine_grained_pat": token(
        "github_pat_", lambda rng: rs(rng, AN, 22) + "_" + rs(rng, AN, 59)
    ),
    "gitlab_pat": token("glpat-", r(U, 20)),
    "gitlab_deploy_token": token("gldt-", r(U, 20)),
    "gitlab_feed_token": token("glft-", r(U, 20)),
    "gitlab_runner_token": token("glrt-", r(U, 20)),
    "gitlab_scim_token": token("glsoat-", r(U, 20)),
    "gitlab_pipeline_trigger_token": token("glptt-", r(HEX, 40)),
    "slack_bot_token": token(
        "xoxb-",
        lambda rng: f"{rs(rng, '0123456789', 11)}-{rs(rng, '0123456789', 12)}-{rs(rng, AN, 24)}",
    ),
    "slack_user_token": token(
        "xoxp-",
        lambda rng: "-".join(rs(rng, "0123456789", 11) for _ in range(3)) + "-" + rs(rng, HEX, 32),
    ),
    "slack_app_token": token(
        "xapp-",
        lambda rng: f"1-{rs(rng, UPPER32, 11)}-{rs(rng, '0123456789', 13)}-{rs(rng, HEX, 64)}",
    ),
    "slack_token": token("xoxe-", r(AN, 40), short=21),
    "stripe_secret_key": token("sk_live_", r(AN, 24)),
    "secmw_api_key": token("smw_", lambda rng: rs(rng, HEX, 12) + "_" + rs(rng, U, 43)),
    "stripe_restricted_key": token("rk_live_", r(AN, 32), short=9),
    "twilio_api_key": token("SK", r(HEX, 32)),
    "twilio_account_sid": token("AC", r(HEX, 32)),
    "sendgrid_api_key": token("SG.", lambda rng: rs(rng, U, 22) + "." + rs(rng, U, 43)),
    "shopify_access_token": token("shpat_", r(HEX, 32)),
    "shopify_shared_secret": token("shpss_", r(HEX, 32)),
    "square_access_token": token("sq0atp-", r(U, 22)),
    "square_oauth_secret": token("sq0csp-", r(U, 43)),
    "openai_api_key": token(
        "sk-proj-", lambda rng: rs(rng, U, 74) + "T3BlbkFJ" + rs(rng, U, 74), short=60
    ),
    "anthropic_api_key": token("sk-ant-api03-", lambda rng: rs(rng, U, 93) + "AA"),
    "anthropic_admin_key": token("sk-ant-admin01-", lambda rng: rs(rng, U, 93) + "AA"),
    "huggingface_token": token("hf_", r(string.ascii_letters, 34)),
    "huggingface_org_token": token("api_org_", r(string.ascii_letters, 34)),
    "npm_token": Spec(
        lambda rng: wrap("registry npm {}\n", crc_token(rng, "npm_")),
        prefix=4,
        checksum=True,
    ),
    "pypi_token": token("pypi-AgEIcHlwaS5vcmc", r(U, 60), short=11, checksum=True),
    "vault_token": token("hvs.", r(U, 95), short=6),
    "digitalocean_token": token("dop_v1_", r(HEX, 64)),
    "databricks_token": token("dapi", r(HEX, 32)),
    "grafana_service_account_token": token(
        "glsa_", lambda rng: rs(rng, AN, 32) + "_" + rs(rng, HEX, 8)
    ),
    "grafana_cloud_token": token("glc_", r(B64, 60), short=29),
    "age_secret_key": Spec(lambda rng: wrap("# key\n{}\n", age_key(rng)), prefix=16, checksum=True),
    "linear_api_key": token("lin_api_", r(AN, 40)),
    "pulumi_token": token("pul-", r(HEX, 40)),
    "doppler_token": token("dp.pt.", r(AN, 43), short=4),
    "postman_api_key": token("PMAK-", lambda rng: rs(rng, HEX, 24) + "-" + rs(rng, HEX, 34)),
    "new_relic_user_key": token("NRAK-", r(UPPER32, 27)),
    "groq_api_key": token("gsk_", r(AN, 52)),
    "sentry_user_token": token("sntryu_", r(HEX, 64)),
    "planetscale_token": token("pscale_tkn_", r(AN, 43), short=12),
    "aws_secret_access_key": ctx("aws_secret_access_key = ", r(AN + "/+", 40), "\n"),
    "azure_storage_account_key": ctx(
        "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=",
        lambda rng: base64.b64encode(rng.randbytes(64)).decode(),
        ";EndpointSuffix=core.windows.net",
        checksum=True,
    ),
    "azure_ad_client_secret": ctx(
        "client secret: ",
        lambda rng: rs(rng, AN, 3) + "8Q~" + rs(rng, AN + "~.-_", 34),
        "\n",
        short=4,
    ),
    "telegram_bot_token": ctx(
        "bot ", lambda rng: rs(rng, "123456789", 10) + ":A" + rs(rng, U, 34), " ok"
    ),
    "terraform_cloud_token": ctx(
        "token ", lambda rng: rs(rng, HEX, 14) + ".atlasv1." + rs(rng, AN, 64), "\n", short=5
    ),
    "mailchimp_api_key": ctx(
        "mc ",
        lambda rng: rs(rng, HEX, 32) + "-us" + str(rng.randrange(1, 21)),
        " ",
        short=0,
        extra=[lambda rng: ("mc " + rs(rng, HEX, 31) + "-us7 ", "")],
    ),
    "slack_webhook_url": ctx(
        "POST ",
        lambda rng: (
            f"https://hooks.slack.com/services/T{rs(rng, UPPER32, 10)}/B{rs(rng, UPPER32, 10)}/{rs(rng, AN, 24)}"
        ),
        " done",
    ),
    "discord_bot_token": Spec(lambda rng: wrap("Bot {}", discord(rng))),
    "jwt": Spec(lambda rng: wrap("?jwt={}&state=1", jwt(rng)), checksum=True, short=0),
    "private_key": ctx(
        "key:\n",
        lambda rng: pem(
            rng,
            rng.choice(
                ["RSA PRIVATE KEY", "OPENSSH PRIVATE KEY", "PRIVATE KEY", "PGP PRIVATE KEY BLOCK"]
            ),
        ),
        "\n",
        placeholder=False,
        short=0,
        extra=[lambda rng: (pem(rng, "PUBLIC KEY"), ""), lambda rng: (pem(rng, "CERTIFICATE"), "")],
    ),
    "putty_private_key": ctx(
        "file:\n",
        putty,
        "\n",
        placeholder=False,
        short=0,
        extra=[
            lambda rng: (
                "---- BEGIN SSH2 PUBLIC KEY ----\n"
                + rs(rng, B64, 64)
                + "\n---- END SSH2 PUBLIC KEY ----",
                "",
            )
        ],
    ),
    "gcp_service_account_key_id": ctx(
        '{"type": "service_account", "private_key_id": "', r(HEX, 40), '", "x": 1}'
    ),
    "url_credentials": ctx(
        "DATABASE_URL=postgres://app:",
        r(AN, 16),
        "@db.internal:5432/app",
        short=0,
        extra=[
            lambda rng: ("postgres://app@db.internal:5432/app", ""),
            lambda rng: ("postgres://app:${DB_PASSWORD}@db.internal/app", ""),
        ],
    ),
    "bearer_token": ctx(
        "Authorization: Bearer ",
        r(AN + "._-", 32),
        "\r\n",
        short=0,
        extra=[
            lambda rng: ("use Bearer <token> here", ""),
            lambda rng: ("Bearer authentication is used", ""),
        ],
    ),
    "basic_auth": ctx(
        "Authorization: Basic ",
        lambda rng: base64.b64encode(f"user:{rs(rng, AN, 12)}".encode()).decode(),
        "\r\n",
        checksum=True,
        short=0,
        extra=[
            lambda rng: ('Basic realm="api"', ""),
            lambda rng: ("Basic " + base64.b64encode(rng.randbytes(12)).decode(), ""),
        ],
    ),
    "payment_card": ctx(
        "card number: ",
        lambda rng: luhn_card(rng, rng.choice(["4", "51", "2221", "37"]), 16),
        " exp 12/29",
        checksum=True,
        short=4,
        extra=[lambda rng: ("order id 4111111111111111 shipped", "")],
    ),
    "generic_secret": ctx(
        'db_password = "',
        r(AN + "!#%^*", 20),
        '"',
        short=13,
        extra=[
            lambda rng: ("password=${DB_PASSWORD}", ""),
            lambda rng: ('password: "{{ vault_password }}"', ""),
            lambda rng: ("password=changeme", ""),
            lambda rng: ("token: 3f2b8a4e-1c2d-4e5f-8a9b-0c1d2e3f4a5b", ""),
            lambda rng: ("secret_sha=" + rs(rng, HEX, 40), ""),
            lambda rng: ("password: aaaaaaaaaaaaaaaa", ""),
        ],
    ),
}


def _mutate_last(secret: str) -> str:
    last = secret[-1]
    return secret[:-1] + (
        "B" if last == "A" else "A" if last.isalpha() else "1" if last != "1" else "2"
    )


def near_misses(spec: Spec, rng: random.Random) -> list[tuple[str, str, str]]:
    """(label, text, original secret) for each near miss that applies to ``spec``."""
    text, secret = spec.make(rng)
    out: list[tuple[str, str, str]] = []

    def swap(new: str) -> str:
        return text.replace(secret, new)

    if spec.checksum:
        if spec.make is SPECS["jwt"].make:
            header, payload, sig = secret.split(".")
            out.append(("checksum", swap(header + "." + "eyJ" + payload[4:] + "." + sig), secret))
        elif spec.make is SPECS["aws_bedrock_api_key"].make:
            out.append(
                (
                    "checksum",
                    swap(secret[:5] + ("X" if secret[5] != "X" else "Y") + secret[6:]),
                    secret,
                )
            )
        elif spec.make is SPECS["pypi_token"].make:
            out.append(
                ("checksum", swap(secret.replace("AgEIcHlwaS5vcmc", "AgEIcHlwaS5vcmd")), secret)
            )
        elif spec.make is SPECS["basic_auth"].make:
            out.append(
                ("checksum", swap(base64.b64encode(b"nocolon" + rng.randbytes(6)).decode()), secret)
            )
        elif spec.make is SPECS["azure_storage_account_key"].make:
            out.append(("checksum", swap(secret[:-3] + "=="), secret))
        else:
            out.append(("checksum", swap(_mutate_last(secret)), secret))
    if spec.short:
        out.append(("length", swap(secret[: -spec.short]), secret))
    if spec.placeholder:
        fill = secret[: spec.prefix] + "x" * (len(secret) - spec.prefix)
        out.append(("placeholder", swap(fill), secret))
    if spec.prefix and secret[: spec.prefix].swapcase() != secret[: spec.prefix]:
        out.append(("case", swap(secret[: spec.prefix].swapcase() + secret[spec.prefix :]), secret))
    if spec.glued:
        out.append(("glued", swap("a" + secret + "a"), secret))
    out.extend(("other", *make(rng)) for make in spec.extra)
    return out


__all__ = ["SPECS", "Spec", "near_misses", "rs"]
