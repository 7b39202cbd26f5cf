"""Configuration loading: every error names its key; files in TOML and JSON."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from secmw.audit import MemoryAuditSink
from secmw.config import Config, build_pipeline, load_config, parse_config
from secmw.errors import ConfigError
from secmw.testing import TokenIssuer
from tests.unit.ratelimit.test_config import TIER


def keys_of(error: ConfigError) -> list[str]:
    return [issue.key for issue in error.issues]


@pytest.mark.parametrize(
    ("data", "key", "message"),
    [
        pytest.param({"max_body_byte": 1}, "max_body_byte", "unknown key", id="typo-top"),
        pytest.param(
            {"auth": {"jwt": {"issuer": "i"}}}, "auth.jwt.audience", "Field required", id="missing"
        ),
        pytest.param(
            {"auth": {"alow_anonymous": True}},
            "auth.alow_anonymous",
            "unknown key",
            id="typo-nested",
        ),
        pytest.param(
            {"max_body_bytes": -1}, "max_body_bytes", "greater than or equal to 0", id="negative"
        ),
        pytest.param(
            {"proxy": {"trusted_hops": 99}},
            "proxy.trusted_hops",
            "less than or equal to 32",
            id="hops",
        ),
        pytest.param(
            {"proxy": {"trusted_proxies": ["10.0.0.300/8"]}},
            "proxy.trusted_proxies",
            "not a CIDR",
            id="cidr",
        ),
        pytest.param(
            {"proxy": {"trusted_proxies": ["10.0.0.1/8"]}},
            "proxy.trusted_proxies",
            "host bits",
            id="cidr-host-bits",
        ),
        pytest.param(
            {"proxy": {"trusted_proxies": ["10.0.0.0/8"]}},
            "proxy.trusted_proxies",
            "needs proxy.trusted_hops",
            id="proxies-without-hops",
        ),
        pytest.param(
            {"request_id": {"header": "x id"}},
            "request_id.header",
            "not a valid header name",
            id="header",
        ),
        pytest.param({"audit": {"sink": "kafka"}}, "audit.sink", "Input should be", id="sink"),
        pytest.param(
            {"auth": {"jwt": {"issuer": "i", "audience": "a"}}},
            "auth.jwt",
            "give keys, jwks_file or jwks_url",
            id="no-keys",
        ),
        pytest.param(
            {"auth": {"jwt": {"issuer": "i", "audience": [], "keys": []}}},
            "auth.jwt.audience",
            "non-empty",
            id="empty-aud",
        ),
        pytest.param(
            {"auth": {"jwt": {"issuer": "i", "audience": "a", "keys": [{"pem": "x", "jwk": {}}]}}},
            "auth.jwt.keys[0]",
            "exactly one",
            id="two-key-sources",
        ),
        pytest.param(
            {"auth": {"jwt": {"issuer": "", "audience": "a", "keys": []}}},
            "auth.jwt.issuer",
            "at least 1",
            id="empty-issuer",
        ),
        pytest.param(
            {"auth": {"public_paths": "/x"}}, "auth.public_paths", "valid list", id="not-a-list"
        ),
    ],
)
def test_invalid_values_name_their_key(data: dict[str, Any], key: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    assert key in keys_of(info.value)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("section", "key"),
    [
        pytest.param({"public_paths": ["admin"]}, "auth.public_paths[0]", id="relative"),
        pytest.param({"public_paths": ["/a/*"]}, "auth.public_paths[0]", id="glob"),
        pytest.param({"public_paths": ["/ok", "/a//b"]}, "auth.public_paths[1]", id="unnormalised"),
        pytest.param(
            {"jwt": {"issuer": "i", "audience": "a", "keys": [{"pem": "nope"}]}},
            "auth.jwt.keys[0]",
            id="bad-pem",
        ),
        pytest.param(
            {"jwt": {"issuer": "i", "audience": "a", "keys": [{"jwk": {"kty": "RSA"}}]}},
            "auth.jwt.keys[0]",
            id="bad-jwk",
        ),
        pytest.param(
            {
                "jwt": {
                    "issuer": "i",
                    "audience": "a",
                    "keys": [{"jwk": {"kty": "oct", "k": "c2hvcnQ"}}],
                }
            },
            "auth.jwt.keys[0]",
            id="short-hmac",
        ),
        pytest.param(
            {"jwt": {"issuer": "i", "audience": "a", "jwks_file": "/nonexistent.json"}},
            "auth.jwt.jwks_file",
            id="missing-jwks",
        ),
        pytest.param(
            {"jwt": {"issuer": "i", "audience": "a", "keys": [{"pem_file": "/nonexistent.pem"}]}},
            "auth.jwt.keys[0]",
            id="missing-pem",
        ),
    ],
)
def test_build_time_errors_name_their_key(section: dict[str, Any], key: str) -> None:
    config = parse_config({"auth": section})
    with pytest.raises(ConfigError) as info:
        build_pipeline(config)
    assert key in keys_of(info.value)


def test_algorithm_that_fits_no_key_is_refused() -> None:
    issuer = TokenIssuer(algorithm="ES256")
    config = parse_config({"auth": {"jwt": issuer.jwt_config(algorithms=["RS256"])}})
    with pytest.raises(ConfigError) as info:
        build_pipeline(config)
    assert "auth.jwt.keys" in keys_of(info.value)


def test_every_issue_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"a": 1, "b": 2, "audit": {"sink": "x"}})
    assert sorted(keys_of(info.value)) == ["a", "audit.sink", "b"]


def test_toml_and_json_files_load(tmp_path: Path) -> None:
    toml = tmp_path / "secmw.toml"
    toml.write_text('max_body_bytes = 10\n[auth]\npublic_paths = ["/health"]\n')
    as_json = tmp_path / "secmw.json"
    as_json.write_text(json.dumps({"max_body_bytes": 10, "auth": {"public_paths": ["/health"]}}))
    assert load_config(toml) == load_config(str(as_json))
    assert load_config(toml).max_body_bytes == 10


@pytest.mark.parametrize("name", ["secmw.toml", "secmw.json"])
def test_a_file_saved_with_a_byte_order_mark_loads(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    text = "max_body_bytes = 10\n" if name.endswith(".toml") else '{"max_body_bytes": 10}'
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())
    assert load_config(path).max_body_bytes == 10


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        pytest.param("c.toml", "max_body_bytes = ", "cannot parse", id="bad-toml"),
        pytest.param("c.json", "{", "cannot parse", id="bad-json"),
        pytest.param("c.json", "[1]", "table/object", id="json-array"),
        pytest.param("c.yaml", "a: 1", "must end in .toml or .json", id="suffix"),
        pytest.param("c.toml", b"\xff", "cannot parse", id="not-utf8"),
    ],
)
def test_unreadable_files_are_config_errors(
    tmp_path: Path, name: str, content: str | bytes, message: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert message in str(info.value)
    assert info.value.source == str(path)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.toml")


def test_other_sources() -> None:
    assert load_config(None) == Config()
    config = Config(max_body_bytes=5)
    assert load_config(config) is config
    with pytest.raises(ConfigError):
        load_config(42)  # type: ignore[arg-type]


def test_defaults_are_closed() -> None:
    pipeline = build_pipeline(Config())
    assert pipeline.authenticator is None
    assert pipeline.fail_open == ()
    assert pipeline.max_body_bytes == 1024 * 1024


def test_component_overrides() -> None:
    sink = MemoryAuditSink()
    assert build_pipeline(Config(), audit=sink).audit is sink
    assert build_pipeline(Config(), audit=None).audit is None
    with pytest.raises(TypeError, match="unknown component"):
        build_pipeline(Config(), auditor=sink)


def test_a_file_that_never_ends_or_nests_too_deeply_is_a_config_error(tmp_path: Path) -> None:
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ConfigError, match="nested too deeply"):
        load_config(deep)
    if Path("/dev/zero").exists():
        with pytest.raises(ConfigError, match=r"must end in \.toml"):
            load_config(Path("/dev/zero"))
        device = tmp_path / "zero.toml"
        device.symlink_to("/dev/zero")
        with pytest.raises(ConfigError, match="not a regular file"):
            load_config(device)
    big = tmp_path / "big.json"
    with big.open("wb") as file:
        file.truncate(17 * 1024 * 1024)
    with pytest.raises(ConfigError, match="larger than 16 MiB"):
        load_config(big)
    os.mkfifo(tmp_path / "fifo.toml")  # no writer: reading it would wait forever
    with pytest.raises(ConfigError, match="not a regular file"):
        load_config(tmp_path / "fifo.toml")
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "config.yaml")
    assert str(info.value).count("invalid secmw configuration") == 1


@pytest.mark.parametrize(
    "url",
    ["redis+cluster://[::1:7000", "redis+cluster://h:99999999", "redis+sentinel://h:0/svc"],
)
def test_malformed_redis_uris_are_config_errors(url: str) -> None:
    with pytest.raises(ConfigError, match=r"ratelimit\.storage\.url"):
        build_pipeline(load_config({"ratelimit": {"storage": {"url": url}, "tiers": [TIER]}}))


def test_an_audit_file_section_is_never_silently_ignored(tmp_path: Path) -> None:
    path = str(tmp_path / "audit.jsonl")
    assert load_config({"audit": {"file": {"path": path}}}).audit.sink == "file"
    with pytest.raises(ConfigError, match=r"\[audit.file\] is set but sink = 'stdout'"):
        load_config({"audit": {"sink": "stdout", "file": {"path": path}}})


@pytest.mark.parametrize(
    ("data", "key", "message"),
    [
        ({"max_body_bytes": True}, "max_body_bytes", "not a boolean"),
        ({"auth": {"allow_anonymous": "yes"}}, "auth.allow_anonymous", "true or false"),
        ({"auth": {"allow_anonymous": 1}}, "auth.allow_anonymous", "true or false"),
        ({"proxy": {"trusted_hops": "2"}}, "proxy.trusted_hops", "not a string"),
        ({"ratelimit": {"storage": {"timeout": "1"}}}, "ratelimit.storage.timeout", "not a string"),
    ],
)
def test_values_of_the_wrong_type_are_not_converted(
    data: dict[str, Any], key: str, message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(data)
    (issue,) = caught.value.issues
    assert issue.key == key and message in issue.message


def test_numbers_where_numbers_belong_still_load() -> None:
    config = load_config({"max_body_bytes": 10, "ratelimit": {"storage": {"timeout": 1}}})
    assert config.max_body_bytes == 10 and config.ratelimit.storage.timeout == 1.0


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"auth": {"realm": "Soci\u00e9t\u00e9"}}, "auth.realm"),
        ({"auth": {"realm": 'a"b'}}, "auth.realm"),
        ({"auth": {"realm": ""}}, "auth.realm"),
        ({"auth": {"resource_metadata": "not a url"}}, "auth.resource_metadata"),
        ({"auth": {"resource_metadata": "ftp://x.test/m"}}, "auth.resource_metadata"),
        ({"metrics": {"buckets": [0.5, 0.5, 1.0]}}, "metrics.buckets"),
        ({"metrics": {"buckets": [-1.0, 1.0]}}, "metrics.buckets"),
        ({"metrics": {"buckets": [2.0, 1.0]}}, "metrics.buckets"),
    ],
)
def test_values_that_would_be_mangled_on_the_wire_are_refused(
    data: dict[str, Any], key: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(data)
    assert [issue.key for issue in caught.value.issues] == [key]


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"max_body_bytes": 1024.0}, "max_body_bytes"),
        ({"metrics": {"buckets": ["0.1", 1.0]}}, "metrics.buckets"),
        ({"metrics": {"buckets": [True, 1.0]}}, "metrics.buckets"),
        (
            {"ratelimit": {"tiers": [{**TIER, "costs": {"routes": {"/x": True}}}]}},
            "ratelimit.tiers[0].costs.routes",
        ),
    ],
)
def test_items_of_lists_and_tables_are_not_converted_either(data: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(data)
    assert [issue.key for issue in caught.value.issues] == [key]


@pytest.mark.parametrize(
    ("section", "listed"),
    [
        pytest.param(
            {
                "auth": {
                    "jwt": {
                        "issuer": "https://i.test",
                        "audience": "a",
                        "jwks_url": "https://i.test/jwks",
                        "required_claims": ["sub"],
                    }
                }
            },
            "auth.jwt.required_claims",
            id="no-exp-required",
        ),
        pytest.param({"auth": {"public_paths": ["/**"]}}, "auth.public_paths", id="public-all"),
        pytest.param({"max_body_bytes": None}, "max_body_bytes", id="no-body-limit"),
        pytest.param(
            {"websocket": {"max_message_bytes": None}},
            "websocket.max_message_bytes",
            id="no-message-limit",
        ),
        pytest.param({"inspect": {"action": "audit"}}, "inspect.action", id="inspect-audit-only"),
        pytest.param({"audit": {"sink": "none"}}, "audit.sink", id="no-audit"),
    ],
)
def test_settings_that_weaken_the_closed_default_are_listed(
    section: dict[str, Any], listed: str
) -> None:
    assert listed in build_pipeline(load_config(section)).fail_open


def test_ordinary_public_paths_are_not_a_listed_fail_open() -> None:
    config = load_config({"auth": {"public_paths": ["/health", "/docs/**"]}})
    assert build_pipeline(config).fail_open == ()


@pytest.mark.parametrize("value", [float("inf"), float("nan")])
def test_infinite_and_nan_numbers_are_config_errors(value: float) -> None:
    with pytest.raises(ConfigError, match=r"rate_spike\.factor"):
        load_config({"anomaly": {"rate_spike": {"factor": value}}})


@pytest.mark.parametrize("kind", ["fifo", "device", "huge"])
def test_files_a_config_names_must_be_small_regular_files(tmp_path: Path, kind: str) -> None:
    import os

    if kind == "fifo":
        target = tmp_path / "jwks.fifo"
        os.mkfifo(target)  # no writer: reading it would block start-up forever
    elif kind == "device":
        target = Path("/dev/zero")
    else:
        target = tmp_path / "big.json"
        with target.open("wb") as file:
            file.truncate(17 * 1024 * 1024)
    jwt = {"issuer": "https://i.test", "audience": "a", "jwks_file": str(target)}
    with pytest.raises(ConfigError, match="jwks_file"):
        build_pipeline(load_config({"auth": {"jwt": jwt}}))
    metrics = {"enabled": True, "token_file": str(target)}
    with pytest.raises(ConfigError, match="token_file"):
        build_pipeline(load_config({"metrics": metrics}))
    trail = {"path": str(tmp_path / "a.jsonl"), "checkpoint_key": str(target)}
    with pytest.raises(ConfigError, match=r"audit\.file\.checkpoint_key: cannot load the key: "):
        build_pipeline(load_config({"audit": {"file": trail}}))


@pytest.mark.parametrize(
    "config",
    [
        {"request_id": {"header": "Authorization"}},
        {"request_id": {"header": "x-api-key"}},
        # Read as the API key header too (the underscore spelling is the same field).
        {"request_id": {"header": "x_api_key"}},
        {
            "request_id": {"header": "x_key"},
            "auth": {"api_key": {"file": "k.json", "header": "x-key"}},
        },
        {
            "request_id": {"header": "x-key"},
            "auth": {"api_key": {"file": "k.json", "header": "x-key"}},
        },
    ],
)
def test_the_request_id_header_cannot_be_a_credential_header(config: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="request id"):
        load_config(config)


@pytest.mark.parametrize(
    "url", ["redis://127.0.0.1:abc", "redis://127.0.0.1:99999", "rediss://h:6380/db"]
)
def test_malformed_plain_redis_urls_are_config_errors(url: str) -> None:
    with pytest.raises(ConfigError, match=r"ratelimit\.storage\.url"):
        load_config({"ratelimit": {"storage": {"url": url}, "tiers": [TIER]}})
    with pytest.raises(ConfigError, match=r"anomaly\.storage\.url"):
        load_config({"anomaly": {"enabled": True, "storage": {"url": url}}})


@pytest.mark.parametrize(
    ("file", "message"),
    [
        ({"path": "/dev/null"}, "not a regular file"),
        ({"mode": 0o666}, "world-writable"),
        ({"mode": 0}, "read and write"),
    ],
)
def test_an_audit_file_that_cannot_be_a_trail_is_a_config_error(
    tmp_path: Path, file: dict[str, Any], message: str
) -> None:
    section = {"path": str(tmp_path / "audit.jsonl"), **file}
    with pytest.raises(ConfigError, match=message):
        load_config({"audit": {"sink": "file", "file": section}})


def test_the_block_wait_stays_below_the_pipelines_sink_deadline(tmp_path: Path) -> None:
    from secmw.pipeline import SINK_DEADLINE

    section = {"path": str(tmp_path / "a.jsonl"), "on_failure": "block"}
    load_config({"audit": {"sink": "file", "file": {**section, "block_timeout_ms": 10_000}}})
    assert SINK_DEADLINE > 10
    with pytest.raises(ConfigError, match="block_timeout_ms"):
        load_config({"audit": {"sink": "file", "file": {**section, "block_timeout_ms": 45_000}}})
