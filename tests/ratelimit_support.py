"""Helpers for the rate-limit tests: a fake clock, a header authenticator, a real redis-server."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from secmw.context import Principal, RequestContext
from secmw.ratelimit import MemoryStore, Tier, TierConfig, TieredRateLimiter


class FakeClock:
    """A settable clock (seconds)."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class HeaderAuthenticator:
    """Test double: ``x-user: subject[;tier[;roles,..[;tenant]]]`` becomes the principal."""

    async def authenticate(self, ctx: RequestContext) -> Principal | None:
        value = ctx.headers.get("x-user")
        if value is None:
            return None
        subject, _, rest = value.partition(";")
        tier, _, rest = rest.partition(";")
        roles, _, tenant = rest.partition(";")
        return Principal(
            subject=subject,
            tier=tier or None,
            roles=frozenset(filter(None, roles.split(","))),
            tenant=tenant or None,
            auth_method="test",
            credential_id=f"key-{subject}",
        )


def limiter(*tiers: dict[str, Any], clock: FakeClock, headers: str = "draft") -> TieredRateLimiter:
    """A memory-backed limiter over ``tiers`` (TierConfig dicts) on ``clock``."""
    compiled = [Tier(TierConfig.model_validate(tier)) for tier in tiers]
    return TieredRateLimiter(compiled, store=MemoryStore(clock=clock), clock=clock, headers=headers)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """A ``redis-server`` on 127.0.0.1 owned by one test module; can be killed and restarted."""

    def __init__(self, port: int, *args: str, config: str | None = None) -> None:
        self.port = port
        self.args = args
        self.config = config  # a config file goes first (sentinel mode needs one)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (bash scripts/ensure-redis.sh)")
        if self.config is None:
            command = [binary, "--save", "", "--appendonly", "no", *self.args]
        else:  # sentinel mode: the config file, then the mode, then options
            command = [binary, self.config, *self.args]
        command += ["--bind", "127.0.0.1", "--port", str(self.port), "--loglevel", "warning"]
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("redis-server exited at start")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("redis-server did not answer within 10 s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def command(self, *args: str) -> Any:
        import redis

        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2)
        try:
            return client.execute_command(*args)
        finally:
            client.close()


def redis_server_fixture(*args: str, config: str | None = None) -> Iterator[RedisServer]:
    """Start a server; in CI a server that cannot start fails the tests, never skips them.

    A free port can be taken by another process before the server binds it (other
    suites run on this machine too), so a failed start is retried on a new port.
    """
    server: RedisServer | None = None
    error: RuntimeError | None = None
    for _ in range(5):
        candidate = RedisServer(free_port(), *args, config=config)
        try:
            candidate.start()
        except RuntimeError as exc:
            error = exc
            if shutil.which("redis-server") is None:
                break
            continue
        server = candidate
        break
    if server is None:
        if os.environ.get("CI"):
            pytest.fail(f"Redis is required in CI: {error}")
        pytest.skip(f"no redis-server: {error}")
    try:
        yield server
    finally:
        server.stop()
