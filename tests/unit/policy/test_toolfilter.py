"""tools/list filtering in JSON and SSE framing."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable

from hypothesis import given, settings
from hypothesis import strategies as st

from secmw.policy import ToolListFilter


def only(*names: str):  # type: ignore[no-untyped-def]
    def visible(candidates: Iterable[str]) -> set[str]:
        return {name for name in candidates if name in names}

    return visible


LISTING = {
    "jsonrpc": "2.0",
    "id": 7,
    "result": {"tools": [{"name": "read"}, {"name": "delete"}, {"name": "search"}]},
}


def test_json_listing_is_filtered_and_stays_valid() -> None:
    text, findings = ToolListFilter([7], only("read", "search")).redact(
        json.dumps(LISTING), "application/json"
    )
    assert [tool["name"] for tool in json.loads(text)["result"]["tools"]] == ["read", "search"]
    assert findings[0].kind == "tools_hidden"


def test_other_ids_and_bodies_pass_unchanged() -> None:
    body = json.dumps({**LISTING, "id": 8})
    assert ToolListFilter([7], only()).redact(body, "application/json") == (body, [])
    assert ToolListFilter([7], only()).redact("not json", "application/json") == ("not json", [])
    untouched = json.dumps(LISTING)
    assert ToolListFilter([7], only("read", "delete", "search")).redact(untouched)[0] == untouched


def sse(*messages: dict[str, object]) -> str:
    return "".join(f"event: message\ndata: {json.dumps(m)}\n\n" for m in messages)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=20))
def test_sse_listing_is_filtered_whatever_the_chunking(cuts: list[int]) -> None:
    notice = {"jsonrpc": "2.0", "method": "notifications/progress", "params": {"p": 1}}
    body = sse(notice, LISTING)
    stream = ToolListFilter([7], only("read")).stream("text/event-stream")
    out, position = [], 0
    for cut in cuts:
        out.append(stream.feed(body[position : position + cut]))
        position += cut
    out.append(stream.feed(body[position:]))
    out.append(stream.flush())
    result = "".join(out)
    events = [e for e in result.split("\n\n") if e]
    assert len(events) == 2
    assert json.loads(events[0].split("data: ", 1)[1]) == notice
    assert events[1].startswith("event: message\n")
    assert json.loads(events[1].split("data: ", 1)[1])["result"]["tools"] == [{"name": "read"}]


def test_streamed_json_is_held_then_filtered() -> None:
    stream = ToolListFilter([7], only("search")).stream("application/json")
    body = json.dumps(LISTING)
    assert stream.feed(body[:10]) == ""
    text = stream.feed(body[10:]) + stream.flush()
    assert [tool["name"] for tool in json.loads(text)["result"]["tools"]] == ["search"]
    assert stream.findings


def test_events_separated_by_any_blank_line_are_each_filtered() -> None:
    notice = {"jsonrpc": "2.0", "method": "notifications/progress", "params": {"p": 1}}
    # "\n" ends the notice's data line, "\r\n" is the blank line: two events.
    body = f"data: {json.dumps(notice)}\n\r\ndata: {json.dumps(LISTING)}\r\n\r\n"
    stream = ToolListFilter([7], only("read")).stream("text/event-stream")
    result = stream.feed(body) + stream.flush()
    assert "delete" not in result and "search" not in result
    assert json.dumps(notice) in result


def test_a_large_listing_in_tiny_pieces_costs_linear_time() -> None:
    # Every piece re-searched (and re-copied) all that was held: a 1 MB event in
    # 16-character pieces took 93 s of CPU on the event loop, a whole body the same.
    listing = {**LISTING, "result": {"tools": [{"name": "read", "description": "x" * 1_000_000}]}}
    for media, body in (
        ("text/event-stream", f"event: message\ndata: {json.dumps(listing)}\n\n"),
        ("application/json", json.dumps(listing)),
    ):
        stream = ToolListFilter([7], only("search")).stream(media)
        started = time.perf_counter()
        out = "".join(stream.feed(body[i : i + 4]) for i in range(0, len(body), 4))
        out += stream.flush()
        # Generous: a shared 2-core CI box; measured about 0.3 s.
        assert time.perf_counter() - started < 4.0, media
        assert '"tools":[]' in out and stream.findings


def test_an_sse_event_over_the_hold_limit_passes_as_it_came() -> None:
    stream = ToolListFilter([7], only("search")).stream("text/event-stream")
    big = "data: " + "x" * (8 * 1024 * 1024)
    out = stream.feed(big) + stream.feed("\n\n" + f"data: {json.dumps(LISTING)}\n\n")
    assert out + stream.flush() == big + "\n\n" + f"data: {json.dumps(LISTING)}\n\n"
