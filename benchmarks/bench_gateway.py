"""Gateway latency overhead: the same upstream called directly and through ``secmw gateway``.

The upstream (the demo's echo app) and the gateway each run under uvicorn in
their own process on 127.0.0.1, with the same uvicorn settings (access log off;
uvicorn's own choice of HTTP parser and event loop, printed in the header). One
keep-alive client sends a direct request, a floor request and a gateway request
per round, rotating the order every round so that no variant always runs right
after another one (a request's tail work in one process would otherwise always
land on the same next variant). The gateway runs its full chain with every stage
the configuration switches on: here authentication (anonymous allowed), the
default policy, audit off, the egress guard allowing loopback, one breaker. A
third process runs the least a Python reverse proxy on uvicorn + httpx does (no
checks): the floor. Two clients drive the same servers: httpx's ``Client`` and a
raw-socket HTTP/1.1 client whose own cost is a few microseconds. Prints
p50/p90/p99 in milliseconds.

    python benchmarks/bench_gateway.py [--requests 2000] [--before OTHER/src]
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import httpx

UPSTREAM = (
    "import sys, uvicorn\n"
    "from secmw.proxy.demo import echo_upstream\n"
    "uvicorn.run(echo_upstream, host='127.0.0.1', port=int(sys.argv[1]), log_level='warning',"
    " lifespan='off', access_log=False)\n"
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
    " lifespan='off', access_log=False)\n"
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


async def in_process(upstream_port: int, requests: int) -> dict[str, list[float]]:
    """The gateway app called in-process (no front socket) against direct calls.

    ``secmw client`` is the same client the gateway forwards with, called
    directly: the gateway app minus it is secmw's own share.
    """
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

    origin = httpx.URL(f"http://127.0.0.1:{upstream_port}")
    upstream = gateway.proxy.upstream

    async def own_client() -> None:
        response = await upstream.send("GET", origin, b"/echo", [], None)
        async for _chunk in response.aiter_raw():
            pass
        await response.aclose()

    results: dict[str, list[float]] = {"httpx": [], "client": [], "gateway": []}
    async with httpx.AsyncClient() as client:
        url = f"http://127.0.0.1:{upstream_port}/echo"

        async def via_httpx() -> None:
            await client.get(url)

        async def via_gateway() -> None:
            await gateway(dict(scope), receive, send)

        calls = (("httpx", via_httpx), ("client", own_client), ("gateway", via_gateway))
        for round_number in range(requests + 200):
            for name, call in calls:
                started = time.perf_counter()
                await call()
                if round_number >= 200:  # the first 200 warm up
                    results[name].append((time.perf_counter() - started) * 1000.0)
    await gateway.proxy.aclose()
    assert set(statuses) == {200}, statuses
    return results


class RawClient:
    """A keep-alive HTTP/1.1 client on a blocking socket: a few microseconds of its own."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.request = b"GET /echo HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n"

    def get(self) -> int:
        self.sock.sendall(self.request)
        buffer = b""
        while b"\r\n\r\n" not in buffer:
            buffer += self._receive()
        head, _, body = buffer.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        fields = dict(line.lower().split(b": ", 1) for line in lines[1:])
        length = int(fields[b"content-length"])
        while len(body) < length:
            body += self._receive()
        return int(lines[0].split()[1])

    def _receive(self) -> bytes:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("server closed the connection")
        return data

    def close(self) -> None:
        self.sock.close()


def drive(urls: dict[str, str], requests: int, kind: str) -> dict[str, list[float]]:
    """``requests`` rounds over ``urls`` with one client, the order rotating every round."""
    results: dict[str, list[float]] = {name: [] for name in urls}
    names = list(urls)
    if kind == "httpx":
        client = httpx.Client()
        calls: dict[str, Callable[[], int]] = {
            name: functools.partial(status_of, client, url) for name, url in urls.items()
        }
        close = client.close
    else:
        raw = {
            name: RawClient(int(url.rsplit(":", 1)[1].split("/")[0])) for name, url in urls.items()
        }
        calls = {name: raw[name].get for name in urls}

        def close() -> None:
            for one in raw.values():
                one.close()

    try:
        for round_number in range(requests + 200):  # the first 200 warm up
            shift = round_number % len(names)
            for name in names[shift:] + names[:shift]:
                started = time.perf_counter()
                status = calls[name]()
                elapsed = (time.perf_counter() - started) * 1000.0
                assert status == 200, (name, status)
                if round_number >= 200:
                    results[name].append(elapsed)
    finally:
        close()
    return results


def status_of(client: httpx.Client, url: str) -> int:
    """GET ``url``; its status."""
    return client.get(url).status_code


def uvicorn_stack() -> str:
    """What uvicorn picks here with its defaults (``http="auto"``, ``loop="auto"``)."""
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    return f"uvicorn {http} parser, {loop} loop"


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


def gateway_process(config: dict[str, object], folder: str, name: str, env: dict[str, str]) -> Any:
    """``secmw gateway`` on ``config`` in a process of its own."""
    path = Path(folder) / f"{name}.json"
    path.write_text(json.dumps(config))
    command = [sys.executable, "-m", "secmw", "gateway", "--config", str(path)]
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)


def main(requests: int, before: str | None) -> None:
    load_before = os.getloadavg()[0]
    upstream_port, floor_port = free_port(), free_port()
    upstream = f"http://127.0.0.1:{upstream_port}"
    gateways = {"through secmw gateway": free_port()}
    if before:
        gateways[f"through secmw gateway ({Path(before).parent.name})"] = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with tempfile.TemporaryDirectory() as folder:
        processes = [
            subprocess.Popen([sys.executable, "-c", UPSTREAM, str(upstream_port)], env=env),
            subprocess.Popen([sys.executable, "-c", FLOOR, str(floor_port), upstream], env=env),
        ]
        for number, port in enumerate(gateways.values()):
            config = {
                "auth": {"allow_anonymous": True},
                "audit": {"sink": "none"},
                "gateway": {
                    "listen": f"127.0.0.1:{port}",
                    "upstreams": {"echo": {"targets": [upstream]}},
                    "routes": [{"prefix": "/", "upstream": "echo"}],
                    "egress": {"allow_networks": ["127.0.0.0/8"]},
                },
            }
            # The second gateway runs the secmw source tree given by --before.
            source = {"PYTHONPATH": str(before)} if number and before else {}
            processes.append(gateway_process(config, folder, f"g{number}", env | source))
        try:
            direct = "direct to upstream"
            floor = "minimal httpx proxy (floor)"
            urls = {direct: f"{upstream}/echo", floor: f"http://127.0.0.1:{floor_port}/echo"}
            urls |= {name: f"http://127.0.0.1:{port}/echo" for name, port in gateways.items()}
            for url in urls.values():
                wait(url)
            # Each proxy against the direct call in a phase of its own: a proxy's tail
            # work (after its answer) would otherwise land on whatever request comes next.
            phases = [(direct, name) for name in gateways] + [(direct, floor)]
            over = [
                (kind, drive({name: urls[name] for name in phase}, requests, kind))
                for kind in ("httpx", "raw")
                for phase in phases
            ]
            inner = anyio.run(in_process, upstream_port, requests)
        finally:
            for process in processes:
                process.terminate()
                process.wait(10)
    print(
        f"# {platform.python_implementation()} {sys.version.split()[0]},"
        f" {os.cpu_count()} CPUs, {uvicorn_stack()}; load average (1 min)"
        f" {load_before:.2f} before, {os.getloadavg()[0]:.2f} after"
    )
    for kind, results in over:
        report(
            f"# over uvicorn, {kind} client, {requests} requests per variant, loopback",
            tuple(results.items()),
        )
    report(
        f"# in process (no front socket), {requests} requests",
        (
            ("secmw client, called directly", inner["client"]),
            ("secmw gateway app", inner["gateway"]),
            ("httpx AsyncClient, for reference", inner["httpx"]),
        ),
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument(
        "--before",
        metavar="SRC",
        help="also run a gateway from another secmw source tree (its src/ folder), e.g. an"
        " earlier commit unpacked with git archive: before/after in the same run",
    )
    arguments = parser.parse_args()
    main(arguments.requests, arguments.before)
