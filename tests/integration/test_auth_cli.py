"""``secmw apikey`` and ``secmw token``: keys shown once, stored hashed; dev tokens verify."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from secmw.auth import APIKeyAuthenticator, FileAPIKeyStore
from secmw.auth.jwt import JWTAuthenticator
from secmw.auth.keys import key_from_jwk
from secmw.cli import main
from secmw.errors import AuthenticationError

pytestmark = pytest.mark.anyio


async def test_apikey_create_list_revoke(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "keys.json"
    args = ["apikey", "create", "--store", str(store), "--subject", "svc", "--scope", "read"]
    assert main([*args, "--role", "bot", "--expires-in", "30d", "--name", "ci"]) == 0
    out = capsys.readouterr()
    key = out.out.strip()
    assert key.startswith("smw_") and "shown once" in out.err
    assert key not in store.read_text()
    auth = APIKeyAuthenticator(FileAPIKeyStore(store))
    principal = await auth.check(key)
    assert principal.scopes == {"read"} and principal.roles == {"bot"}

    assert main(["apikey", "list", "--store", str(store)]) == 0
    table = capsys.readouterr().out
    key_id = key.split("_")[1]
    assert key_id in table and "active" in table and key not in table
    assert main(["apikey", "list", "--store", str(store), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed[0]["state"] == "active" and listed[0]["name"] == "ci"

    assert main(["apikey", "revoke", "--store", str(store), key_id]) == 0
    assert main(["apikey", "revoke", "--store", str(store), key_id]) == 1
    with pytest.raises(AuthenticationError, match="revoked"):
        await APIKeyAuthenticator(FileAPIKeyStore(store)).check(key)
    assert main(["apikey", "list", "--store", str(tmp_path / "missing.json")]) == 1


def test_apikey_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["apikey", "create", "--store", "x", "--subject", "s", "--expires-in", "soon"])
    assert info.value.code == 2
    with pytest.raises(SystemExit):
        main(["apikey", "create", "--store", "x", "--subject", "s", "--expires-in", "-1d"])


@pytest.mark.parametrize("alg", ["ES256", "EdDSA", "RS256"])
def test_token_mints_verifiable_dev_tokens(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], alg: str
) -> None:
    key = tmp_path / "dev.pem"
    common = [
        "token",
        "--key",
        str(key),
        "--audience",
        "https://api.test",
        "--issuer",
        "https://dev",
    ]
    assert main([*common, "--subject", "x"]) == 2  # no key yet
    assert main([*common, "--create-key", "--alg", alg, "--scope", "read", "--acr", "urn:mfa"]) == 0
    token = capsys.readouterr().out.strip()
    assert key.stat().st_mode & 0o777 == 0o600
    assert main([*common, "--jwks"]) == 0
    jwks = json.loads(capsys.readouterr().out)
    auth = JWTAuthenticator(
        [key_from_jwk(jwks["keys"][0])], issuer="https://dev", audience="https://api.test"
    )
    principal = auth.verify(token)
    assert principal.subject == "dev-user" and principal.scopes == {"read"}
    assert principal.acr == "urn:mfa"
    assert main([*common, "--subject", "again", "--expires-in", "5m"]) == 0
    assert auth.verify(capsys.readouterr().out.strip()).subject == "again"
    key.write_text("not a key")
    assert main(common) == 1
