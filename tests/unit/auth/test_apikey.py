"""API keys: hashed storage, constant-time check, revocation, expiry, rotation, file store."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from secmw.auth import APIKeyAuthenticator, FileAPIKeyStore, MemoryAPIKeyStore
from secmw.auth.apikey_store import APIKeyRecord, hash_key
from secmw.errors import AuthenticationError, ComponentError
from tests.auth_support import FakeClock, ctx_with

pytestmark = pytest.mark.anyio


def setup(clock: FakeClock | None = None) -> tuple[MemoryAPIKeyStore, APIKeyAuthenticator, str]:
    clock = clock or FakeClock()
    store = MemoryAPIKeyStore(clock=clock)
    _, key = store.create(
        "svc-a", roles=["reader"], scopes=["read"], tier="pro", tenant="t1", expires_in=3600
    )
    return store, APIKeyAuthenticator(store, clock=clock), key


async def test_header_and_authorization_scheme_both_work() -> None:
    _, auth, key = setup()
    for headers in ([("x-api-key", key)], [("authorization", f"ApiKey {key}")]):
        principal = await auth.authenticate(ctx_with(*headers))
        assert principal is not None
        assert principal.subject == "svc-a" and principal.auth_method == "api_key"
        assert principal.scopes == {"read"} and principal.roles == {"reader"}
        assert (principal.tier, principal.tenant) == ("pro", "t1")
        assert principal.credential_id is not None and key not in principal.credential_id


async def test_no_key_is_not_ours() -> None:
    _, auth, _ = setup()
    assert await auth.authenticate(ctx_with()) is None
    assert await auth.authenticate(ctx_with(("authorization", "Basic abc"))) is None


@pytest.mark.parametrize(
    ("mangle", "reason"),
    [
        pytest.param(
            lambda key: key[:-1] + ("A" if key[-1] != "A" else "B"), "unknown", id="wrong-secret"
        ),
        pytest.param(lambda key: "smw_ffffffffffff_" + key[-43:], "unknown", id="unknown-id"),
        pytest.param(lambda key: key + "x", "malformed", id="too-long"),
        pytest.param(lambda key: "password123", "malformed", id="not-a-key"),
        pytest.param(lambda key: key.upper(), "malformed", id="upper-cased"),
    ],
)
async def test_bad_keys_are_401(mangle: object, reason: str) -> None:
    _, auth, key = setup()
    with pytest.raises(AuthenticationError, match=reason) as info:
        await auth.authenticate(ctx_with(("x-api-key", mangle(key))))  # type: ignore[operator]
    assert info.value.status == 401 and info.value.error == "invalid_token"


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param([("x-api-key", "a"), ("x-api-key", "b")], id="duplicate-header"),
        pytest.param([("x-api-key", "a"), ("authorization", "Bearer x")], id="key-and-bearer"),
        pytest.param([("x-api-key", "a"), ("authorization", "ApiKey a")], id="key-twice"),
    ],
)
async def test_ambiguous_credentials_are_400(headers: list[tuple[str, str]]) -> None:
    _, auth, _ = setup()
    with pytest.raises(AuthenticationError) as info:
        await auth.authenticate(ctx_with(*headers))
    assert info.value.status == 400


async def test_revocation_expiry_and_rotation() -> None:
    clock = FakeClock()
    store, auth, old = setup(clock)
    record, new = store.create("svc-a")  # rotation: a second key for the same principal
    assert (await auth.check(old)).subject == (await auth.check(new)).subject == "svc-a"
    old_id = old.split("_")[1]
    assert store.revoke(old_id) and not store.revoke(old_id) and not store.revoke("nope")
    with pytest.raises(AuthenticationError, match="revoked") as info:
        await auth.check(old)
    assert info.value.event == "authn_token_revoked"
    assert (await auth.check(new)).subject == "svc-a"
    expiring = store.create("svc-b", expires_in=10)[1]
    clock.advance(10)
    with pytest.raises(AuthenticationError, match="expired") as info:
        await auth.check(expiring)
    assert info.value.event == "authn_token_expired"
    assert [r.state(clock.now) for r in store.records()][:2] == ["revoked", "active"]
    assert record.key_hash == hash_key(new) and new not in json.dumps(record.to_dict())


async def test_file_store_round_trip_and_reload(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    writer = FileAPIKeyStore(path, create=True)
    record, key = writer.create("svc", scopes=["a"])
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert key not in path.read_text()
    reader = FileAPIKeyStore(path, reload_interval=0)
    auth = APIKeyAuthenticator(reader)
    assert (await auth.check(key)).scopes == {"a"}
    FileAPIKeyStore(path).revoke(record.key_id)  # another process revokes it
    with pytest.raises(AuthenticationError, match="revoked"):
        await auth.check(key)


async def test_file_store_failures_are_component_errors(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    with pytest.raises(ComponentError):
        FileAPIKeyStore(path)
    path.write_text("{not json")
    with pytest.raises(ComponentError):
        FileAPIKeyStore(path)
    store = FileAPIKeyStore(tmp_path / "new.json", create=True, reload_interval=0)
    (tmp_path / "new.json").write_text('{"keys": [{"key_id": 1}]}')
    with pytest.raises(ComponentError):
        await store.get("x")


def test_records_refuse_bad_shapes() -> None:
    with pytest.raises(ValueError, match="malformed"):
        APIKeyRecord.from_dict({"key_id": "a", "key_hash": "md5:x", "subject": "s"})
    with pytest.raises(ValueError, match="malformed"):
        APIKeyRecord.from_dict({"key_id": "a"})
    with pytest.raises(ValueError, match="empty"):
        MemoryAPIKeyStore().create("")


WRONG_TYPES = [
    pytest.param({"roles": "admin"}, "roles", id="roles-a-string"),
    pytest.param({"scopes": "tools:call tools:read"}, "scopes", id="scopes-a-string"),
    pytest.param({"roles": ["reader", 1]}, "roles", id="roles-with-a-number"),
    pytest.param({"subject": None}, "subject", id="subject-null"),
    pytest.param({"subject": 7}, "subject", id="subject-a-number"),
    pytest.param({"name": ["svc"]}, "name", id="name-a-list"),
    pytest.param({"tenant": 1}, "tenant", id="tenant-a-number"),
    pytest.param({"tier": {"pro": True}}, "tier", id="tier-an-object"),
    pytest.param({"key_id": 123}, "key_id", id="key-id-a-number"),
]


@pytest.mark.parametrize(("edit", "field"), WRONG_TYPES)
async def test_a_hand_edited_record_of_the_wrong_type_refuses_the_file(
    tmp_path: Path, edit: dict[str, object], field: str
) -> None:
    path = tmp_path / "keys.json"
    _, key = FileAPIKeyStore(path, create=True).create("svc", roles=["reader"], scopes=["read"])
    reader = FileAPIKeyStore(path, reload_interval=0)
    auth = APIKeyAuthenticator(reader)
    assert (await auth.check(key)).roles == {"reader"}
    document = json.loads(path.read_text())
    document["keys"][0].update(edit)
    path.write_text(json.dumps(document))
    with pytest.raises(ComponentError, match=field):  # a 503 while the file is served
        await auth.check(key)
    with pytest.raises(ComponentError, match=field):  # refused at start-up
        FileAPIKeyStore(path)


async def test_principal_is_built_once_per_record() -> None:
    store, auth, key = setup()
    first = await auth.check(key)
    assert await auth.check(key) is first
    store.create("other")  # unrelated change: same record, same principal
    assert await auth.check(key) is first


async def test_an_unreadable_key_file_fails_every_lookup_until_it_reads_again(
    tmp_path: Path,
) -> None:
    path = tmp_path / "keys.json"
    _, key = FileAPIKeyStore(path, create=True).create("svc")
    reader = FileAPIKeyStore(path, reload_interval=3600)
    auth = APIKeyAuthenticator(reader)
    assert (await auth.check(key)).subject == "svc"
    saved = path.read_bytes()
    path.write_text("{torn")
    reader._checked = float("-inf")  # the hour is over
    for _ in range(5):  # not only the lookup that read the torn file: every one after it
        with pytest.raises(ComponentError):
            await auth.check(key)
    path.write_bytes(saved)
    assert (await auth.check(key)).subject == "svc"
