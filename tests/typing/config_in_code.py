"""Configuration models built in code, checked by mypy without the pydantic plugin.

A user's project rarely enables ``pydantic.mypy``; defaults must still be seen as
defaults (``Field(default=...)``), or every keyword left out is a mypy error.
"""

from __future__ import annotations

from secmw.anomaly.config import AnomalyConfig
from secmw.audit.config import FileSinkConfig
from secmw.auth.config import JWTConfig
from secmw.breaker import BreakerConfig
from secmw.config import Config
from secmw.inspect.config import InspectConfig
from secmw.ratelimit import TierConfig

breaker = BreakerConfig(minimum_calls=5)
config = Config(max_body_bytes=5)
tier = TierConfig(name="per-user", rate="10/minute")
audit_file = FileSinkConfig(path="audit.jsonl")
jwt = JWTConfig(issuer="https://issuer.test", audience="api", jwks_url="https://issuer.test/jwks")
inspect = InspectConfig(threshold=0.8)
anomaly = AnomalyConfig(enabled=True)
