"""Gateway latency overhead: the same upstream called directly and through ``secmw gateway``.

The upstream (the demo's echo app) and the gateway each run under uvicorn in
their own process on 127.0.0.1; one keep-alive client alternates a direct
request and a gateway request, so both see the same machine state. The gateway
runs its full chain with every stage the configuration switches on: here the
default policy with anonymous access allowed, audit off, the egress guard
allowing loopback, one breaker. A third process runs the least a Python reverse
proxy on the same stack does (uvicorn + httpx, no checks): the floor. Prints
p50/p90/p99 in milliseconds.

    python benchmarks/bench_gateway.py [--requests 2000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio
import httpx

UPSTREAM = (
    "import sys, uvicorn\n"
    "from secmw.proxy.demo import echo_upstream\n"
    "uvicorn.run(echo_upstream, host='127.0.0.1', port=int(sys.argv[1]), log_level='warning',"
    " lifespan='off')\n"
)


# The floor: the least a Python reverse proxy on the same stack (uvicorn + httpx)
# does per request, with no checks at all.
FLOOR = (
    "import sys, httpx, uvicorn\n"
    "client = httpx.AsyncClient(base_url=sys.argv[2])\n"
    "async def app(scope, receive, send):\n"
    "    if scope['type'] != 'http':\n"
    "        return\n"
    "    r = await client.get(scope['path'])\n"
    "    headers = [(k, v) for k, v in r.headers.raw if k.lower() != b'transfer-encoding']\n"
    "    await send({'type': 'http.response.start', 'status': r.status_code, 'headers': headers})\n"
    "    await send({'type': 'http.response.body', 'body': r.content})\n"
    "uvicorn.run(app, host='127.0.0.1', port=int(sys.argv[1]), log_level='warning',"
    " lifespan='off')\n"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait(url: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=0.5)
        except httpx.TransportError:
            time.sleep(0.1)
        else:
            return
    raise SystemExit(f"{url} did not come up")


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def in_process(upstream_port: int, requests: int) -> tuple[list[float], list[float]]:
    """The gateway app called in-process (no front socket) against a direct httpx call."""
    from secmw.config import load_config  # noqa: PLC0415
    from secmw.proxy.build import build_gateway  # noqa: PLC0415

    config = {
        "auth": {"allow_anonymous": True},
        "audit": {"sink": "none"},
        "gateway": {
            "upstreams": {"echo": {"targets": [f"http://127.0.0.1:{upstream_port}"]}},
            "routes": [{"prefix": "/", "upstream": "echo"}],
            "egress": {"allow_networks": ["127.0.0.0/8"]},
        },
    }
    gateway = build_gateway(load_config(config))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/echo",
        "raw_path": b"/echo",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"gateway.local"), (b"authorization", b"Bearer client")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    statuses: list[int] = []

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, object]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(int(message["status"]))  # type: ignore[call-overload]

    direct: list[float] = []
    proxied: list[float] = []
    async with httpx.AsyncClient() as client:
        url = f"http://127.0.0.1:{upstream_port}/echo"
        for round_number in range(requests + 200):
            started = time.perf_counter()
            await client.get(url)
            middle = time.perf_counter()
            await gateway(dict(scope), receive, send)
            ended = time.perf_counter()
            if round_number >= 200:  # the first 200 warm up
                direct.append((middle - started) * 1000.0)
                proxied.append((ended - middle) * 1000.0)
    await gateway.proxy.aclose()
    assert set(statuses) == {200}, statuses
    return direct, proxied


def report(title: str, variants: tuple[tuple[str, list[float]], ...]) -> None:
    print(title)
    print(f"{'variant':34} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'mean ms':>8}")
    for name, values in variants:
        print(
            f"{name:34} {percentile(values, 0.5):8.3f} {percentile(values, 0.9):8.3f}"
            f" {percentile(values, 0.99):8.3f} {statistics.fmean(values):8.3f}"
        )
    base = variants[0][1]
    for name, values in variants[1:]:
        added = [percentile(values, q) - percentile(base, q) for q in (0.5, 0.9, 0.99)]
        print(f"{'added: ' + name:34} {added[0]:8.3f} {added[1]:8.3f} {added[2]:8.3f}")


def main(requests: int) -> None:
    upstream_port, gateway_port, floor_port = free_port(), free_port(), free_port()
    config = {
        "auth": {"allow_anonymous": True},
        "audit": {"sink": "none"},
        "gateway": {
            "listen": f"127.0.0.1:{gateway_port}",
            "upstreams": {"echo": {"targets": [f"http://127.0.0.1:{upstream_port}"]}},
            "routes": [{"prefix": "/", "upstream": "echo"}],
            "egress": {"allow_networks": ["127.0.0.0/8"]},
        },
    }
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "gateway.json"
        path.write_text(json.dumps(config))
        processes = [
            subprocess.Popen([sys.executable, "-c", UPSTREAM, str(upstream_port)], env=env),
            subprocess.Popen(
                [sys.executable, "-c", FLOOR, str(floor_port), f"http://127.0.0.1:{upstream_port}"],
                env=env,
            ),
            subprocess.Popen(
                [sys.executable, "-m", "secmw", "gateway", "--config", str(path)],
                env=env,
                stdout=subprocess.DEVNULL,
            ),
        ]
        try:
            direct_url = f"http://127.0.0.1:{upstream_port}/echo"
            gateway_url = f"http://127.0.0.1:{gateway_port}/echo"
            floor_url = f"http://127.0.0.1:{floor_port}/echo"
            for url in (direct_url, gateway_url, floor_url):
                wait(url)
            direct: list[float] = []
            proxied: list[float] = []
            floor: list[float] = []
            plan = ((direct_url, direct), (floor_url, floor), (gateway_url, proxied))
            with httpx.Client() as client:
                for _ in range(200):  # warm-up: connections, imports, caches
                    for url, _sink in plan:
                        client.get(url)
                for _ in range(requests):
                    for url, sink in plan:
                        started = time.perf_counter()
                        response = client.get(url)
                        sink.append((time.perf_counter() - started) * 1000.0)
                        assert response.status_code == 200
            print(
                f"# {platform.python_implementation()} {sys.version.split()[0]},"
                f" {os.cpu_count()} CPUs"
            )
            inner = anyio.run(in_process, upstream_port, requests)
            report(
                f"# in process (no front socket), {requests} requests",
                (("direct httpx call", inner[0]), ("secmw gateway app", inner[1])),
            )
        finally:
            for process in processes:
                process.terminate()
                process.wait(10)
    report(
        f"# over uvicorn, {requests} requests per variant, keep-alive client, loopback",
        (
            ("direct to upstream", direct),
            ("minimal httpx proxy (floor)", floor),
            ("through secmw gateway", proxied),
        ),
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    main(parser.parse_args().requests)
