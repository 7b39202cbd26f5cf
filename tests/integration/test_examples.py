"""Each example runs from its README line and behaves as its README says."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_readme_line_is_the_one_tested() -> None:
    readme = (ROOT / "examples" / "fastapi_service" / "README.md").read_text()
    assert ".venv/bin/python examples/fastapi_service/app.py --port 8001" in readme


def test_fastapi_example(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "out.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "examples/fastapi_service/app.py", "--port", str(port)],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    try:
        deadline = time.monotonic() + 30
        while "listening on" not in log.read_text() and time.monotonic() < deadline:
            assert process.poll() is None, log.read_text()
            time.sleep(0.1)
        tokens = dict(re.findall(r"^(\w+) token: (\S+)$", log.read_text(), re.MULTILINE))
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
            for _ in range(100):
                try:
                    http.get("/health")
                    break
                except httpx.TransportError:
                    time.sleep(0.1)

            def get(path: str, who: str | None = None, method: str = "GET") -> httpx.Response:
                headers = {"authorization": f"Bearer {tokens[who]}"} if who else {}
                return http.request(method, path, headers=headers)

            assert get("/health").json() == {"status": "ok"}
            assert get("/me").status_code == 401
            assert get("/me", "reader").json() == {"subject": "ann", "tenant": "acme", "roles": []}
            assert get("/reports", "reader").json() == {"reports": ["q3", "q4"]}
            assert get("/reports", "mfa").status_code == 403
            assert get("/transfers", "reader", "POST").status_code == 403
            assert get("/transfers", "mfa", "POST").json() == {"status": "sent", "by": "max"}
            assert get("/tenants/acme/orders", "reader").status_code == 200
            assert get("/tenants/globex/orders", "reader").status_code == 403
            assert get("/admin/stats", "reader").status_code == 403
            assert get("/admin/stats", "admin").json() == {"users": 3}
            schemes = get("/openapi.json").json()["components"]["securitySchemes"]
            assert "OAuth2" in schemes
    finally:
        process.terminate()
        process.wait(timeout=10)
