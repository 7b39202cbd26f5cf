"""SSRF through the gateway: forbidden destinations are refused and never contacted."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from secmw.config import load_config
from secmw.errors import ConfigError
from secmw.proxy.build import build_gateway
from secmw.testing import AuditCapture
from tests.gateway_support import EchoUpstream, HeldReceiver, gateway_config, serve, static_resolver
from tests.support import Sender, http_scope

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[EchoUpstream, str]]:
    echo = EchoUpstream()
    with serve(echo) as url:
        yield echo, url


def closed_config(targets: list[str], **options: Any) -> dict[str, Any]:
    """Like the test config, but with the default egress rules (loopback refused)."""
    config = gateway_config(targets, **options)
    config["gateway"]["egress"] = options.get("egress", {})
    return config


async def through(config: dict[str, Any], **build: Any) -> tuple[Sender, AuditCapture]:
    audit = AuditCapture()
    gateway = build_gateway(load_config(config), audit=audit, **build)
    sender = Sender()
    await gateway(http_scope("/echo"), HeldReceiver(), sender)
    await gateway.proxy.aclose()
    return sender, audit


@pytest.mark.parametrize(
    "target",
    [
        pytest.param("{loopback}", id="127.0.0.1"),
        pytest.param("http://localhost:{port}", id="localhost"),
        pytest.param("http://[::1]:{port}", id="ipv6-loopback"),
        pytest.param("http://169.254.169.254/latest/meta-data", id="metadata"),
        pytest.param("http://[::ffff:127.0.0.1]:{port}", id="ipv4-mapped"),
        pytest.param("http://10.0.0.1", id="private"),
        pytest.param("http://internal.corp.test:{port}", id="dns-to-loopback"),
        pytest.param("http://metadata.corp.test", id="dns-to-metadata"),
    ],
)
async def test_forbidden_destinations_get_502_and_are_never_contacted(
    upstream: tuple[EchoUpstream, str], target: str
) -> None:
    echo, url = upstream
    port = url.rsplit(":", 1)[1]
    resolver = static_resolver(
        {
            "localhost": ["127.0.0.1"],
            "internal.corp.test": ["127.0.0.1"],
            "metadata.corp.test": ["169.254.169.254"],
        }
    )
    seen = len(echo.seen)
    sender, audit = await through(
        closed_config([target.format(loopback=url, port=port)]), resolver=resolver
    )
    assert sender.status == 502
    assert sender.json()["detail"] == "The upstream destination is not allowed."
    assert len(echo.seen) == seen
    event = audit.events[-1]
    assert event.name == "egress_denied"
    assert event.details["outcome"] == "egress_denied"


@pytest.mark.parametrize(
    "target",
    [
        pytest.param("http://2130706433:{port}", id="decimal"),
        pytest.param("http://0177.0.0.1:{port}", id="octal"),
        pytest.param("http://0x7f.1:{port}", id="hex"),
        pytest.param("http://127.1:{port}", id="short"),
    ],
)
def test_numeric_spellings_are_refused_at_configuration(target: str) -> None:
    with pytest.raises(ConfigError) as info:
        build_gateway(load_config(gateway_config([target.format(port=8080)])))
    assert "gateway.upstreams.u.targets" in str(info.value)
    assert "non-canonical numeric host" in str(info.value)


def test_allow_list_is_enforced_at_configuration() -> None:
    config = gateway_config(["http://127.0.0.1:9"], egress={"allow": ["https://api.example.test"]})
    with pytest.raises(ConfigError, match="allow-list"):
        build_gateway(load_config(config))


async def test_explicitly_allowed_loopback_works_and_counts_as_fail_open(
    upstream: tuple[EchoUpstream, str],
) -> None:
    sender, audit = await through(gateway_config([upstream[1]]))
    assert sender.status == 200
    startup = audit.named("sys_startup")[0]
    assert "gateway.egress.allow_networks" in startup.details["fail_open"]
    assert startup.severity == "warning"
