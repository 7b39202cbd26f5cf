"""The ``anomaly.storage`` section: validation, what it builds, the listed fail-open."""

from __future__ import annotations

import pytest

from secmw.anomaly.build import build_monitor
from secmw.anomaly.config import AnomalyConfig
from secmw.anomaly.shared import SharedState, _part
from secmw.config import build_pipeline, parse_config
from secmw.errors import ConfigError


def test_memory_is_the_default_and_shares_nothing() -> None:
    monitor = build_monitor(AnomalyConfig(enabled=True))
    assert monitor is not None and monitor.shared is None


def test_a_redis_url_builds_shared_state_with_its_settings() -> None:
    config = AnomalyConfig.model_validate(
        {
            "enabled": True,
            "auth_failures_by_subject": {"response": "step_up"},
            "storage": {
                "url": "redis://127.0.0.1:1/0",
                "prefix": "team-a:anomaly",
                "on_failure": "fail_closed",
                "timeout": 0.1,
            },
        }
    )
    monitor = build_monitor(config)
    assert monitor is not None and isinstance(monitor.shared, SharedState)
    shared = monitor.shared
    assert shared.mode == "fail_closed" and shared.connection.timeout == 0.1
    assert shared.prefix == "{team-a:anomaly}:"  # one hash slot on a Redis Cluster
    # The shared detectors: bursts, token reuse and denials; not baselines or profiles.
    assert sorted(d.name for d in shared.detectors) == [
        "auth_failures_by_client",
        "auth_failures_by_subject",
        "repeated_denials",
        "token_reuse",
    ]
    assert shared.enforced == {("b", "client"), ("s", "subject")}


@pytest.mark.parametrize(
    ("storage", "key"),
    [
        pytest.param({"url": "http://cache:6379"}, "anomaly.storage.url", id="scheme"),
        pytest.param({"url": "redis+sentinel://h:1"}, "anomaly.storage.url", id="no-service"),
        pytest.param({"prefix": "has space"}, "anomaly.storage.prefix", id="prefix"),
        pytest.param({"on_failure": "fail_open"}, "anomaly.storage.on_failure", id="mode"),
    ],
)
def test_bad_storage_settings_name_their_key(storage: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        build_pipeline(parse_config({"anomaly": {"enabled": True, "storage": storage}}))
    assert [issue.key for issue in caught.value.issues] == [key]


def test_local_fallback_is_a_listed_fail_open() -> None:
    shared = {"enabled": True, "storage": {"url": "redis://127.0.0.1:1/0"}}
    pipeline = build_pipeline(parse_config({"anomaly": shared}))
    assert "anomaly.storage.on_failure=local_fallback" in pipeline.fail_open
    closed = {**shared, "storage": {"url": "redis://127.0.0.1:1/0", "on_failure": "fail_closed"}}
    assert build_pipeline(parse_config({"anomaly": closed})).fail_open == ()
    assert build_pipeline(parse_config({"anomaly": {"enabled": True}})).fail_open == ()


def test_credentials_and_long_keys_are_hashed_in_redis_keys() -> None:
    assert _part("client", "203.0.113.9") == "203.0.113.9"
    assert _part("credential", "jti:abc").startswith("h:")
    assert "jti:abc" not in _part("credential", "jti:abc")
    long_subject = "x" * 500
    assert (
        _part("subject", long_subject).startswith("h:")
        and len(_part("subject", long_subject)) == 34
    )


def test_unknown_failure_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="failure mode"):
        SharedState("redis://127.0.0.1:1/0", on_failure="fail_open")  # type: ignore[arg-type]


def test_a_written_subject_table_keeps_the_subject_threshold_of_ten() -> None:
    from secmw.anomaly.config import AnomalyConfig

    for table in ({}, {"response": "step_up"}, {"window": 600}):
        config = AnomalyConfig.model_validate({"auth_failures_by_subject": table})
        assert config.auth_failures_by_subject.threshold == 10
    assert AnomalyConfig().auth_failures_by_subject.threshold == 10
    assert AnomalyConfig().auth_failures_by_client.threshold == 20


def test_secrets_in_the_config_stay_out_of_its_repr() -> None:
    from secmw.config import load_config

    config = load_config(
        {
            "anomaly": {
                "alerts": {
                    "webhook": {
                        "url": "https://a.test/h",
                        "headers": {"Authorization": "Bearer w-s"},
                    }
                }
            },
            "redact": {"enabled": True, "salt": "salt-secret-0123456789"},
            "auth": {
                "introspection": {
                    "endpoint": "https://as.test/introspect",
                    "client_id": "rs",
                    "client_secret": "cs-secret",
                    "audience": "https://api.test",
                }
            },
        }
    )
    shown = repr(config)
    assert "w-s" not in shown and "salt-secret" not in shown and "cs-secret" not in shown


@pytest.mark.parametrize(
    ("webhook", "message"),
    [
        ({"url": "http://alerts.example.test/hook"}, "must use https"),
        ({"url": "https://a.test/h", "headers": {"x-token": "a\r\nInjected: 1"}}, "CR, LF"),
    ],
)
def test_the_alert_webhook_needs_https_and_clean_headers(
    webhook: dict[str, object], message: str
) -> None:
    from secmw.config import load_config
    from secmw.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        load_config({"anomaly": {"alerts": {"webhook": webhook}}})
