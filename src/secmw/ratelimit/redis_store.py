"""Counter storage in Redis: one round trip (``EVALSHA``) per request, shared by processes.

URIs: ``redis://``, ``rediss://`` (TLS), ``unix://``, ``redis+sentinel://[:password@]
host:port[,host:port]/service`` and ``redis+cluster://host:port[,host:port]``. On
asyncio the ``redis.asyncio`` client is used; on trio (which ``redis.asyncio``
does not support) the synchronous client runs in a worker thread. Both have
connect and operation timeouts, so a dead or black-holed server costs at most
those and then surfaces as :class:`StorageUnavailable`.

At most ``max_connections`` round trips are in flight per process (and event
loop); further requests wait for a free slot, up to the operation timeout, and
then get :class:`StorageBusy`: a full pool is load, not an outage. Error replies
are told apart: a key of another type is :class:`StorageRejected` (that request
only); anything else (``OOM``, ``READONLY``, ``LOADING``, …) means Redis cannot
serve anyone and is :class:`StorageUnavailable`.

On a Cluster every key carries the same hash tag (the prefix in braces): one
script may only touch keys of one slot, so exact composite checks put all
counters on one shard.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import anyio

from secmw.errors import ComponentError, ConfigError, ConfigIssue
from secmw.ratelimit.algorithms import Limit, Outcome
from secmw.ratelimit.redis_lua import ALGORITHM_CODES, SCRIPT, SCRIPT_SHA

RedisCheck = tuple[Limit, str, int]


class StorageUnavailable(ComponentError):
    """The rate-limit storage did not answer (connection refused, timeout, error reply)."""


class StorageRejected(StorageUnavailable):
    """Redis answered, but refused this request's keys (a key of another type or format).

    Redis itself is up: only the request whose keys are unusable is affected.
    """


class StorageBusy(StorageRejected):
    """Every connection of this process stayed busy for the whole operation timeout.

    Redis may be fine: only the requests that found no free connection are affected.
    """


# Error replies about this request's keys (the script found a key of another
# type or shape); every other error reply is about the server as a whole.
# redis-py strips the "ERR " of the replies it maps to ResponseError, so a
# script's runtime error reads "user_script:23: ..." (Redis 7) or "Error running
# script ..." (older); other clients keep the prefix. Redis 6 and older wrap the
# error of a command the script ran, code included ("...: -READONLY You can't
# write..."): only a wrapped WRONGTYPE is about the keys.
_SCRIPT_ERRORS = ("user_script:", "Error running script")
_WRAPPED_CODE = re.compile(r"-([A-Z]+) ")


def per_key_error(message: str) -> bool:
    """True when an error reply is about this request's keys, not the whole server."""
    message = message.removeprefix("ERR ")
    if message.startswith("WRONGTYPE"):
        return True
    if message.startswith(_SCRIPT_ERRORS):
        wrapped = _WRAPPED_CODE.search(message)
        return wrapped is None or wrapped.group(1) == "WRONGTYPE"
    return False


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """A parsed storage URI: which kind of deployment and how to reach it."""

    kind: str  # "url", "sentinel" or "cluster"
    url: str
    hosts: tuple[tuple[str, int], ...] = ()
    service: str | None = None
    password: str | None = None
    username: str | None = None


def parse_target(url: str) -> RedisTarget:
    """Split a storage URI; raises :class:`ConfigError` (key ``url``) when malformed."""
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisTarget("url", url)
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # an unclosed [IPv6 literal
        raise ConfigError([_issue(f"not a URI: {exc}")]) from None
    kind = "sentinel" if parts.scheme == "redis+sentinel" else "cluster"
    userinfo, _, hostlist = parts.netloc.rpartition("@")
    username, _, password = userinfo.partition(":")
    hosts = []
    for item in hostlist.split(","):
        host, _, port = item.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError([_issue(f"{item!r} is not host:port")])
        hosts.append((host.strip("[]"), int(port)))
    service = parts.path.strip("/").split("/")[0] or None
    if kind == "sentinel" and service is None:
        raise ConfigError([_issue("a redis+sentinel:// URI needs /service_name")])
    return RedisTarget(
        kind,
        url,
        tuple(hosts),
        service,
        unquote(password) if password else None,
        unquote(username) if username else None,
    )


def _issue(message: str) -> ConfigIssue:
    return ConfigIssue("url", message)


class RedisStore:
    """Runs :data:`~secmw.ratelimit.redis_lua.SCRIPT` for each request's checks."""

    __slots__ = (
        "_async_client",
        "_async_loop",
        "_async_sentinels",
        "_gate",
        "_sync_client",
        "_sync_gate",
        "_sync_sentinels",
        "_threads",
        "connect_timeout",
        "max_connections",
        "prefix",
        "target",
        "timeout",
    )

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "secmw:rl",
        connect_timeout: float = 0.25,
        timeout: float = 0.25,
        max_connections: int = 100,
    ) -> None:
        if max_connections < 1:
            raise ConfigError([ConfigIssue("max_connections", "must be at least 1")])
        try:
            import redis  # noqa: F401, PLC0415 - the redis extra is optional
        except ImportError:
            raise ConfigError([_issue("Redis storage needs: pip install 'secmw[redis]'")]) from None
        self.target = parse_target(url)
        self.prefix = "{" + prefix + "}:"
        self.connect_timeout = connect_timeout
        self.timeout = timeout
        self.max_connections = max_connections
        self._gate: asyncio.Semaphore | None = None
        self._sync_gate = threading.BoundedSemaphore(max_connections)
        # Worker threads of our own (trio): the round trips must neither queue
        # without bound for anyio's shared pool nor starve the app's own threads.
        self._threads: tuple[anyio.CapacityLimiter, anyio.CapacityLimiter] | None = None
        self._async_client: Any = None
        self._async_loop: Any = None
        self._sync_client: Any = None
        # Sentinel connections are not closed with the master's client: kept to close them.
        self._async_sentinels: list[Any] = []
        self._sync_sentinels: list[Any] = []

    def key(self, limit: Limit, key: str) -> bytes:
        """The Redis key of one counter (bytes: any client-chosen text has a spelling)."""
        # A lone surrogate (a JSON "\ud800" tool name) has no UTF-8 form; it is
        # written escaped instead of failing the whole round trip.
        return (self.prefix + limit.slot + ":" + key).encode("utf-8", "backslashreplace")

    async def apply(self, checks: Sequence[RedisCheck], now: float | None = None) -> list[Outcome]:
        """Run the composite check in one round trip; :class:`StorageUnavailable` on failure."""
        keys: list[bytes] = []
        args: list[Any] = ["" if now is None else repr(now * 1000.0)]
        for limit, key, cost in checks:
            keys.append(self.key(limit, key))
            args += (
                ALGORITHM_CODES[limit.algorithm],
                limit.amount,
                repr(limit.window * 1000.0),
                cost,
                limit.burst,
                1 if limit.shadow else 0,
            )
        reply = await self._eval(keys, args)
        if (
            not isinstance(reply, list)
            or len(reply) != 4 * len(checks)
            or not all(type(value) is int for value in reply)
        ):
            # Not our script's answer (a proxy or impostor in between): unusable.
            raise StorageUnavailable("rate-limit storage failed: unexpected reply")
        outcomes = []
        for index in range(len(checks)):
            allowed, remaining, reset, retry = reply[index * 4 : index * 4 + 4]
            outcomes.append(
                Outcome(bool(allowed), None, 0.0, int(remaining), reset / 1000, retry / 1000)
            )
        return outcomes

    async def _eval(self, keys: list[bytes], args: list[Any]) -> list[int]:
        from redis.exceptions import RedisError, ResponseError  # noqa: PLC0415

        try:
            reply: list[int] = await self.run_script(SCRIPT, SCRIPT_SHA, keys, args)
        except StorageBusy:
            raise
        except ResponseError as exc:
            if not per_key_error(str(exc)):
                # OOM, READONLY, LOADING, MASTERDOWN...: nobody can be served.
                raise StorageUnavailable(
                    f"rate-limit storage failed: {str(exc).split(' ', 1)[0]}"
                ) from None
            raise StorageRejected(
                f"rate-limit storage refused the keys: {type(exc).__name__}"
            ) from None
        except UnicodeError as exc:
            raise StorageRejected(
                f"rate-limit storage refused the keys: {type(exc).__name__}"
            ) from None
        except (RedisError, OSError, TimeoutError) as exc:
            raise StorageUnavailable(f"rate-limit storage failed: {type(exc).__name__}") from None
        except Exception as exc:  # the client library choking on a reply that is not Redis's
            raise StorageUnavailable(f"rate-limit storage failed: {type(exc).__name__}") from None
        return reply

    @contextlib.asynccontextmanager
    async def _slot(self) -> AsyncIterator[None]:
        """One of ``max_connections`` round trips, waited for up to ``timeout``."""
        gate = self._gate
        assert gate is not None  # made with the loop's client
        try:
            async with asyncio.timeout(self.timeout):
                await gate.acquire()
        except TimeoutError:
            raise StorageBusy(
                f"rate-limit storage busy: {self.max_connections} round trips in flight"
            ) from None
        try:
            yield
        finally:
            gate.release()

    @contextlib.contextmanager
    def _thread_slot(self) -> Iterator[None]:
        """The same bound for worker threads (trio): the thread waits, not the loop."""
        if not self._sync_gate.acquire(timeout=self.timeout):
            raise StorageBusy(
                f"rate-limit storage busy: {self.max_connections} round trips in flight"
            )
        try:
            yield
        finally:
            self._sync_gate.release()

    async def run_script(self, script: str, sha: str, keys: list[Any], args: list[Any]) -> Any:
        """``EVALSHA`` (loading ``script`` when Redis does not know it) within the gate.

        On asyncio through ``redis.asyncio``; on trio the synchronous client runs
        in a worker thread. Redis errors are raised as they are.
        """
        from redis.exceptions import NoScriptError  # noqa: PLC0415

        if not _on_asyncio():
            return await self._in_thread(script, sha, keys, args)
        client = self._client_async()
        async with self._slot():
            try:
                return await client.evalsha(sha, len(keys), *keys, *args)
            except NoScriptError:
                await client.script_load(script)
                return await client.evalsha(sha, len(keys), *keys, *args)

    async def _in_thread(self, script: str, sha: str, keys: list[Any], args: list[Any]) -> Any:
        """The script in a worker thread; waiting for a free one counts against ``timeout``."""
        if self._threads is None:
            size = self.max_connections
            self._threads = (anyio.CapacityLimiter(size), anyio.CapacityLimiter(size))
        turn, threads = self._threads
        try:
            with anyio.fail_after(self.timeout):
                await turn.acquire()
        except TimeoutError:
            raise StorageBusy(
                f"rate-limit storage busy: {self.max_connections} round trips in flight"
            ) from None
        try:
            # ``threads`` never makes anyone wait: ``turn`` already holds the count.
            return await anyio.to_thread.run_sync(
                self._run_script_sync, script, sha, keys, args, limiter=threads
            )
        finally:
            turn.release()

    def _run_script_sync(self, script: str, sha: str, keys: list[Any], args: list[Any]) -> Any:
        from redis.exceptions import NoScriptError  # noqa: PLC0415

        client = self._client_sync()
        with self._thread_slot():
            try:
                return client.evalsha(sha, len(keys), *keys, *args)
            except NoScriptError:
                client.script_load(script)
                return client.evalsha(sha, len(keys), *keys, *args)

    def _client_async(self) -> Any:
        loop = asyncio.get_running_loop()
        if self._async_client is None or self._async_loop is not loop:
            # A redis.asyncio client is bound to the loop that made its connections.
            self._async_client, self._async_sentinels = _make_client(self, asynchronous=True)
            self._gate = asyncio.Semaphore(self.max_connections)
            self._async_loop = loop
        return self._async_client

    def _client_sync(self) -> Any:
        if self._sync_client is None:
            self._sync_client, self._sync_sentinels = _make_client(self, asynchronous=False)
        return self._sync_client

    async def aclose(self) -> None:
        """Close the connections (the store reconnects if used again)."""
        client, self._async_client = self._async_client, None
        sentinels, self._async_sentinels = self._async_sentinels, []
        if client is not None and _on_asyncio():
            for each in (client, *sentinels):
                await each.aclose()
        sync, self._sync_client = self._sync_client, None
        sync_sentinels, self._sync_sentinels = self._sync_sentinels, []
        if sync is not None:
            for each in (sync, *sync_sentinels):
                each.close()


def _on_asyncio() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _make_client(store: RedisStore, *, asynchronous: bool) -> tuple[Any, list[Any]]:
    """The redis-py client the target describes, and the sentinel clients it uses.

    Nothing connects until the first command.
    """
    if asynchronous:
        import redis.asyncio as module  # noqa: PLC0415
        from redis.asyncio.cluster import ClusterNode, RedisCluster  # noqa: PLC0415
        from redis.asyncio.sentinel import Sentinel  # noqa: PLC0415
    else:
        import redis as module  # type: ignore[no-redef]  # noqa: PLC0415
        from redis.cluster import ClusterNode, RedisCluster  # type: ignore[assignment]  # noqa: PLC0415
        from redis.sentinel import Sentinel  # type: ignore[assignment]  # noqa: PLC0415
    target = store.target
    timeouts: dict[str, Any] = {
        "socket_connect_timeout": store.connect_timeout,
        "socket_timeout": store.timeout,
        # The pools may open as many connections as round trips are let through.
        "max_connections": store.max_connections,
    }
    if target.kind == "url":
        return module.Redis.from_url(target.url, **timeouts), []
    auth: dict[str, Any] = {"password": target.password, "username": target.username}
    if target.kind == "sentinel":
        sentinel = Sentinel(  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
            list(target.hosts), sentinel_kwargs=dict(timeouts), **timeouts
        )
        return sentinel.master_for(target.service or "", **auth), list(sentinel.sentinels)
    nodes = [ClusterNode(host, port) for host, port in target.hosts]
    return RedisCluster(startup_nodes=nodes, **auth, **timeouts), []
