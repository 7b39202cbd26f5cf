"""The websocket relay tells a lost upstream from a client that left."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

import anyio
import pytest
from websockets.client import ClientProtocol
from websockets.frames import Frame
from websockets.protocol import State
from websockets.uri import parse_uri

from secmw.proxy.websocket import _relay

pytestmark = pytest.mark.anyio


class Upstream(anyio.abc.ByteStream):
    """A connection that never sends; its writes fail once ``broken`` is set."""

    def __init__(self, *, broken: bool) -> None:
        self.broken = broken
        self.written: list[bytes] = []

    async def receive(self, max_bytes: int = 65536) -> bytes:
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    async def send(self, item: bytes) -> None:
        if self.broken:
            raise anyio.BrokenResourceError
        self.written.append(item)

    async def send_eof(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


def opened() -> ClientProtocol:
    return ClientProtocol(parse_uri("ws://upstream.test/ws"), state=State.OPEN)


async def test_a_write_to_a_vanished_upstream_ends_the_session_with_1011() -> None:
    incoming = [{"type": "websocket.receive", "text": "hello"}]
    sent: list[MutableMapping[str, Any]] = []
    details: dict[str, Any] = {"outcome": "ok"}

    async def receive() -> dict[str, Any]:
        if incoming:
            return incoming.pop(0)
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    with anyio.fail_after(2):
        await _relay(opened(), Upstream(broken=True), receive, send, [], details=details)
    assert sent == [{"type": "websocket.accept"}, {"type": "websocket.close", "code": 1011}]
    assert details["outcome"] == "upstream_lost"


async def test_a_client_that_left_is_not_an_upstream_lost() -> None:
    # The client's transport fails when the first upstream message is sent on.
    sent: list[MutableMapping[str, Any]] = []
    details: dict[str, Any] = {"outcome": "ok"}
    protocol = opened()
    protocol.receive_data(b"\x81\x02hi")  # an unmasked text frame from the upstream
    early = [e for e in protocol.events_received() if isinstance(e, Frame)]

    async def receive() -> dict[str, Any]:
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)
        if message["type"] == "websocket.send":
            raise OSError("client disconnected")

    with anyio.fail_after(2):
        await _relay(protocol, Upstream(broken=False), receive, send, early, details=details)
    assert sent[-1]["type"] == "websocket.close"
    assert details["outcome"] == "ok"
