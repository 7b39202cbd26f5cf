"""``secmw apikey create|list|revoke`` and ``secmw token`` (dev tokens from a local key).

Exit codes: 0 success, 1 runtime failure, 2 usage error. An API key is printed
once, at creation, and never stored; only its SHA-256 hash is written.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from secmw._serving import quiet_stdout
from secmw.errors import ComponentError

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


# The longest duration accepted (100 years, the longest an API key may live).
_MAX_DURATION = 100 * 365.25 * 86400


def _duration(text: str) -> float:
    """``90``, ``90s``, ``15m``, ``12h`` or ``30d`` as seconds."""
    unit = text[-1:] if text[-1:] in _UNITS else "s"
    number = text[:-1] if text[-1:] in _UNITS else text
    try:
        value = float(number) * _UNITS[unit]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r}") from None
    if not math.isfinite(value) or value <= 0 or value > _MAX_DURATION:
        raise argparse.ArgumentTypeError("a duration must be positive and at most 100 years")
    return value


def _when(stamp: float | None) -> str:
    if stamp is None:
        return "-"
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _store(args: argparse.Namespace, *, create: bool = False) -> Any:
    from secmw.auth.apikey_store import FileAPIKeyStore  # noqa: PLC0415 - CLI only

    return FileAPIKeyStore(args.store, create=create)


def _apikey_create(args: argparse.Namespace) -> int:
    if sys.stdout is None:
        print("secmw apikey: no standard output to show the key on", file=sys.stderr)
        return 1
    try:
        store = _store(args, create=True)
        record, key = store.new_key(
            args.subject,
            name=args.name,
            tenant=args.tenant,
            roles=args.role,
            scopes=args.scope,
            tier=args.tier,
            expires_in=args.expires_in,
        )
    except (ComponentError, OSError, ValueError) as exc:
        print(f"secmw apikey: {exc}", file=sys.stderr)
        return 1
    # The key is shown before it is stored: a key nobody could see must not work.
    try:
        sys.stdout.write(key + "\n")
        sys.stdout.flush()
    except OSError as exc:
        quiet_stdout()
        print(f"secmw apikey: the key could not be shown ({exc}); nothing stored", file=sys.stderr)
        return 1
    try:
        store.add(record)
    except (ComponentError, OSError) as exc:
        print(f"secmw apikey: the key above was NOT stored: {exc}", file=sys.stderr)
        return 1
    print(
        f"created API key {record.key_id} for {record.subject} "
        f"(expires: {_when(record.expires_at)}); "
        "the key is shown once and cannot be recovered: store it now",
        file=sys.stderr,
    )
    return 0


def _apikey_list(args: argparse.Namespace) -> int:
    try:
        records = _store(args).records()
    except ComponentError as exc:
        print(f"secmw apikey: {exc}", file=sys.stderr)
        return 1
    now = time.time()
    if args.json:
        print(json.dumps([record.to_dict() | {"state": record.state(now)} for record in records]))
        return 0
    print(f"{'id':<12}  {'state':<8}  {'subject':<20}  {'created':<20}  {'expires':<20}  name")
    for record in records:
        print(
            f"{record.key_id:<12}  {record.state(now):<8}  {record.subject:<20}  "
            f"{_when(record.created_at):<20}  {_when(record.expires_at):<20}  {record.name or ''}"
        )
    return 0


def _apikey_revoke(args: argparse.Namespace) -> int:
    try:
        done = _store(args).revoke(args.key_id)
    except (ComponentError, OSError) as exc:
        print(f"secmw apikey: {exc}", file=sys.stderr)
        return 1
    if not done:
        print(f"secmw apikey: no active key {args.key_id}", file=sys.stderr)
        return 1
    print(f"revoked {args.key_id}", file=sys.stderr)
    return 0


def _token(args: argparse.Namespace) -> int:
    from secmw.testing import TokenIssuer  # noqa: PLC0415 - CLI only

    path = Path(args.key)
    options = {"issuer": args.issuer, "audience": args.audience}
    if not path.exists():
        if not args.create_key:
            print(f"secmw token: {path} does not exist (use --create-key)", file=sys.stderr)
            return 2
        issuer = TokenIssuer(algorithm=args.alg or "ES256", kid=args.kid or "dev", **options)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w") as out:
                out.write(issuer.private_pem())
        except OSError as exc:
            print(f"secmw token: cannot write {path}: {exc.strerror or exc}", file=sys.stderr)
            return 1
        print(f"secmw token: wrote a new {issuer.algorithm} key to {path}", file=sys.stderr)
    else:
        try:
            issuer = TokenIssuer.from_pem(path.read_bytes(), kid=args.kid or "dev", **options)
        except (OSError, ValueError, TypeError) as exc:
            print(f"secmw token: cannot use {path}: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
        if args.alg is not None and args.alg != issuer.algorithm:
            print(
                f"secmw token: {path} is a {issuer.algorithm} key, not {args.alg}", file=sys.stderr
            )
            return 2
    if args.jwks:
        print(json.dumps(issuer.jwks(), indent=2))
        return 0
    print(
        issuer.mint(
            args.subject,
            scopes=args.scope,
            roles=args.role,
            tenant=args.tenant,
            tier=args.tier,
            acr=args.acr,
            amr=args.amr,
            expires_in=args.expires_in,
        )
    )
    return 0


def register(commands: Any) -> None:
    """Add ``apikey`` and ``token`` to the ``secmw`` sub-command parser."""
    apikey = commands.add_parser("apikey", help="create, list and revoke API keys")
    actions = apikey.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="create a key (printed once)")
    create.add_argument("--store", required=True, help="the API key file (created if missing)")
    create.add_argument("--subject", required=True, help="the principal the key stands for")
    create.add_argument("--name", help="a label for the key")
    create.add_argument("--tenant")
    create.add_argument("--tier")
    create.add_argument("--role", action="append", default=[], help="repeatable")
    create.add_argument("--scope", action="append", default=[], help="repeatable")
    create.add_argument("--expires-in", type=_duration, help="e.g. 90d, 12h (default: never)")
    create.set_defaults(handler=_apikey_create)
    listing = actions.add_parser("list", help="list keys (never the secrets)")
    listing.add_argument("--store", required=True)
    listing.add_argument("--json", action="store_true", help="JSON instead of a table")
    listing.set_defaults(handler=_apikey_list)
    revoke = actions.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("--store", required=True)
    revoke.add_argument("key_id")
    revoke.set_defaults(handler=_apikey_revoke)

    token = commands.add_parser("token", help="mint a development JWT from a local key")
    token.add_argument("--key", required=True, help="PEM private key (RS256/ES256/EdDSA)")
    token.add_argument("--create-key", action="store_true", help="generate the key if missing")
    token.add_argument(
        "--alg",
        choices=["RS256", "ES256", "EdDSA"],
        help="the key's algorithm (default: ES256 for a new key; an existing key's own)",
    )
    token.add_argument("--kid", help="key id (default: dev)")
    token.add_argument("--issuer", default="https://issuer.example.test")
    token.add_argument("--audience", default="https://api.example.test")
    token.add_argument("--subject", default="dev-user")
    token.add_argument("--scope", action="append", default=[], help="repeatable")
    token.add_argument("--role", action="append", default=[], help="repeatable")
    token.add_argument("--tenant")
    token.add_argument("--tier")
    token.add_argument("--acr")
    token.add_argument("--amr", action="append", default=[], help="repeatable")
    token.add_argument("--expires-in", type=_duration, default=3600.0)
    token.add_argument("--jwks", action="store_true", help="print the public JWKS instead")
    token.set_defaults(handler=_token)


__all__ = ["register"]
