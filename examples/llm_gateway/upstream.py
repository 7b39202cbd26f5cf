"""A tiny fake OpenAI-compatible API, so the LLM gateway example needs no network.

    python examples/llm_gateway/upstream.py [--port 8005]

``POST /v1/chat/completions`` answers with a canned reply that leaks an API key,
streamed as ``text/event-stream`` chunks when the request has ``"stream": true``
(the key is cut in two, across two events, as a model's tokens would cut it) or
as one JSON document otherwise. ``GET /v1/models`` lists the one model. When
``LLM_API_KEY`` is set, requests must carry ``Authorization: Bearer <it>``: the
provider key that only the gateway holds.
"""

from __future__ import annotations

import argparse
import hmac
import json
import os
import secrets
import sys
import time
from typing import Any

import anyio
import uvicorn

MODEL = "fake-gpt"
# A made-up live-looking Stripe key the "model" leaks.
LEAKED_KEY = f"sk_live_{secrets.token_hex(12)}"
# The reply as the model streams it; the key is split across two chunks.
CHUNKS = [
    "Sure. The staging",
    " payments key is ",
    LEAKED_KEY[:14],
    LEAKED_KEY[14:],
    ", keep it",
    " safe.",
]


async def _read_json(receive: Any) -> Any:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body", False):
            break
    try:
        return json.loads(body)
    except ValueError:
        return None


async def _send_json(send: Any, status: int, payload: object) -> None:
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _chunk(delta: dict[str, str], finish: str | None = None) -> bytes:
    event = {
        "id": "chatcmpl-example",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": MODEL,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return f"data: {json.dumps(event)}\n\n".encode()


async def _stream(send: Any) -> None:
    headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    events = [_chunk({"role": "assistant", "content": ""})]
    events += [_chunk({"content": text}) for text in CHUNKS]
    events += [_chunk({}, finish="stop"), b"data: [DONE]\n\n"]
    for event in events:
        await send({"type": "http.response.body", "body": event, "more_body": True})
        await anyio.sleep(0.02)  # one token at a time, as a model would send them
    await send({"type": "http.response.body", "body": b""})


async def app(scope: Any, receive: Any, send: Any) -> None:
    """The fake API as a pure ASGI app."""
    if scope["type"] != "http":
        return
    expected = os.environ.get("LLM_API_KEY")
    presented = dict(scope["headers"]).get(b"authorization", b"")
    if expected and not hmac.compare_digest(presented, f"Bearer {expected}".encode()):
        await _send_json(send, 401, {"error": {"message": "invalid API key"}})
        return
    if scope["path"] == "/v1/models":
        await _send_json(send, 200, {"object": "list", "data": [{"id": MODEL, "object": "model"}]})
        return
    if scope["path"] != "/v1/chat/completions" or scope["method"] != "POST":
        await _send_json(send, 404, {"error": {"message": "not found"}})
        return
    request = await _read_json(receive)
    if not isinstance(request, dict) or not isinstance(request.get("messages"), list):
        await _send_json(send, 400, {"error": {"message": "messages is required"}})
        return
    if request.get("stream"):
        await _stream(send)
        return
    message = {"role": "assistant", "content": "".join(CHUNKS)}
    choice = {"index": 0, "message": message, "finish_reason": "stop"}
    await _send_json(send, 200, {"object": "chat.completion", "model": MODEL, "choices": [choice]})


def main() -> int:
    parser = argparse.ArgumentParser(description="a fake OpenAI-compatible API")
    parser.add_argument("--port", type=int, default=8005)
    args = parser.parse_args()
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", lifespan="off")
    return 0


if __name__ == "__main__":
    sys.exit(main())
