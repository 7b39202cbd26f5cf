"""The same middleware config in front of different apps and under different servers."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from secmw.testing import TokenIssuer

ISSUER = TokenIssuer()
ROOT = Path(__file__).resolve().parents[2]


def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "secmw.json"
    path.write_text(json.dumps({"auth": {"jwt": ISSUER.jwt_config()}, "audit": {"sink": "none"}}))
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def command(server: str, target: str, port: int) -> list[str]:
    if server == "uvicorn":
        return [
            sys.executable,
            "-m",
            "uvicorn",
            target,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ]
    if server == "hypercorn":
        return [
            sys.executable,
            "-m",
            "hypercorn",
            target,
            "--bind",
            f"127.0.0.1:{port}",
            "--log-level",
            "warning",
        ]
    granian = shutil.which("granian", path=str(Path(sys.executable).parent)) or "granian"
    return [
        granian,
        "--interface",
        "asgi",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
        target,
    ]


@pytest.fixture(params=["uvicorn", "hypercorn", "granian"])
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, int]]:
    server = str(request.param)
    port = free_port()
    env = {**os.environ, "SECMW_TEST_CONFIG": str(config_file(tmp_path)), "PYTHONPATH": str(ROOT)}
    log_path = tmp_path / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command(server, "tests.servers_app:app", port),
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"{server} exited: {log_path.read_text(errors='replace')}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                time.sleep(0.1)
        else:
            pytest.fail(f"{server} did not listen on {port}")
        yield server, port
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


@pytest.mark.slow
def test_http1_behaviour_is_the_same_under_every_server(served: tuple[str, int]) -> None:
    server, port = served
    token = ISSUER.mint("alice")
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
        anonymous = http.get("/x")
        assert anonymous.status_code == 401, server
        assert anonymous.headers["www-authenticate"] == 'Bearer realm="secmw"'
        ok = http.get("/x", headers={"authorization": f"Bearer {token}", "x-request-id": "r-1"})
        assert ok.json() == {"user": "alice", "http_version": "1.1"}
        assert ok.headers["x-request-id"] == "r-1"
        assert (
            http.get("/stream", headers={"authorization": f"Bearer {token}"}).text
            == "one two three"
        )
        assert http.get("/a%2fb", headers={"authorization": f"Bearer {token}"}).status_code == 400
        assert http.get("/x", headers={"authorization": "Bearer a.b.c"}).status_code == 401
    with connect(
        f"ws://127.0.0.1:{port}/ws",
        additional_headers={"authorization": f"Bearer {token}"},
        open_timeout=5,
    ) as ws:
        ws.send("hi")
        assert ws.recv(timeout=5) == "alice:hi"
    with pytest.raises(InvalidStatus) as refused:
        connect(f"ws://127.0.0.1:{port}/ws", open_timeout=5)
    assert refused.value.response.status_code in (401, 403)


@pytest.mark.slow
@pytest.mark.parametrize(
    "served", ["hypercorn", "granian"], indirect=True
)  # uvicorn: HTTP/1.1 only
def test_http2_where_the_server_offers_it(served: tuple[str, int]) -> None:
    _server, port = served
    token = ISSUER.mint("alice")
    with httpx.Client(
        base_url=f"http://127.0.0.1:{port}", http1=False, http2=True, timeout=5
    ) as http:
        anonymous = http.get("/x")
        assert anonymous.http_version == "HTTP/2"
        assert anonymous.status_code == 401
        assert anonymous.headers["www-authenticate"] == 'Bearer realm="secmw"'
        ok = http.get("/x", headers={"authorization": f"Bearer {token}"})
        assert ok.json() == {"user": "alice", "http_version": "2"}
        assert (
            http.get("/stream", headers={"authorization": f"Bearer {token}"}).text
            == "one two three"
        )


@pytest.mark.anyio
async def test_litestar_app_behind_the_middleware(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SECMW_TEST_CONFIG", str(config_file(tmp_path)))
    import importlib

    import tests.servers_app as module

    module = importlib.reload(module)
    transport = httpx.ASGITransport(app=module.litestar_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        assert (await http.get("/who")).status_code == 401
        response = await http.get(
            "/who", headers={"authorization": f"Bearer {ISSUER.mint('bob', scopes=['b', 'a'])}"}
        )
        assert response.json() == {"user": "bob", "scopes": ["a", "b"]}
        assert (await http.get("/who/../who")).status_code == 401
