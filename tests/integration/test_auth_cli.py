"""``secmw apikey`` and ``secmw token``: keys shown once, stored hashed; dev tokens verify."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from secmw.auth import APIKeyAuthenticator, FileAPIKeyStore
from secmw.auth.jwt import JWTAuthenticator
from secmw.auth.keys import key_from_jwk
from secmw.cli import main
from secmw.errors import AuthenticationError
from secmw.testing import TokenIssuer

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


def test_a_key_of_another_algorithm_is_named_not_used_and_a_new_key_dir_is_made(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = tmp_path / "new" / "dir" / "dev.pem"
    assert main(["token", "--key", str(key), "--create-key"]) == 0
    assert "ES256" in capsys.readouterr().err
    assert main(["token", "--key", str(key), "--alg", "RS256"]) == 2
    assert "is a ES256 key, not RS256" in capsys.readouterr().err
    assert main(["token", "--key", str(key), "--alg", "ES256"]) == 0


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "99999999999d", "0"])
def test_a_duration_that_is_not_a_sane_number_is_a_usage_error(value: str) -> None:
    for command in (
        ["apikey", "create", "--store", "x", "--subject", "s", "--expires-in", value],
        ["token", "--key", "x", "--expires-in", value],
    ):
        with pytest.raises(SystemExit) as info:
            main(command)
        assert info.value.code == 2


def _create(store: Path, subject: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "secmw",
            "apikey",
            "create",
            "--store",
            str(store),
            "--subject",
            subject,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_parallel_creates_and_a_revoke_all_take_effect(tmp_path: Path) -> None:
    store = tmp_path / "keys.json"
    first = _create(store, "first")
    key_id = first.stdout.strip().split("_")[1]
    with ThreadPoolExecutor(max_workers=7) as pool:
        futures = [pool.submit(_create, store, f"s{n}") for n in range(6)]
        revoked = pool.submit(
            subprocess.run,
            [sys.executable, "-m", "secmw", "apikey", "revoke", "--store", str(store), key_id],
            capture_output=True,
            timeout=60,
            check=False,
        )
        results = [future.result() for future in futures]
    assert revoked.result().returncode == 0
    assert all(result.returncode == 0 for result in results)
    records = {r["key_id"]: r for r in json.loads(store.read_text())["keys"]}
    shown = {result.stdout.strip().split("_")[1] for result in results}
    assert shown <= set(records)  # every key that was printed works
    assert records[key_id]["revoked_at"] is not None


def test_a_key_that_cannot_be_shown_is_not_stored(tmp_path: Path) -> None:
    store = tmp_path / "keys.json"
    command = [sys.executable, "-m", "secmw", "apikey", "create", "--store", str(store)]
    with subprocess.Popen(
        [*command, "--subject", "s"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as process:
        assert process.stdout is not None
        process.stdout.close()  # the reader is gone: a broken pipe
        _, err = process.communicate(timeout=60)
    assert process.returncode == 1
    assert b"nothing stored" in err and b"Traceback" not in err
    assert json.loads(store.read_text())["keys"] == []
    closed = subprocess.run(  # no standard output at all (">&-")
        [*command, "--subject", "s"],
        stderr=subprocess.PIPE,
        preexec_fn=lambda: os.close(1),  # no threads in the child yet
        timeout=60,
        check=False,
    )
    assert closed.returncode == 1
    assert json.loads(store.read_text())["keys"] == []


def test_an_empty_store_file_holds_no_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "keys.json"
    store.touch()
    assert main(["apikey", "list", "--store", str(store), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert main(["apikey", "create", "--store", str(store), "--subject", "s"]) == 0
    assert len(json.loads(store.read_text())["keys"]) == 1


def test_parallel_creates_on_a_store_that_does_not_exist_yet_keep_every_key(
    tmp_path: Path,
) -> None:
    store = tmp_path / "fresh.json"
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda n: _create(store, f"s{n}"), range(8)))
    assert all(result.returncode == 0 for result in results)
    stored = {record["key_id"] for record in json.loads(store.read_text())["keys"]}
    assert {result.stdout.strip().split("_")[1] for result in results} == stored


async def test_a_revocation_through_a_symlink_reaches_the_file_the_server_reads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    real = tmp_path / "var" / "keys.json"
    link = tmp_path / "etc" / "keys.json"
    assert main(["apikey", "create", "--store", str(real), "--subject", "svc"]) == 0
    key = capsys.readouterr().out.strip()
    link.parent.mkdir()
    link.symlink_to(real)
    assert main(["apikey", "revoke", "--store", str(link), key.split("_")[1]]) == 0
    assert link.is_symlink()
    with pytest.raises(AuthenticationError, match="revoked"):
        await APIKeyAuthenticator(FileAPIKeyStore(real)).check(key)


def test_a_key_secmw_cannot_sign_with_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = tmp_path / "p384.pem"
    private = ec.generate_private_key(ec.SECP384R1())
    key.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    assert main(["token", "--key", str(key)]) == 1
    assert main(["token", "--key", str(key), "--jwks"]) == 1  # never a JWKS with a wrong alg
    assert "not an RSA, P-256 or Ed25519 private key" in capsys.readouterr().err


def test_token_kid_names_the_key_in_the_header_and_the_jwks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import jwt

    key = tmp_path / "dev.pem"
    assert main(["token", "--key", str(key), "--create-key", "--kid", "k1"]) == 0
    assert jwt.get_unverified_header(capsys.readouterr().out.strip())["kid"] == "k1"
    assert main(["token", "--key", str(key), "--kid", "k2"]) == 0
    assert jwt.get_unverified_header(capsys.readouterr().out.strip())["kid"] == "k2"
    assert main(["token", "--key", str(key), "--kid", "k2", "--jwks"]) == 0
    assert json.loads(capsys.readouterr().out)["keys"][0]["kid"] == "k2"


def test_check_config_names_a_jwks_file_key_of_the_wrong_type(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    issuer = TokenIssuer(algorithm="RS256", kid="k1")
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [{**issuer.public_jwk, "alg": {}}, issuer.public_jwk]}))
    config = tmp_path / "secmw.json"
    section = {"issuer": issuer.issuer, "audience": issuer.audience, "jwks_file": str(jwks)}
    config.write_text(json.dumps({"auth": {"jwt": section}}))
    assert main(["check-config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "auth.jwt.jwks_file.keys[0]: alg is not a string" in err
    assert "Traceback" not in err
