"""The secret catalogue: what each secret type looks like and how it is confirmed.

A :class:`SecretType` is data: literal ``anchors`` that every match contains
(found by the prefilter at memory-search speed), a bounded regex that confirms a
candidate, and an optional validator (checksum, decodable header, entropy).
``back`` bounds how far before its anchor a match may start and ``max_len`` how
long a match may be; together they bound the stream holdback. Types whose
secret is one part of a longer match (``password=<secret>``) name that part
``s``; only it is replaced.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from secmw.redact import _checks as check

Validator = Callable[[str], bool]


@dataclass(frozen=True, slots=True)
class SecretType:
    """One kind of secret; see the module docstring for the meaning of each field."""

    name: str
    anchors: tuple[str, ...]
    pattern: str
    max_len: int
    back: int = 0
    check: str | None = None
    validate: Validator | None = None
    ignore_case: bool = False
    priority: int = 60
    source: str = ""
    validation: str = ""


_B = r"(?<![A-Za-z0-9_])"  # not glued to a longer word on the left
_BD = r"(?<![A-Za-z0-9_-])"
_E = r"(?![A-Za-z0-9_])"
_ED = r"(?![A-Za-z0-9_-])"
_AN = "A-Za-z0-9"
_U = "A-Za-z0-9_-"


def _simple(
    name: str,
    anchors: tuple[str, ...],
    body: str,
    max_len: int,
    *,
    dash: bool = False,
    validate: Validator | None = check.not_placeholder,
    source: str,
    validation: str = "shape; placeholders refused",
    priority: int = 60,
    check_after: str | None = None,
) -> SecretType:
    """A prefixed token: one of ``anchors`` then ``body``, bounded on both sides."""
    left, right = (_BD, _ED) if dash else (_B, _E)
    prefix = "(?:" + "|".join(_escape(anchor) for anchor in anchors) + ")"
    return SecretType(
        name,
        anchors,
        left + prefix + body + right,
        max_len,
        check=check_after,
        validate=validate,
        priority=priority,
        source=source,
        validation=validation,
    )


def _escape(literal: str) -> str:
    return "".join("\\" + char if not char.isalnum() and char != "_" else char for char in literal)


_GENERIC_VALUE = r"""[^\s"'`,;<>{}()\[\]\\]"""
_ASSIGN = r"""[A-Za-z0-9_.-]{0,24}?["']?\s{0,4}(?::=|=>|[:=])\s{0,4}["']?"""

TOKENS: tuple[SecretType, ...] = (
    _simple("aws_access_key_id", ("AKIA", "ASIA", "ABIA", "ACCA"), "[A-Z2-7]{16}", 20,
            source="AWS IAM key id: AKIA/ASIA/ABIA/ACCA + 16 base32 characters"),
    _simple("aws_bedrock_api_key", ("ABSK",), "[A-Za-z0-9+/]{105,265}={0,2}", 272,
            validate=check.bedrock, source="AWS Bedrock API key: ABSK + base64",
            validation="body decodes to 'BedrockAPIKey-'", priority=80),
    _simple("google_api_key", ("AIza",), f"[{_U}]{{35}}", 39, dash=True,
            source="Google API key: AIza + 35 characters"),
    _simple("google_oauth_client_secret", ("GOCSPX-",), f"[{_U}]{{28}}", 35, dash=True,
            source="Google OAuth client secret: GOCSPX- + 28 characters"),
    _simple("github_token", ("ghp_", "gho_", "ghu_", "ghs_", "ghr_"), f"[{_AN}]{{36}}", 40,
            validate=check.crc32_tail, priority=80,
            source="GitHub classic token: ghp_/gho_/ghu_/ghs_/ghr_ + 36 characters",
            validation="last 6 characters = base62 CRC32 of the 30 before them"),
    _simple("github_fine_grained_pat", ("github_pat_",), f"[{_AN}]{{22}}_[{_AN}]{{59}}", 93,
            source="GitHub fine-grained PAT: github_pat_ + 22 + _ + 59 characters"),
    _simple("gitlab_pat", ("glpat-",), rf"[{_U}]{{20,64}}(?:\.[{_U}]{{2,16}}){{0,2}}", 120,
            dash=True, source="GitLab personal/project/group token: glpat- + 20+ characters"),
    _simple("gitlab_deploy_token", ("gldt-",), f"[{_U}]{{20,64}}", 69, dash=True,
            source="GitLab deploy token: gldt- + 20+ characters"),
    _simple("gitlab_feed_token", ("glft-",), f"[{_U}]{{20,64}}", 69, dash=True,
            source="GitLab feed token: glft- + 20+ characters"),
    _simple("gitlab_runner_token", ("glrt-",), f"[{_U}]{{20,64}}", 69, dash=True,
            source="GitLab runner authentication token: glrt- + 20+ characters"),
    _simple("gitlab_scim_token", ("glsoat-",), f"[{_U}]{{20,64}}", 71, dash=True,
            source="GitLab SCIM OAuth token: glsoat- + 20+ characters"),
    _simple("gitlab_pipeline_trigger_token", ("glptt-",), "[0-9a-f]{40}", 46, dash=True,
            source="GitLab pipeline trigger token: glptt- + 40 hex"),
    _simple("slack_bot_token", ("xoxb-",), f"[0-9]{{8,13}}-[0-9]{{8,13}}-[{_AN}]{{24}}", 60,
            dash=True, source="Slack bot token: xoxb-<team>-<bot>-<24 characters>"),
    _simple("slack_user_token", ("xoxp-",), "[0-9]{8,13}-[0-9]{8,13}-[0-9]{8,13}-[a-f0-9]{32}",
            80, dash=True, source="Slack user token: xoxp- + three numbers + 32 hex"),
    _simple("slack_app_token", ("xapp-",), "[0-9]-[A-Z0-9]{9,11}-[0-9]{10,13}-[a-f0-9]{64}", 100,
            dash=True, source="Slack app-level token: xapp-<n>-<id>-<n>-<64 hex>"),
    _simple("slack_token", ("xoxa-", "xoxr-", "xoxe-", "xoxe.xoxp-", "xoxe.xoxb-"),
            f"[{_AN}-]{{20,250}}", 260, dash=True,
            source="other Slack tokens: xoxa-/xoxr-/xoxe- (refresh, rotation)"),
    _simple("stripe_secret_key", ("sk_live_", "sk_test_"), f"[{_AN}]{{24,99}}", 107,
            source="Stripe secret key: sk_live_/sk_test_ + 24-99 characters"),
    _simple("stripe_restricted_key", ("rk_live_", "rk_test_"), f"[{_AN}]{{24,99}}", 107,
            source="Stripe restricted key: rk_live_/rk_test_ + 24-99 characters"),
    _simple("twilio_api_key", ("SK",), "[0-9a-f]{32}", 34, check_after="[0-9a-f]{32}",
            source="Twilio API key SID: SK + 32 hex"),
    _simple("twilio_account_sid", ("AC",), "[0-9a-f]{32}", 34, check_after="[0-9a-f]{32}",
            source="Twilio account SID: AC + 32 hex"),
    _simple("sendgrid_api_key", ("SG.",), rf"[{_U}]{{22}}\.[{_U}]{{43}}", 69, dash=True,
            source="SendGrid API key: SG. + 22 + . + 43 characters"),
    _simple("shopify_access_token", ("shpat_", "shpca_", "shppa_"), "[a-fA-F0-9]{32}", 38,
            source="Shopify access token: shpat_/shpca_/shppa_ + 32 hex"),
    _simple("shopify_shared_secret", ("shpss_",), "[a-fA-F0-9]{32}", 38,
            source="Shopify shared secret: shpss_ + 32 hex"),
    _simple("square_access_token", ("sq0atp-", "EAAA"), f"[{_U}]{{22,60}}", 67, dash=True,
            source="Square access token: sq0atp- or EAAA + 22-60 characters"),
    _simple("square_oauth_secret", ("sq0csp-",), f"[{_U}]{{43}}", 50, dash=True,
            source="Square OAuth secret: sq0csp- + 43 characters"),
    _simple("openai_api_key", ("sk-",),
            rf"(?:(?:proj|svcacct|admin)-)?[{_U}]{{20,200}}T3BlbkFJ[{_U}]{{20,200}}", 420,
            dash=True, check_after=f"[{_U}]{{20,220}}T3BlbkFJ",
            source="OpenAI key: sk-, sk-proj-, sk-svcacct-, sk-admin- + ... T3BlbkFJ ...",
            validation="contains T3BlbkFJ (base64 of 'OpenAI')"),
    _simple("anthropic_api_key", ("sk-ant-api03-",), f"[{_U}]{{93}}AA", 108, dash=True,
            source="Anthropic API key: sk-ant-api03- + 93 characters + AA"),
    _simple("anthropic_admin_key", ("sk-ant-admin01-",), f"[{_U}]{{93}}AA", 110, dash=True,
            source="Anthropic admin key: sk-ant-admin01- + 93 characters + AA"),
    _simple("huggingface_token", ("hf_",), "[A-Za-z]{34}", 37,
            source="Hugging Face token: hf_ + 34 letters"),
    _simple("huggingface_org_token", ("api_org_",), "[A-Za-z]{34}", 42,
            source="Hugging Face organisation token: api_org_ + 34 letters"),
    _simple("npm_token", ("npm_",), f"[{_AN}]{{36}}", 40, validate=check.crc32_tail,
            priority=80, source="npm access token: npm_ + 36 characters",
            validation="last 6 characters = base62 CRC32 of the 30 before them"),
    _simple("pypi_token", ("pypi-AgEIcHlwaS5vcmc",), f"[{_U}]{{50,300}}", 320, dash=True,
            priority=80, source="PyPI API token: pypi- + macaroon",
            validation="prefix is base64 of the macaroon header for pypi.org"),
    _simple("vault_token", ("hvs.", "hvb."), f"[{_U}]{{90,250}}", 254, dash=True,
            source="HashiCorp Vault service/batch token: hvs./hvb. + 90+ characters"),
    _simple("digitalocean_token", ("dop_v1_", "doo_v1_", "dor_v1_"), "[a-f0-9]{64}", 71,
            source="DigitalOcean token: dop_v1_/doo_v1_/dor_v1_ + 64 hex"),
    _simple("databricks_token", ("dapi",), "[a-f0-9]{32}(?:-[0-9])?", 38, dash=True,
            check_after="[a-f0-9]{32}", source="Databricks token: dapi + 32 hex"),
    _simple("grafana_service_account_token", ("glsa_",), f"[{_AN}]{{32}}_[A-Fa-f0-9]{{8}}", 46,
            source="Grafana service account token: glsa_ + 32 + _ + 8 hex"),
    _simple("grafana_cloud_token", ("glc_",), "[A-Za-z0-9+/]{32,400}={0,2}", 406,
            source="Grafana Cloud token: glc_ + base64"),
    _simple("age_secret_key", ("AGE-SECRET-KEY-1",), "[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{58}",
            74, dash=True, validate=check.bech32, priority=80,
            source="age secret key: AGE-SECRET-KEY-1 + 58 Bech32 characters",
            validation="Bech32 checksum (BIP 173)"),
    _simple("linear_api_key", ("lin_api_",), f"[{_AN}]{{40}}", 48,
            source="Linear API key: lin_api_ + 40 characters"),
    _simple("pulumi_token", ("pul-",), "[a-f0-9]{40}", 44, dash=True,
            source="Pulumi access token: pul- + 40 hex"),
    _simple("doppler_token", ("dp.pt.", "dp.st.", "dp.sa.", "dp.ct."), f"[{_AN}]{{40,44}}", 50,
            source="Doppler token: dp.pt./dp.st./dp.sa./dp.ct. + 40-44 characters"),
    _simple("postman_api_key", ("PMAK-",), "[a-f0-9]{24}-[a-f0-9]{34}", 64, dash=True,
            source="Postman API key: PMAK- + 24 hex - 34 hex"),
    _simple("new_relic_user_key", ("NRAK-",), "[A-Z0-9]{27}", 32, dash=True,
            source="New Relic user API key: NRAK- + 27 characters"),
    _simple("groq_api_key", ("gsk_",), f"[{_AN}]{{52}}", 56,
            source="Groq API key: gsk_ + 52 characters"),
    _simple("sentry_user_token", ("sntryu_",), "[a-f0-9]{64}", 71,
            source="Sentry user auth token: sntryu_ + 64 hex"),
    _simple("planetscale_token", ("pscale_tkn_", "pscale_pw_"), f"[{_AN}_.-]{{32,64}}", 75,
            dash=True, source="PlanetScale token/password: pscale_tkn_/pscale_pw_ + 32+"),
)

CONTEXTUAL: tuple[SecretType, ...] = (
    SecretType(
        "aws_secret_access_key",
        ("secret_access_key", "secretaccesskey", "secret-access-key", "aws_secret_key"),
        r"(?i:secret[_-]?access[_-]?key|aws_secret_key)" + _ASSIGN
        + r"(?P<s>[A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])",
        120, ignore_case=True, validate=check.aws_secret, priority=70,
        source="AWS secret access key: 40 base64 characters after an AWS secret key name",
        validation="AWS key name before it; entropy >= 4 bits/char; not hex, not placeholder",
    ),
    SecretType(
        "azure_storage_account_key", ("AccountKey=",),
        r"AccountKey=(?P<s>[A-Za-z0-9+/]{86}==)(?![A-Za-z0-9+/=])", 100,
        validate=check.azure_account_key, priority=80,
        source="Azure storage connection string: AccountKey= + 88 base64 characters",
        validation="decodes to 64 bytes",
    ),
    SecretType(
        "azure_ad_client_secret", ("Q~",),
        r"(?<![\w~.-])[\w~.]{3}[0-9]Q~[\w~.-]{31,34}(?![\w~.-])", 40, back=4,
        validate=check.not_placeholder,
        source="Microsoft Entra ID client secret: 3 + digit + Q~ + 31-34 characters",
    ),
    SecretType(
        "discord_bot_token", (".",),
        rf"{_BD}(?:MT|Mj|Mz|ND|NT|Nj|Nz|OD|OT)[{_U}]{{21,23}}\.[{_U}]{{6}}\.[{_U}]{{27,38}}{_ED}",
        72, back=25, check=rf"[{_U}]{{6}}\.[{_U}]{{27}}", validate=check.not_placeholder,
        source="Discord bot token: base64(user id) . 6 . 27-38 characters",
    ),
    SecretType(
        "telegram_bot_token", (":A",),
        rf"(?<![0-9])[0-9]{{5,16}}:A[{_U}]{{34}}{_ED}", 52, back=16,
        check=f"[{_U}]{{34}}", validate=check.not_placeholder,
        source="Telegram bot token: 5-16 digits : A + 34 characters",
    ),
    SecretType(
        "terraform_cloud_token", (".atlasv1.",),
        rf"(?<![a-z0-9])[a-z0-9]{{14}}\.atlasv1\.[{_U}]{{60,70}}{_ED}", 93, back=14,
        validate=check.not_placeholder,
        source="Terraform Cloud/Enterprise token: 14 + .atlasv1. + 60-70 characters",
    ),
    SecretType(
        "mailchimp_api_key", ("-us",),
        r"(?<![A-Za-z0-9])[0-9a-f]{32}-us[0-9]{1,2}(?![A-Za-z0-9])", 37, back=32,
        check="[0-9]", validate=check.not_placeholder,
        source="Mailchimp API key: 32 hex + -us<datacenter>",
    ),
    SecretType(
        "slack_webhook_url", ("hooks.slack.com/",),
        r"https://hooks\.slack\.com/(?:services|workflows|triggers)/T[A-Z0-9]{8,12}/"
        r"[A-Z0-9]{8,12}/[A-Za-z0-9]{24}(?![A-Za-z0-9])", 130, back=8,
        validate=check.not_placeholder,
        source="Slack incoming webhook: https://hooks.slack.com/services/T.../B.../<24>",
    ),
    SecretType(
        "jwt", ("eyJ",),
        rf"{_BD}eyJ[{_U}]{{8,4000}}\.eyJ[{_U}]{{8,8000}}\.[{_U}]{{0,1400}}{_ED}", 13420,
        check=f"[{_U}]{{8}}", validate=check.jwt_parts, priority=70,
        source="JSON Web Token (RFC 7519): eyJ... . eyJ... . signature",
        validation="header and payload decode (base64url) to JSON objects",
    ),
    SecretType(
        "private_key", ("-----BEGIN ",),
        r"-----BEGIN (?P<k>(?:RSA |EC |DSA |OPENSSH |ENCRYPTED |PGP )?PRIVATE KEY(?: BLOCK)?)"
        r"-----(?:-----END (?P=k)-----|[A-Za-z0-9+/=\s:,.\\-])*?"
        r"(?:-----END (?P=k)-----|(?=[^A-Za-z0-9+/=\s:,.\\-])|\Z)", 32768,
        check="(?:RSA |EC |DSA |OPENSSH |ENCRYPTED |PGP )?PRIVATE KEY", priority=90,
        source="PEM/OpenSSH/PGP private key block, through its END line",
        validation="BEGIN line names a private key (PUBLIC KEY and CERTIFICATE are not secrets);"
        " an unterminated block is redacted up to the end of its body",
    ),
    SecretType(
        "putty_private_key", ("PuTTY-User-Key-File-",),
        r"PuTTY-User-Key-File-[23]:[\s\S]{0,16000}?Private-MAC: [0-9a-f]{40,64}", 16120,
        priority=90, source="PuTTY .ppk key file, through its Private-MAC line",
    ),
    SecretType(
        "gcp_service_account_key_id", ('"private_key_id"',),
        r'"private_key_id"\s*:\s*"(?P<s>[0-9a-f]{40})"', 70, priority=80,
        source='GCP service-account JSON: "private_key_id" (its private_key is a private_key)',
    ),
)

# Keywords that open a credential assignment; the value is the secret.
_KEYWORDS = ("passw", "pwd", "secret", "token", "api_key", "apikey", "api-key", "credential",
             "private_key", "private-key")

LOOSE: tuple[SecretType, ...] = (
    SecretType(
        "url_credentials", ("://",),
        r"(?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]{1,20}://[^\s/?#@:\"'<>]{1,128}:"
        r"(?P<s>[^\s/?#@\"'<>]{1,256})@(?=[A-Za-z0-9\[])", 420, back=22,
        check=r"""[^\s/?#@:"'<>]{1,128}:[^\s/?#@"'<>]{1,256}@""",
        validate=check.not_placeholder, priority=50,
        source="credentials in a URL: scheme://user:password@host (the password is replaced)",
        validation="placeholders and ${VAR} refused",
    ),
    SecretType(
        "bearer_token", ("bearer",),
        r"(?<![A-Za-z0-9])(?i:bearer)\s+(?P<s>[A-Za-z0-9._~+/-]{8,4096}=*)(?![A-Za-z0-9._~+/=-])",
        4120, ignore_case=True, check=r"\s+[A-Za-z0-9._~+/-]{8}",
        validate=check.random_looking, priority=40,
        source="Authorization: Bearer <token> in text (RFC 6750)",
        validation="entropy >= 3 bits/char; words and placeholders refused",
    ),
    SecretType(
        "basic_auth", ("basic",),
        r"(?<![A-Za-z0-9])(?i:basic)\s+(?P<s>[A-Za-z0-9+/]{8,1024}={0,2})(?![A-Za-z0-9+/=])",
        1040, ignore_case=True, check=r"\s+[A-Za-z0-9+/]{8}", validate=check.basic_credentials,
        priority=40, source="Authorization: Basic <base64 user:password> in text (RFC 7617)",
        validation="decodes to printable user:password",
    ),
    SecretType(
        "payment_card", ("card", "credit"),
        r"(?i:card|credit)[^0-9\n]{0,30}?(?<![0-9])"
        r"(?P<s>[2-6][0-9](?:[ -]?[0-9]){11,17})(?![0-9])", 80, ignore_case=True,
        check=r"[^0-9\n]{0,30}[2-6]", validate=check.card_number, priority=50,
        source="payment card number (Visa, Mastercard, Amex, Discover) after a card keyword",
        validation="issuer prefix, 13-19 digits, Luhn check; needs 'card' or 'credit' up to 30 characters before it",
    ),
    SecretType(
        "generic_secret", _KEYWORDS,
        r"(?i:passw|pwd|secret|token|api[_-]?key|credential|private[_-]?key)"
        + _ASSIGN + rf"(?P<s>{_GENERIC_VALUE}{{8,256}})(?!{_GENERIC_VALUE})",
        330, ignore_case=True,
        check=r"""[A-Za-z0-9_.-]{0,24}["']?\s{0,4}(?::=|=>|[:=])\s{0,4}["']?"""
        + rf"{_GENERIC_VALUE}{{8}}",
        validate=check.random_looking, priority=10,
        source="a value assigned to a credential-like name (password=, api_key:, token=...)",
        validation="entropy >= 3 bits/char; placeholders, ${VAR}, {{ }}, UUIDs, git SHAs,"
        " plain words refused",
    ),
)

BUILTIN: tuple[SecretType, ...] = TOKENS + CONTEXTUAL + LOOSE
