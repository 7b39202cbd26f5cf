"""Secrets recognised by their surroundings: key names, URLs, headers, PEM blocks."""

from __future__ import annotations

from secmw.redact import _checks as check
from secmw.redact._shapes import ASSIGN, BD, ED, GENERIC_VALUE, U
from secmw.redact.secret_type import SecretType

CONTEXTUAL: tuple[SecretType, ...] = (
    SecretType(
        "aws_secret_access_key",
        ("secret_access_key", "secretaccesskey", "secret-access-key", "aws_secret_key"),
        r"(?i:secret[_-]?access[_-]?key|aws_secret_key)"
        + ASSIGN
        + r"(?P<s>[A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])",
        120,
        ignore_case=True,
        validate=check.aws_secret,
        priority=70,
        source="AWS secret access key: 40 base64 characters after an AWS secret key name",
        validation="AWS key name before it; entropy >= 4 bits/char; not hex, not placeholder",
    ),
    SecretType(
        "azure_storage_account_key",
        ("AccountKey=",),
        r"AccountKey=(?P<s>[A-Za-z0-9+/]{86}==)(?![A-Za-z0-9+/=])",
        100,
        validate=check.azure_account_key,
        priority=80,
        source="Azure storage connection string: AccountKey= + 88 base64 characters",
        validation="decodes to 64 bytes",
    ),
    SecretType(
        "azure_ad_client_secret",
        ("Q~",),
        r"(?<![\w~.-])[\w~.]{3}[0-9]Q~[\w~.-]{31,34}(?![\w~.-])",
        40,
        before="(?<=[0-9]Q~)",
        back=4,
        validate=check.not_placeholder,
        source="Microsoft Entra ID client secret: 3 + digit + Q~ + 31-34 characters",
    ),
    SecretType(
        "discord_bot_token",
        (".",),
        rf"{BD}(?:MT|Mj|Mz|ND|NT|Nj|Nz|OD|OT)[{U}]{{21,24}}\.[{U}]{{6}}\.[{U}]{{27,38}}{ED}",
        73,
        # The id's base64 is 23 (17 digits) to 26 characters (19 digits, ids since 2022).
        before="(?:(?<=[MNO][A-Za-z0-9_-]{22}\\.)|(?<=[MNO][A-Za-z0-9_-]{23}\\.)"
        "|(?<=[MNO][A-Za-z0-9_-]{24}\\.)|(?<=[MNO][A-Za-z0-9_-]{25}\\.))",
        back=26,
        check=rf"[{U}]{{6}}\.[{U}]{{27}}",
        validate=check.not_placeholder,
        source="Discord bot token: base64(user id) . 6 . 27-38 characters",
    ),
    SecretType(
        "telegram_bot_token",
        (":A",),
        rf"(?<![0-9])[0-9]{{5,16}}:A[{U}]{{34}}{ED}",
        52,
        before="(?<=[0-9]{5}:A)",
        back=16,
        check=f"[{U}]{{34}}",
        validate=check.not_placeholder,
        source="Telegram bot token: 5-16 digits : A + 34 characters",
    ),
    SecretType(
        "terraform_cloud_token",
        (".atlasv1.",),
        rf"(?<![a-z0-9])[a-z0-9]{{14}}\.atlasv1\.[{U}]{{60,70}}{ED}",
        93,
        before="(?<=[a-z0-9]{14}\\.atlasv1\\.)",
        back=14,
        validate=check.not_placeholder,
        source="Terraform Cloud/Enterprise token: 14 + .atlasv1. + 60-70 characters",
    ),
    SecretType(
        "mailchimp_api_key",
        ("-us",),
        r"(?<![A-Za-z0-9])[0-9a-f]{32}-us[0-9]{1,2}(?![A-Za-z0-9])",
        37,
        before="(?<=[0-9a-f]{32}-us)",
        back=32,
        check="[0-9]",
        validate=check.not_placeholder,
        source="Mailchimp API key: 32 hex + -us<datacenter>",
    ),
    SecretType(
        "slack_webhook_url",
        ("hooks.slack.com/",),
        r"https://hooks\.slack\.com/(?:services|workflows|triggers)/T[A-Z0-9]{8,12}/"
        r"[A-Z0-9]{8,12}/[A-Za-z0-9]{24}(?![A-Za-z0-9])",
        130,
        before="(?<=https://hooks\\.slack\\.com/)",
        back=8,
        validate=check.not_placeholder,
        source="Slack incoming webhook: https://hooks.slack.com/services/T.../B.../<24>",
    ),
    SecretType(
        "jwt",
        ("eyJ",),
        rf"{BD}eyJ[{U}]{{8,4000}}\.eyJ[{U}]{{8,8000}}\.[{U}]{{0,1400}}{ED}",
        13420,
        check=f"[{U}]{{8}}",
        validate=check.jwt_parts,
        extent="[A-Za-z0-9_.-]*",
        priority=70,
        source="JSON Web Token (RFC 7519): eyJ... . eyJ... . signature",
        validation="header and payload decode (base64url) to JSON objects",
    ),
    SecretType(
        "private_key",
        ("-----BEGIN ",),
        r"-----BEGIN (?P<k>(?:RSA |EC |DSA |OPENSSH |ENCRYPTED |PGP )?PRIVATE KEY(?: BLOCK)?)"
        r"-----(?:-----END (?P=k)-----|[A-Za-z0-9+/=\s:,.\\-])*?"
        r"(?:-----END (?P=k)-----|(?=[^A-Za-z0-9+/=\s:,.\\-])|\Z)",
        32768,
        check="(?:RSA |EC |DSA |OPENSSH |ENCRYPTED |PGP )?PRIVATE KEY",
        extent=r"-----BEGIN [A-Z ]{1,40}-----(?:(?!-----END)[\s\S]){0,32768}"
        r"-----END [A-Z ]{1,40}-----",
        priority=90,
        source="PEM/OpenSSH/PGP private key block, through its END line",
        validation="BEGIN line names a private key (PUBLIC KEY and CERTIFICATE are not secrets);"
        " an unterminated block is redacted up to the end of its body",
    ),
    SecretType(
        "putty_private_key",
        ("PuTTY-User-Key-File-",),
        r"PuTTY-User-Key-File-[23]:[\s\S]{0,16000}?Private-MAC: [0-9a-f]{40,64}",
        16120,
        extent="PuTTY-User-Key-File-[\\s\\S]{0,16000}?Private-MAC: [0-9a-f]*",
        priority=90,
        source="PuTTY .ppk key file, through its Private-MAC line",
    ),
    SecretType(
        "gcp_service_account_key_id",
        ('"private_key_id"',),
        r'"private_key_id"\s*:\s*"(?P<s>[0-9a-f]{40})"',
        70,
        priority=80,
        source='GCP service-account JSON: "private_key_id" (its private_key is a private_key)',
    ),
)

# Keywords that open a credential assignment; the value is the secret.
_KEYWORDS = (
    "passw",
    "pwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "api-key",
    "credential",
    "private_key",
    "private-key",
)

LOOSE: tuple[SecretType, ...] = (
    SecretType(
        "url_credentials",
        ("://",),
        r"(?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]{1,20}://[^\s/?#@:\"'<>]{1,128}:"
        r"(?P<s>[^\s/?#@\"'<>]{1,256})@(?=[A-Za-z0-9\[])",
        420,
        before="(?<=[A-Za-z0-9+.-]{2}://)",
        back=22,
        check=r"""[^\s/?#@:"'<>]{1,128}:[^\s/?#@"'<>]{1,256}@""",
        validate=check.not_placeholder,
        extent="://[^\\s/?#@\"'<>]*",
        priority=50,
        source="credentials in a URL: scheme://user:password@host (the password is replaced)",
        validation="placeholders and ${VAR} refused",
    ),
    SecretType(
        "bearer_token",
        ("bearer",),
        r"(?<![A-Za-z0-9])(?i:bearer)\s{1,8}(?P<s>[A-Za-z0-9._~+/-]{8,4096}=*)(?![A-Za-z0-9._~+/=-])",
        4120,
        ignore_case=True,
        check=r"\s{1,8}[A-Za-z0-9._~+/-]{8}",
        validate=check.random_looking,
        extent="(?i:bearer)\\s{1,8}[A-Za-z0-9._~+/=-]*",
        priority=40,
        source="Authorization: Bearer <token> in text (RFC 6750)",
        validation="entropy >= 3 bits/char; words and placeholders refused",
    ),
    SecretType(
        "basic_auth",
        ("basic",),
        r"(?<![A-Za-z0-9])(?i:basic)\s{1,8}(?P<s>[A-Za-z0-9+/]{8,1024}={0,2})(?![A-Za-z0-9+/=])",
        1040,
        ignore_case=True,
        check=r"\s{1,8}[A-Za-z0-9+/]{8}",
        validate=check.basic_credentials,
        extent="(?i:basic)\\s{1,8}[A-Za-z0-9+/=]*",
        priority=40,
        source="Authorization: Basic <base64 user:password> in text (RFC 7617)",
        validation="decodes to printable user:password",
    ),
    SecretType(
        "payment_card",
        ("card", "credit"),
        r"(?i:card|credit)[^0-9\n]{0,30}?(?<![0-9])"
        r"(?P<s>[2-6][0-9](?:[ -]?[0-9]){11,17})(?![0-9])",
        # A list: up to 31 more card-length numbers (MORE_ITEMS), each within 30
        # characters of the last (at most 67 characters a step).
        80 + 31 * 67,
        ignore_case=True,
        check=r"[^0-9\n]{0,30}[2-6]",
        chain=r"[^0-9\n]{1,30}?(?<![0-9])(?P<item>[0-9](?:[ -]?[0-9]){12,18})(?![0-9])",
        more=r"(?<![0-9])(?P<s>[2-6][0-9](?:[ -]?[0-9]){11,17})(?![0-9])",
        validate=check.card_number,
        priority=50,
        source="payment card number (Visa, Mastercard, Amex, Discover) after a card keyword",
        validation="issuer prefix, 13-19 digits, Luhn check;"
        " 'card' or 'credit' up to 30 characters before it, or before a list of them",
    ),
    SecretType(
        "generic_secret",
        _KEYWORDS,
        r"(?i:passw|pwd|secret|token|api[_-]?key|credential|private[_-]?key)"
        + ASSIGN
        + rf"(?P<s>{GENERIC_VALUE}{{8,256}})(?!{GENERIC_VALUE})",
        330,
        ignore_case=True,
        check=r"""[A-Za-z0-9_.-]{0,24}["']?\s{0,4}(?::=|=>|[:=])\s{0,4}["']?"""
        + rf"{GENERIC_VALUE}{{8}}",
        validate=check.random_looking,
        extent="(?i:passw|pwd|secret|token|api[_-]?key|credential|private[_-]?key)[A-Za-z0-9_.-]*[\"']?\\s{0,4}(?::=|=>|[:=])?\\s{0,4}[\"']?[^\\s\"'`,;<>{}()\\[\\]\\\\]*",
        priority=10,
        source="a value assigned to a credential-like name (password=, api_key:, token=...)",
        validation="entropy >= 3 bits/char; placeholders, ${VAR}, {{ }}, UUIDs, git SHAs,"
        " plain words refused",
    ),
)
