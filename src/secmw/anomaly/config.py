"""Configuration models of anomaly detection (the ``anomaly`` section)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, HttpUrl, field_validator

from secmw._config_base import (
    ConfigModel,
    header_name,
    header_value_problem,
    https_url,
    storage_url,
)

ResponseName = Literal["alert", "step_up", "block"]


class _DetectorConfig(ConfigModel):
    """Settings every detector has: whether it runs and what it does when it fires."""

    enabled: bool = True
    response: ResponseName = "alert"
    cool_down: float = Field(default=900.0, gt=0, le=7 * 86_400)


class AuthFailuresConfig(_DetectorConfig):
    """Authentication-failure bursts from one key (client address or subject)."""

    threshold: int = Field(default=20, ge=1, le=100_000)
    window: float = Field(default=300.0, gt=0, le=86_400)
    failure_events: list[str] = Field(
        default_factory=lambda: ["authn_login_fail", "authn_token_invalid"]
    )
    count_app_401: bool = True


class AuthFailuresByClientConfig(AuthFailuresConfig):
    """Brute force from one address; blocks it by default."""

    response: ResponseName = "block"


class AuthFailuresBySubjectConfig(AuthFailuresConfig):
    """Guessing against one account: a lower threshold than per address."""

    threshold: int = Field(default=10, ge=1, le=100_000)


class TokenReuseConfig(_DetectorConfig):
    """One credential from many client addresses."""

    threshold: int = Field(default=5, ge=2, le=10_000)
    window: float = Field(default=600.0, gt=0, le=86_400)


class RateSpikeConfig(_DetectorConfig):
    """Requests per interval against the principal's own EWMA baseline."""

    interval: float = Field(default=60.0, gt=0, le=86_400)
    factor: float = Field(default=10.0, gt=1)
    min_requests: int = Field(default=100, ge=1)
    alpha: float = Field(default=0.1, gt=0, le=1)
    warmup: int = Field(default=30, ge=1)


class RepeatedDenialsConfig(_DetectorConfig):
    """Policy denials and rate-limit rejections of one principal."""

    threshold: int = Field(default=20, ge=1, le=100_000)
    window: float = Field(default=300.0, gt=0, le=86_400)
    denial_events: list[str] = Field(
        default_factory=lambda: ["authz_fail", "excess_rate_limit_exceeded"]
    )


class NewTargetConfig(_DetectorConfig):
    """First use of a tool or route after the learning period (off by default)."""

    enabled: bool = False
    learning_days: float = Field(default=7.0, gt=0, le=365)
    min_requests: int = Field(default=50, ge=0)
    route_depth: int = Field(default=2, ge=1, le=16)
    max_targets: int = Field(default=256, ge=1, le=100_000)


class OffHoursConfig(_DetectorConfig):
    """Access on a day or at an hour the principal never used (off by default)."""

    enabled: bool = False
    learning_days: float = Field(default=14.0, gt=0, le=365)
    min_requests: int = Field(default=50, ge=0)
    timezone: str = "UTC"

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError  # noqa: PLC0415 - validation only

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            # OSError: a region's directory ("America") or an over-long name.
            raise ValueError(f"{value!r} is not a known time zone") from None
        return value


class WebhookConfig(ConfigModel):
    """An HTTP endpoint that receives each alert as a JSON POST (needs the gateway extra)."""

    url: HttpUrl
    timeout: float = Field(default=5.0, gt=0, le=60)
    max_queue: int = Field(default=1000, ge=1, le=1_000_000)
    retries: int = Field(default=3, ge=0, le=10)
    backoff: float = Field(default=0.5, gt=0, le=60)
    # Often an Authorization header: kept out of repr() and tracebacks.
    headers: dict[str, str] = Field(default_factory=dict, repr=False)

    @field_validator("url")
    @classmethod
    def _https(cls, value: HttpUrl) -> HttpUrl:
        # Alerts name subjects and addresses, and the headers carry a credential.
        https_url(str(value), "url")
        return value

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        checked = {}
        for name, field_value in value.items():
            problem = header_value_problem(field_value)
            if problem is not None:
                raise ValueError(f"the value of {name!r} {problem}")  # the value is not echoed
            checked[header_name(name)] = field_value
        return checked


class AlertsConfig(ConfigModel):
    """Where alerts go, after de-duplication."""

    dedup_window: float = Field(default=300.0, ge=0, le=86_400)
    structlog: bool = True
    webhook: WebhookConfig | None = None


class AnomalyStorageConfig(ConfigModel):
    """Where the shared counting state lives: this process (``memory://``) or Redis."""

    url: str = "memory://"
    prefix: str = Field(default="secmw:anomaly", pattern=r"^[A-Za-z0-9_.:\-]{1,64}$")
    connect_timeout: float = Field(default=0.25, gt=0, le=30)
    timeout: float = Field(default=0.25, gt=0, le=30)
    on_failure: Literal["local_fallback", "fail_closed"] = "local_fallback"
    retry_interval: float = Field(default=0.5, ge=0, le=60)

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        return storage_url(value)


class AnomalyConfig(ConfigModel):
    """Anomaly detection: off unless ``enabled``; each detector has its own table."""

    enabled: bool = False
    max_keys: int = Field(default=100_000, ge=1, le=10_000_000)
    block_status: Literal[403, 429] = 429
    step_up_acr_values: list[str] = Field(default_factory=list)
    auth_failures_by_client: AuthFailuresByClientConfig = Field(
        default_factory=AuthFailuresByClientConfig
    )
    # Its own class: a written table (even just ``response``) keeps the default of 10.
    auth_failures_by_subject: AuthFailuresBySubjectConfig = Field(
        default_factory=AuthFailuresBySubjectConfig
    )
    token_reuse: TokenReuseConfig = Field(default_factory=TokenReuseConfig)
    rate_spike: RateSpikeConfig = Field(default_factory=RateSpikeConfig)
    repeated_denials: RepeatedDenialsConfig = Field(default_factory=RepeatedDenialsConfig)
    new_target: NewTargetConfig = Field(default_factory=NewTargetConfig)
    off_hours: OffHoursConfig = Field(default_factory=OffHoursConfig)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
    storage: AnomalyStorageConfig = Field(default_factory=AnomalyStorageConfig)
