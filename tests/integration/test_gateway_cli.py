"""``secmw gateway --config FILE`` and ``secmw demo --gateway`` as real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import connect

from secmw.cli import main
from tests.gateway_support import (
    API_KEY,
    COOKIE,
    EchoUpstream,
    assert_no_client_secrets,
    free_port,
    serve,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[EchoUpstream, str]]:
    echo = EchoUpstream()
    with serve(echo) as url:
        yield echo, url
    assert_no_client_secrets(echo)


def start(args: list[str]) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "UPSTREAM_TOKEN": "Bearer upstream-from-env"}
    return subprocess.Popen(
        [sys.executable, "-m", "secmw", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def wait_ready(url: str, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(process.stderr.read() if process.stderr else "exited")
        try:
            httpx.get(url, timeout=0.5)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError("the gateway did not start")


def stop(process: subprocess.Popen[str]) -> str:
    return stop_both(process)[0]


def stop_both(process: subprocess.Popen[str]) -> tuple[str, str]:
    """Ctrl-C the process; its standard output and error."""
    process.send_signal(signal.SIGINT)
    try:
        out, err = process.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
    return out, err


def test_gateway_command_serves_the_configured_chain(
    tmp_path: Path, upstream: tuple[EchoUpstream, str]
) -> None:
    port = free_port()
    config = {
        "auth": {"allow_anonymous": True},
        "audit": {"sink": "stdout"},
        "gateway": {
            "listen": f"127.0.0.1:{port}",
            "upstreams": {
                "echo": {
                    "targets": [upstream[1]],
                    "headers_from_env": {"authorization": "UPSTREAM_TOKEN"},
                }
            },
            "routes": [{"prefix": "/", "upstream": "echo"}],
            "egress": {"allow_networks": ["127.0.0.0/8"]},
            "health": {"liveness_path": "/healthz", "readiness_path": "/readyz"},
        },
    }
    path = tmp_path / "gateway.json"
    path.write_text(json.dumps(config))
    process = start(["gateway", "--config", str(path)])
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(f"{base}/healthz", process)
        ready = httpx.get(f"{base}/readyz")
        echoed = httpx.get(
            f"{base}/echo",
            headers={
                "authorization": "Bearer client-token",
                "x-api-key": API_KEY,
                "cookie": COOKIE,
                # Not trusted (no proxy.trusted_hops): uvicorn must not apply it either.
                "x-forwarded-for": "10.9.8.7",
                "x-forwarded-proto": "https",
            },
        )
        stream = httpx.get(f"{base}/sse")
        with connect(f"ws://127.0.0.1:{port}/ws", additional_headers={"cookie": COOKIE}) as ws:
            ws.send("hi")
            reply = ws.recv(timeout=5)
    finally:
        out = stop(process)
    assert ready.status_code == 200
    assert echoed.status_code == 200
    assert echoed.json()["headers"]["authorization"] == "Bearer upstream-from-env"
    assert "client-token" not in echoed.text
    assert stream.text.count("data:") == 3
    assert reply == "echo:hi"
    assert "secmw gateway: listening" in out
    events = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    names = [event["event"] for event in events]
    assert names[0] == "sys_startup"
    assert "authz_allow" in names
    assert names[-1] == "sys_shutdown"
    assert {e["client"] for e in events if "client" in e} == {"127.0.0.1"}
    ws_events = [e for e in events if e.get("transport") == "websocket"]
    assert ws_events and ws_events[0]["status"] == 101
    assert ws_events[0]["details"]["outcome"] == "ok"


def test_gateway_command_rejects_a_bad_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        '[gateway]\nroutes = [{upstream = "missing"}]\n[gateway.upstreams.a]\ntargets = ["ftp://x"]\n'
    )
    assert main(["gateway", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "gateway.upstreams.a.targets" in err
    assert "unknown upstream" in err or "gateway" in err


def test_gateway_command_names_a_missing_credential_variable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "env.toml"
    path.write_text(
        '[gateway]\nroutes = [{upstream = "a"}]\n'
        '[gateway.upstreams.a]\ntargets = ["https://api.example.test"]\n'
        'headers_from_env = {authorization = "SECMW_TEST_SURELY_UNSET"}\n'
    )
    assert main(["gateway", "--config", str(path)]) == 2
    assert "gateway.upstreams.a.headers_from_env.authorization" in capsys.readouterr().err


def test_check_config_covers_the_gateway_section(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "good.toml"
    good.write_text(
        '[auth]\nallow_anonymous = true\n[gateway]\nroutes = [{upstream = "a"}]\n'
        '[gateway.egress]\nallow_networks = ["127.0.0.0/8"]\n'
        '[gateway.upstreams.a]\ntargets = ["http://127.0.0.1:9000"]\n'
    )
    assert main(["check-config", str(good)]) == 0
    captured = capsys.readouterr()
    assert "gateway OK (1 upstreams, 1 routes)" in captured.out
    assert "gateway.egress.allow_networks" in captured.err
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[gateway]\nroutes = [{upstream = "a"}]\n[gateway.egress]\nallow = ["https://api.example.test"]\n'
        '[gateway.upstreams.a]\ntargets = ["https://other.example.test"]\n'
    )
    assert main(["check-config", str(bad)]) == 2
    captured = capsys.readouterr()
    assert "gateway.upstreams.a.targets[0]" in captured.err
    assert "OK" not in captured.out
    both = tmp_path / "both.toml"  # a value error elsewhere does not hide the gateway's
    both.write_text('max_body_bytes = "big"\n' + bad.read_text())
    assert main(["check-config", str(both)]) == 2
    err = capsys.readouterr().err
    assert "max_body_bytes" in err and "gateway.upstreams.a.targets[0]" in err


def test_demo_gateway_mode_strips_credentials() -> None:
    port = free_port()
    upstream_port = free_port()
    process = start(
        ["demo", "--gateway", "--port", str(port), "--upstream-port", str(upstream_port)]
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(f"{base}/healthz", process)
        assert process.stdout is not None
        lines = []
        while not lines or lines[-1].strip() != "audit events follow as JSON lines:":
            lines.append(process.stdout.readline())
        token = lines[lines.index("token (valid 3600s):\n") + 1].strip()
        anonymous = httpx.get(f"{base}/echo")
        echoed = httpx.get(
            f"{base}/echo",
            headers={
                "authorization": f"Bearer {token}",
                "cookie": COOKIE,
                "x-forwarded-for": "10.9.8.7",  # not trusted: uvicorn must not apply it
            },
        )
        ready = httpx.get(f"{base}/readyz")
    finally:
        out, err = stop_both(process)
    events = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert {event["client"] for event in events if "client" in event} == {"127.0.0.1"}
    assert process.returncode == 0
    assert "Traceback" not in err
    assert "secmw demo: stopped" in out
    assert anonymous.status_code == 401
    assert echoed.status_code == 200
    assert token not in echoed.text
    assert "cookie" not in echoed.json()["headers"]
    assert ready.json()["status"] == "ready"


@pytest.mark.parametrize(
    ("inline", "problem"),
    [
        ('"k\\r\\nX-Evil: 1"', "CR, LF or NUL"),
        ('"caf\\u20ac"', "outside Latin-1"),
        ('"bell\\u0007"', "control character"),
    ],
)
def test_a_header_value_that_cannot_be_sent_is_a_config_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], inline: str, problem: str
) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(
        '[gateway]\nroutes = [{upstream = "a"}]\n'
        '[gateway.upstreams.a]\ntargets = ["https://api.example.test"]\n'
        f"headers = {{x-api-key = {inline}}}\n"
    )
    assert main(["check-config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "gateway.upstreams.a.headers" in err and problem in err
    assert "Traceback" not in err and "Evil" not in err  # the value is not echoed


def test_a_header_value_from_the_environment_is_checked_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SECMW_TEST_BAD_HEADER", "token\r\nX-Evil: 1")
    path = tmp_path / "gateway.toml"
    path.write_text(
        '[gateway]\nroutes = [{upstream = "a"}]\n'
        '[gateway.upstreams.a]\ntargets = ["https://api.example.test"]\n'
        'headers_from_env = {authorization = "SECMW_TEST_BAD_HEADER"}\n'
    )
    assert main(["check-config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "headers_from_env.authorization" in err and "CR, LF or NUL" in err
    assert "Evil" not in err


@pytest.mark.parametrize(
    ("target", "problem", "kept", "secrets"),
    [
        (
            "https://svc:hunter2@api.example.test/v1?key=s3cret",
            "no userinfo, query or fragment",
            "api.example.test/v1",
            ("hunter2", "s3cret"),
        ),
        (
            "htps://admin:S3cretPassw0rd@api.internal/v1",
            "a target is http(s)://",
            "api.internal/v1",
            ("S3cretPassw0rd",),
        ),
    ],
)
def test_a_refused_target_is_not_echoed_with_its_credentials(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    target: str,
    problem: str,
    kept: str,
    secrets: tuple[str, ...],
) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(
        f'[gateway]\nroutes = [{{upstream = "a"}}]\n[gateway.upstreams.a]\ntargets = ["{target}"]\n'
    )
    assert main(["check-config", str(path)]) == 2
    err = capsys.readouterr().err
    assert problem in err and kept in err
    assert not any(secret in err for secret in secrets)


def test_check_config_fails_on_a_gateway_section_it_cannot_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without the gateway extra (httpx), the section is neither checked nor runnable.
    monkeypatch.setitem(sys.modules, "secmw.proxy.build", None)
    path = tmp_path / "gateway.toml"
    path.write_text(
        '[auth]\nallow_anonymous = true\n[gateway]\nroutes = [{upstream = "a"}]\n'
        '[gateway.upstreams.a]\ntargets = ["https://api.example.test"]\n'
        'headers_from_env = {authorization = "SECMW_TEST_SURELY_UNSET"}\n'
    )
    assert main(["check-config", str(path)]) == 2
    captured = capsys.readouterr()
    assert "pip install 'secmw[gateway]'" in captured.err
    assert "OK" not in captured.out
