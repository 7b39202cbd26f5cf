"""Keys from a JWKS URL, fetched without blocking the event loop.

The trade-offs, each deliberate:

* The document is fetched in a worker thread (``urllib`` with a timeout and a
  size cap) or by an injected async fetcher, never on the event loop.
* Freshness follows the response's ``Cache-Control: max-age`` (``no-store`` and
  ``no-cache`` count as the minimum), clamped to ``[min_ttl, max_ttl]``.
* A token naming an unknown ``kid`` may trigger a refresh, but at most one per
  ``cooldown`` seconds: a flood of made-up ``kid`` values costs the issuer one
  request per cooldown, not one per token (PyJWKClient's rule, made async).
* While one request refreshes stale keys, concurrent requests keep using the
  loaded keys instead of waiting for the endpoint.
* When the endpoint fails or returns garbage the last good keys stay in use; the
  failure is reported to ``on_error`` and retried after ``cooldown``. Only when no
  key was ever loaded does a request fail, with a 503 (ComponentError).
* Symmetric (``oct``) keys in a fetched JWKS are ignored: a published shared
  secret would let anyone who reads the document sign tokens.
* Keys whose JWK did not change keep their identity across refreshes, so the
  verified-token cache evicts only the tokens of keys that really went away.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import time
import urllib.request
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import anyio
import anyio.to_thread

from secmw.audit.base import AuditEvent
from secmw.auth.keys import KeySet, VerificationKey, is_signature_jwk, key_from_jwk
from secmw.errors import ComponentError

MAX_JWKS_BYTES = 1024 * 1024
_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?(\d{1,10})\"?\s*(?:,|$)", re.IGNORECASE)
_NO_CACHE = re.compile(r"(?:^|,)\s*(?:no-store|no-cache)\s*(?:,|$)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class FetchResult:
    """What a fetcher returns: the HTTP status, the ``Cache-Control`` value, the body."""

    status: int
    body: bytes
    cache_control: str | None = None


Fetcher = Callable[[str], Awaitable[FetchResult]]


class JWKSFetchError(ComponentError):
    """The JWKS endpoint could not be read (and no earlier keys exist)."""


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Refuse redirects: the configured JWKS URL is the only place keys come from."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        """Return no new request: urllib then reports the 3xx as an HTTP error."""
        return None


def _tracked(sockets: list[socket.socket]) -> tuple[Any, Any]:
    """urllib handlers whose connections hand their sockets to ``sockets``."""

    def recording(connection_class: Any) -> Any:
        class Recording(connection_class):  # type: ignore[misc]
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                create: Callable[..., socket.socket] = self._create_connection  # type: ignore[has-type]

                def created(*address: Any, **options: Any) -> socket.socket:
                    # Recorded as soon as it exists: a proxy's CONNECT answer and
                    # the TLS handshake are read before connect() returns.
                    sock: socket.socket = create(*address, **options)
                    sockets.append(sock)
                    return sock

                self._create_connection = created

            def connect(self) -> None:
                super().connect()
                # Over TLS the socket is a new one (the first is detached into it).
                sockets.append(self.sock)

        return Recording

    class HTTP(urllib.request.HTTPHandler):
        def do_open(self, http_class: Any, req: Any, **options: Any) -> Any:
            return super().do_open(recording(http_class), req, **options)

    class HTTPS(urllib.request.HTTPSHandler):
        def do_open(self, http_class: Any, req: Any, **options: Any) -> Any:
            return super().do_open(recording(http_class), req, **options)

    return HTTP(), HTTPS()


def urllib_fetcher(timeout: float = 5.0, max_bytes: int = MAX_JWKS_BYTES) -> Fetcher:
    """A fetcher running ``urllib`` in a worker thread, with a timeout and a size cap.

    Redirects are not followed (a 3xx is a failed fetch). A fetch given up on
    (the timeout, a cancellation) has its socket shut down, so its thread ends
    too instead of reading what an endpoint trickles, headers included.
    """

    def fetch_sync(url: str, sockets: list[socket.socket]) -> FetchResult:
        opener = urllib.request.build_opener(_NoRedirect, *_tracked(sockets))
        request = urllib.request.Request(url, headers={"Accept": "application/json"})  # noqa: S310 - scheme checked by the config
        # urllib's timeout bounds each socket read, not the answer: an endpoint
        # sending a byte now and then would keep this thread reading for hours.
        deadline = time.monotonic() + timeout
        try:
            with opener.open(request, timeout=timeout) as response:
                chunks: list[bytes] = []
                size = 0
                while size <= max_bytes:
                    if time.monotonic() > deadline:
                        raise TimeoutError("the JWKS answer took longer than the timeout")
                    chunk = response.read1(min(65536, max_bytes + 1 - size))
                    if not chunk:
                        break
                    chunks.append(chunk)
                    size += len(chunk)
                body = b"".join(chunks)
                return FetchResult(response.status, body, response.headers.get("cache-control"))
        except urllib.error.HTTPError as exc:
            return FetchResult(exc.code, b"", None)

    async def fetch(url: str) -> FetchResult:
        sockets: list[socket.socket] = []
        try:
            return await anyio.to_thread.run_sync(fetch_sync, url, sockets, abandon_on_cancel=True)
        finally:
            for sock in sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    return fetch


def freshness(cache_control: str | None, *, default: float, low: float, high: float) -> float:
    """Seconds a JWKS response stays fresh, from its ``Cache-Control`` header."""
    if cache_control:
        if _NO_CACHE.search(cache_control):
            return low
        match = _MAX_AGE.search(cache_control)
        if match:
            return min(high, max(low, float(match.group(1))))
    return min(high, max(low, default))


class JWKSClient:
    """A cached, self-refreshing view of one JWKS URL; see the module docstring."""

    def __init__(
        self,
        url: str,
        *,
        allowed: frozenset[str],
        static: tuple[VerificationKey, ...] = (),
        fetcher: Fetcher | None = None,
        timeout: float = 5.0,
        default_ttl: float = 300.0,
        min_ttl: float = 30.0,
        max_ttl: float = 86400.0,
        cooldown: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        self.url = url
        self._allowed = allowed
        self._static = static
        self._fetch = fetcher or urllib_fetcher(timeout)
        self._timeout = timeout
        self._default_ttl = default_ttl
        self._min_ttl = min_ttl
        self._max_ttl = max_ttl
        self._cooldown = cooldown
        self._clock = clock
        self._on_error = on_error
        self._emit: Callable[[AuditEvent], Awaitable[None]] | None = None
        self._down = False
        self._lock = anyio.Lock()
        self._by_jwk: dict[str, VerificationKey] = {}
        self.keys = KeySet(static, allowed)
        self.loaded = False
        self.fresh_until = float("-inf")
        self.last_attempt = float("-inf")
        self.fetches = 0
        self.failures = 0

    def stale(self) -> bool:
        """True when the keys should be refreshed before use."""
        return self._clock() >= self.fresh_until

    async def current(self) -> KeySet:
        """The key set, refreshed first when it is stale (failures keep the old keys).

        While one request refreshes, the others carry on with the keys already
        loaded rather than queue behind a slow endpoint.
        """
        now = self._clock()
        if (
            now >= self.fresh_until
            and now - self.last_attempt >= self._cooldown
            and not (self.loaded and self._lock.locked())
        ):
            # At most one attempt per cooldown, also when the keys' own lifetime is
            # shorter (max-age=0) or an attempt was cancelled before it finished.
            await self._refresh(force=False)
        if not self.loaded and not self.keys:
            raise JWKSFetchError("no JWKS keys could be loaded")
        return self.keys

    def bind_emitter(self, emit: Callable[[AuditEvent], Awaitable[None]]) -> None:
        """Record outages and recoveries in the audit trail (the pipeline binds it)."""
        self._emit = emit

    async def _audit(self, name: str, reason: str) -> None:
        if self._emit is not None:
            await self._emit(
                AuditEvent(
                    name=name,
                    outcome="failure" if name == "sys_monitor_disabled" else "success",
                    severity="error" if name == "sys_monitor_disabled" else "info",
                    reason=reason,
                    details={
                        "component": "jwks",
                        "url": without_credentials(self.url),
                        "failures": self.failures,
                    },
                )
            )

    async def refresh_for_unknown_kid(self) -> KeySet:
        """Refresh because a token named an unknown key, at most once per cooldown.

        A refresh already on its way may bring the key (an issuer that starts
        signing with a new key sends many such tokens at once): wait for it.
        """
        if self._lock.locked():
            async with self._lock:
                pass
        elif self._clock() - self.last_attempt >= self._cooldown:
            await self._refresh(force=True)
        return self.keys

    async def _refresh(self, *, force: bool) -> None:
        started = self._clock()
        async with self._lock:
            # Another task may have refreshed while we waited for the lock.
            if self.last_attempt >= started or (not force and started < self.fresh_until):
                return
            self.last_attempt = self._clock()
            self.fetches += 1
            try:
                # Shielded: the request that happens to refresh may be cancelled (a
                # timeout layer, a client gone), the refresh is everyone's and ends
                # within the timeout anyway. Cut short, it would leave the keys
                # stale and the cooldown spent.
                with anyio.CancelScope(shield=True), anyio.fail_after(self._timeout):
                    result = await self._fetch(self.url)
                keys, ttl = self._parse(result)
            except Exception as exc:  # any failure keeps the last good keys
                self.failures += 1
                # Retry after the cooldown, not on every request.
                self.fresh_until = self._clock() + self._cooldown
                message = f"JWKS refresh failed: {_describe(exc)}"
                if self._on_error is not None:
                    self._on_error(message)
                if not self._down:  # one event per outage, not one per retry
                    self._down = True
                    await self._audit("sys_monitor_disabled", message)
                return
            if self._down:
                self._down = False
                await self._audit("sys_monitor_enabled", "JWKS refresh succeeded again")
            # Inline keys last: on a kid clash they win, whatever the URL publishes.
            self.keys = KeySet((*keys, *self._static), self._allowed, self.keys)
            self.loaded = True
            self.fresh_until = self._clock() + ttl

    def _parse(self, result: FetchResult) -> tuple[list[VerificationKey], float]:
        if result.status != 200:
            raise ValueError(f"HTTP status {result.status}")
        if len(result.body) > MAX_JWKS_BYTES:
            raise ValueError("document too large")
        document = json.loads(result.body)
        if not isinstance(document, Mapping) or not isinstance(document.get("keys"), list):
            raise ValueError("not a JWKS document")  # noqa: TRY004 - reported, not raised to users
        keys: list[VerificationKey] = []
        seen: dict[str, VerificationKey] = {}
        for entry in document["keys"]:
            if not isinstance(entry, Mapping) or not is_signature_jwk(entry):
                continue
            canonical = json.dumps(entry, sort_keys=True, separators=(",", ":"))
            key = self._by_jwk.get(canonical)
            if key is None:
                try:
                    key = key_from_jwk(entry)
                except ValueError:
                    continue
            seen[canonical] = key
            keys.append(key)
        if not keys:
            raise ValueError("no usable signature key")
        if not any(key.algorithms & self._allowed for key in keys):
            # Every token would be refused as signed by an unknown key: an outage.
            raise ValueError("no signature key for the allowed algorithms")
        self._by_jwk = seen
        ttl = freshness(
            result.cache_control,
            default=self._default_ttl,
            low=self._min_ttl,
            high=self._max_ttl,
        )
        return keys, ttl


def without_credentials(url: str) -> str:
    """``url`` with its userinfo and query left out (they may hold credentials)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(unparsable URL)"
    if ":" in host:
        host = f"[{host}]"
    query = "?…" if parts.query else ""
    return f"{parts.scheme}://{host}{port}{parts.path}{query}"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, (ValueError, ComponentError)):
        return str(exc)[:200]
    return type(exc).__name__


__all__ = [
    "FetchResult",
    "Fetcher",
    "JWKSClient",
    "JWKSFetchError",
    "freshness",
    "urllib_fetcher",
]
