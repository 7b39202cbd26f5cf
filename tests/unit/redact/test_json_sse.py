"""JSON-aware and SSE-aware modes."""

from __future__ import annotations

import json
import random

import pytest

from secmw.redact import SecretRedactor
from secmw.redact.sse import SSEStream
from tests.redact_corpus import SPECS

RNG = random.Random(21)
GITHUB = SPECS["github_token"].make(RNG)[1]
REDACTOR = SecretRedactor(json_keys=frozenset({"password", "client_secret", "token"}))


def test_json_layout_and_untouched_strings_are_kept_byte_for_byte() -> None:
    raw = '{\n  "a" : "caf\\u00e9",\n  "b": "' + GITHUB + '",\n  "n": 1.50\n}'
    out, _ = REDACTOR.redact(raw, "application/json")
    assert out == '{\n  "a" : "caf\\u00e9",\n  "b": "[REDACTED:github_token]",\n  "n": 1.50\n}'


def test_escaped_secrets_are_decoded_before_scanning() -> None:
    escaped = GITHUB.replace("_", "\\u005f")
    url = "https:\\/\\/bob:Zq8kL2vB9xW4m@db.example.net\\/x"
    out, findings = REDACTOR.redact(f'{{"k": "{escaped}", "u": "{url}"}}', "application/json")
    assert json.loads(out) == {
        "k": "[REDACTED:github_token]",
        "u": "https://bob:[REDACTED:url_credentials]@db.example.net/x",
    }
    assert [f.kind for f in findings] == ["github_token", "url_credentials"]


@pytest.mark.parametrize(
    ("key", "redacted"),
    [
        pytest.param("password", True, id="exact"),
        pytest.param("db_password", True, id="suffix"),
        pytest.param("dbPassword", True, id="camel-case"),
        pytest.param("access-token", True, id="dashed"),
        pytest.param("oauthClientSecret", True, id="camel-case-two-words"),
        pytest.param("token_type", False, id="prefix-only"),
        pytest.param("description", False, id="other"),
    ],
)
def test_key_based_redaction(key: str, redacted: bool) -> None:
    out, _ = REDACTOR.redact(json.dumps({key: "hunter2", "n": {key: 5}}), "application/json")
    assert (json.loads(out)[key] == "[REDACTED:sensitive_field]") is redacted
    assert json.loads(out)["n"][key] == 5


def test_nested_json_strings_stay_valid_json() -> None:
    level2 = json.dumps({"token": GITHUB})
    level1 = json.dumps({"content": [{"type": "text", "text": level2}]})
    out, findings = REDACTOR.redact(json.dumps({"result": level1}), "application/json")
    inner = json.loads(json.loads(json.loads(out)["result"])["content"][0]["text"])
    assert inner == {"token": "[REDACTED:sensitive_field]"}
    assert len(findings) == 1


def test_invalid_json_falls_back_to_plain_text() -> None:
    out, findings = REDACTOR.redact('{"broken": "' + GITHUB + '"', "application/json")
    assert out == '{"broken": "[REDACTED:github_token]"'
    assert len(findings) == 1


def anthropic(index: int, text: str) -> str:
    payload = {
        "type": "content_block_delta",
        "index": index,
        "delta": {"type": "text_delta", "text": text},
    }
    return f"event: content_block_delta\ndata: {json.dumps(payload)}\n\n"


def test_anthropic_deltas_are_redacted_as_one_text_per_block() -> None:
    pieces = [f"use {GITHUB[:10]}", GITHUB[10:25], GITHUB[25:] + " ok"]
    body = "".join(anthropic(0, piece) for piece in pieces)
    body += 'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n'
    out, _ = REDACTOR.redact(body, "text/event-stream")
    texts = [
        json.loads(line[6:])["delta"]["text"]
        for line in out.splitlines()
        if line.startswith("data: ") and "content_block_delta" in line
    ]
    assert "".join(texts) == "use [REDACTED:github_token] ok"
    assert out.rstrip().endswith('data: {"type":"content_block_stop","index":0}')
    assert out.count("event: content_block_delta") == 4  # three originals and one carrying the rest


def test_tool_call_arguments_are_redacted_across_chunks() -> None:
    arguments = json.dumps({"api_key": GITHUB})
    events = []
    for i in range(0, len(arguments), 6):
        call = {"index": 0, "function": {"arguments": arguments[i : i + 6]}}
        if i == 0:
            call.update(
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "f", "arguments": arguments[:6]},
                }
            )
        chunk = {
            "id": "x",
            "choices": [{"index": 0, "delta": {"tool_calls": [call]}, "finish_reason": None}],
        }
        events.append(f"data: {json.dumps(chunk)}\n\n")
    events.append(
        'data: {"id":"x","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}\n\n'
    )
    out, findings = REDACTOR.redact("".join(events), "text/event-stream")
    joined = ""
    names = 0
    for line in out.splitlines():
        if line.startswith("data: "):
            choice = json.loads(line[6:])["choices"][0]
            for call in choice["delta"].get("tool_calls", []):
                joined += call["function"].get("arguments", "")
                names += "name" in call["function"]
    assert json.loads(joined) == {"api_key": "[REDACTED:github_token]"}
    assert names == 1
    assert [f.kind for f in findings] == ["github_token"]


def test_oversized_event_is_streamed_as_plain_text_without_leaking() -> None:
    stream = SSEStream(REDACTOR, max_event=1024)
    big = "data: " + "a " * 800 + GITHUB + " end\n\ndata: next\n\n"
    sent = [stream.feed(big[i : i + 100]) for i in range(0, len(big), 100)] + [stream.flush()]
    assert "".join(sent) == big.replace(GITHUB, "[REDACTED:github_token]")
    assert not any(GITHUB[:12] in part for part in sent)


def test_crlf_split_between_chunks_does_not_end_an_event_early() -> None:
    stream = REDACTOR.stream("text/event-stream")
    assert stream.feed("data: one\r\n\r") == ""
    assert stream.feed("\ndata: two\r\n\r\n") == "data: one\r\n\r\ndata: two\r\n\r\n"
    assert stream.flush() == ""


@pytest.mark.parametrize("seed", range(60))
def test_random_documents_stay_valid_json_and_lose_every_secret(seed: int) -> None:
    rng = random.Random(seed)
    secrets: list[str] = []

    def value(depth: int) -> object:
        roll = rng.random()
        if depth > 3 or roll < 0.3:
            text, secret = SPECS[rng.choice(sorted(SPECS))].make(rng)
            secrets.append(secret)
            return text
        if roll < 0.45:
            return json.dumps(value(depth + 1))  # JSON inside a string
        if roll < 0.7:
            return [value(depth + 1) for _ in range(rng.randint(1, 3))]
        if roll < 0.8:
            return rng.choice([1, 2.5, None, True, "caf\u00e9 \u2028"])
        return {f"k{i}": value(depth + 1) for i in range(rng.randint(1, 3))}

    document = {"result": value(0), "id": seed}
    raw = json.dumps(document, ensure_ascii=rng.random() < 0.5, indent=rng.choice([None, 2]))
    out, findings = SecretRedactor().redact(raw, "application/json")
    json.loads(out)
    for secret in secrets:
        assert secret not in out
        assert json.dumps(secret)[1:-1] not in out
    assert len(findings) >= len(secrets)


def responses_event(kind: str, **fields: object) -> str:
    return f"event: {kind}\ndata: {json.dumps({'type': kind, **fields})}\n\n"


def test_openai_responses_deltas_and_their_done_event() -> None:
    pieces = ["key ", GITHUB[:7], GITHUB[7:30], GITHUB[30:], " end"]
    body = "".join(
        responses_event(
            "response.output_text.delta", item_id="m1", content_index=0, delta=p, sequence_number=i
        )
        for i, p in enumerate(pieces)
    )
    body += responses_event(
        "response.output_text.done", item_id="m1", content_index=0, text="key " + GITHUB + " end"
    )
    out, _ = REDACTOR.redact(body, "text/event-stream")
    datas = [json.loads(line[6:]) for line in out.splitlines() if line.startswith("data: ")]
    deltas = "".join(d["delta"] for d in datas if d["type"].endswith(".delta"))
    assert deltas == "key [REDACTED:github_token] end"
    assert datas[-1] == {
        "type": "response.output_text.done",
        "item_id": "m1",
        "content_index": 0,
        "text": "key [REDACTED:github_token] end",
    }
    assert GITHUB[:12] not in out


def test_unterminated_last_event_and_open_deltas_are_flushed_at_the_end() -> None:
    stream = REDACTOR.stream("text/event-stream")
    sent = stream.feed(anthropic(1, "secret " + GITHUB[:20]))
    sent += stream.feed("data: not json " + GITHUB)
    assert GITHUB[:12] not in sent
    rest = stream.flush()
    assert rest.startswith("data: not json [REDACTED:github_token]")
    assert '"index":1' in rest and GITHUB[:20] in rest  # a prefix alone is not a secret
    assert "".join([sent, rest]).count("event: content_block_delta") == 2


def test_message_stop_flushes_every_anthropic_block() -> None:
    body = anthropic(0, "a " + GITHUB) + anthropic(1, "b") + 'data: {"type":"message_stop"}\n\n'
    out, findings = REDACTOR.redact(body, "text/event-stream")
    assert out.endswith('data: {"type":"message_stop"}\n\n')
    assert "[REDACTED:github_token]" in out and GITHUB not in out
    assert [f.kind for f in findings] == ["github_token"]


def test_a_final_chunk_with_content_and_finish_reason_keeps_the_order() -> None:
    def chunk(content: str, finish: str | None) -> str:
        choice = {"index": 0, "delta": {"content": content}, "finish_reason": finish}
        return "data: " + json.dumps({"id": "c", "choices": [choice]}) + "\n\n"

    body = chunk("key " + GITHUB[:10], None) + chunk(GITHUB[10:] + " end", "stop")
    body += "data: [DONE]\n\n"
    out, findings = REDACTOR.redact(body, "text/event-stream")
    contents = [
        json.loads(line[6:])["choices"][0]["delta"]["content"]
        for line in out.splitlines()
        if line.startswith("data: {")
    ]
    assert contents == ["key ", "[REDACTED:github_token] end"]
    assert out.endswith("data: [DONE]\n\n")
    assert [f.kind for f in findings] == ["github_token"]


def test_a_card_number_written_as_a_json_number_becomes_a_string() -> None:
    raw = '{"card_number": 4111111111111111, "n": 12, "other": 4111111111111111}'
    out, findings = REDACTOR.redact(raw, "application/json")
    assert json.loads(out) == {
        "card_number": "[REDACTED:payment_card]",
        "n": 12,
        "other": 4111111111111111,
    }
    assert [f.kind for f in findings] == ["payment_card"]


@pytest.mark.parametrize(
    "number",
    ["4111111111111111.0", "-4111111111111111", "4111111111111111e0", "4111111111111111E+2"],
)
def test_a_card_number_with_sign_fraction_or_exponent_leaves_valid_json(number: str) -> None:
    raw = f'{{"card": {number}, "n": [1.5, -2e3]}}'
    out, findings = REDACTOR.redact(raw, "application/json")
    assert json.loads(out) == {"card": "[REDACTED:payment_card]", "n": [1.5, -2e3]}
    assert [(f.kind, raw[f.start : f.end]) for f in findings] == [
        ("payment_card", "4111111111111111")
    ]


CARDS = ["4111111111111111", "5500005555555559", "4012888888881881"]


@pytest.mark.parametrize(
    ("body", "media"),
    [
        ("card: {0}, {1}, {2}", "text/plain"),
        ("cards on file: {0} {1} {2}\n", "text/plain"),
        ('{{"cards": ["{0}", "{1}", "{2}"]}}', "application/json"),
        ('{{"credit": [{0}, {1}, {2}]}}', "application/json"),
        ('data: {{"cards": ["{0}", "{1}", "{2}"]}}\n\n', "text/event-stream"),
    ],
)
def test_every_card_number_of_a_list_after_one_keyword_is_redacted(body: str, media: str) -> None:
    text = body.format(*CARDS)
    out, findings = REDACTOR.redact(text, media)
    assert not any(card in out for card in CARDS)
    assert out.count("[REDACTED:payment_card]") == 3
    assert [f.kind for f in findings] == ["payment_card"] * 3
    stream = REDACTOR.stream(media)
    rng = random.Random(len(text))
    position, pieces = 0, []
    while position < len(text):
        step = rng.randint(1, 9)
        pieces.append(stream.feed(text[position : position + step]))
        position += step
    assert "".join(pieces) + stream.flush() == out


def test_a_second_keyword_inside_a_list_carries_it_past_the_first_ones_reach() -> None:
    first, second = ", ".join([CARDS[0]] * 20), ", ".join([CARDS[1]] * 20)
    out, findings = REDACTOR.redact(f"card: {first}, card {second}")
    assert out.count("[REDACTED:payment_card]") == 40
    assert len(findings) == 40


def test_a_card_list_needs_each_number_near_the_last_and_card_length() -> None:
    text = f"card {CARDS[0]} exp 2027 {CARDS[1]}; " + "card: " + ", ".join([CARDS[2]] * 33)
    out, _ = REDACTOR.redact(text)
    # "2027" ends the first list; the 33rd number of the second is past the bound.
    assert out.startswith(f"card [REDACTED:payment_card] exp 2027 {CARDS[1]}; ")
    assert out.count("[REDACTED:payment_card]") == 1 + 32
    assert out.endswith(CARDS[2])


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        # A secret outside every literal that is not a number: not JSON, plain text.
        ('{"a": 1} ' + GITHUB, '{"a": 1} [REDACTED:github_token]'),
        ("token " + GITHUB + ' "quoted"', 'token [REDACTED:github_token] "quoted"'),
        # An unclosed literal after the secret's quote.
        ('["' + GITHUB, '["[REDACTED:github_token]'),
        # A literal with a raw line break (invalid JSON): replaced in place all the same.
        ('{"k": "line\n' + GITHUB + '"}', '{"k": "line\n[REDACTED:github_token]"}'),
    ],
)
def test_unparsed_text_that_is_not_json_still_loses_every_secret(body: str, expected: str) -> None:
    out, findings = REDACTOR.redact(body, "application/json")
    assert out == expected
    assert GITHUB not in out
    assert [finding.kind for finding in findings] == ["github_token"]


def test_valid_json_without_escapes_keeps_its_structure() -> None:
    body = json.dumps({"items": [{"id": 1, "value": GITHUB}], "card": 4111111111111111})
    out, findings = REDACTOR.redact(body, "application/json")
    assert json.loads(out) == {
        "items": [{"id": 1, "value": "[REDACTED:github_token]"}],
        "card": "[REDACTED:payment_card]",
    }
    assert sorted(finding.kind for finding in findings) == ["github_token", "payment_card"]


def _delta_text(out: str, pick: object) -> str:
    events = [json.loads(line[6:]) for line in out.splitlines() if line.startswith("data: {")]
    return "".join(t for t in (pick(e) for e in events) if isinstance(t, str))  # type: ignore[operator]


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning", "refusal"])
def test_chat_reasoning_and_refusal_deltas_are_redacted_as_one_text(field: str) -> None:
    pieces = [f"key {GITHUB[:12]}", GITHUB[12:30], GITHUB[30:] + " end"]
    body = "".join(
        "data: " + json.dumps({"id": "c", "choices": [{"index": 0, "delta": {field: p}}]}) + "\n\n"
        for p in pieces
    )
    body += 'data: {"id":"c","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
    out = "".join(_feed_in_pieces(body, 7))
    assert GITHUB[:12] not in out and GITHUB[30:] not in out
    text = _delta_text(out, lambda e: e["choices"][0]["delta"].get(field))
    assert text == "key [REDACTED:github_token] end"


def test_gemini_parts_are_redacted_as_one_text() -> None:
    pieces = [f"key {GITHUB[:12]}", GITHUB[12:30], GITHUB[30:] + " end"]
    events = [
        {"candidates": [{"index": 0, "content": {"role": "model", "parts": [{"text": p}]}}]}
        for p in pieces
    ]
    events[-1]["candidates"][0]["finishReason"] = "STOP"
    body = "".join(f"data: {json.dumps(e)}\r\n\r\n" for e in events)
    out = "".join(_feed_in_pieces(body, 5))
    assert GITHUB[:12] not in out and GITHUB[12:30] not in out
    text = _delta_text(out, lambda e: e["candidates"][0]["content"]["parts"][-1].get("text"))
    assert text == "key [REDACTED:github_token] end"


def test_gemini_text_moving_between_part_positions_is_one_text_and_thoughts_stay_apart() -> None:
    # A thought part first, then the answer; the next event has the answer alone.
    def event(*parts: dict[str, object], done: bool = False) -> dict[str, object]:
        candidate: dict[str, object] = {
            "index": 0,
            "content": {"role": "model", "parts": list(parts)},
        }
        if done:
            candidate["finishReason"] = "STOP"
        return {"candidates": [candidate]}

    events = [
        event({"text": "thinking about it ", "thought": True}, {"text": f"key {GITHUB[:12]}"}),
        event({"text": GITHUB[12:] + " end"}),
        event({"text": "more thought ", "thought": True}, {"text": " bye"}, done=True),
    ]
    body = "".join(f"data: {json.dumps(e)}\n\n" for e in events)
    out = "".join(_feed_in_pieces(body, 9))
    assert GITHUB[:12] not in out and GITHUB[12:] not in out
    parts = [
        part
        for line in out.splitlines()
        if line.startswith("data: {")
        for part in json.loads(line[6:])["candidates"][0]["content"]["parts"]
    ]
    answer = "".join(p["text"] for p in parts if not p.get("thought"))
    thoughts = "".join(p["text"] for p in parts if p.get("thought"))
    assert answer == "key [REDACTED:github_token] end bye"
    assert thoughts == "thinking about it more thought "


def _feed_in_pieces(body: str, size: int) -> list[str]:
    stream = SSEStream(REDACTOR)
    out = [stream.feed(body[i : i + size]) for i in range(0, len(body), size)]
    return [*out, stream.flush()]


@pytest.mark.parametrize("pieces", [["data: hello\r\n", "\r", "\n"], ["data: hello\n", "\r", "\n"]])
def test_an_event_ends_when_its_blank_line_arrives_in_tiny_pieces(pieces: list[str]) -> None:
    stream = SSEStream(REDACTOR)
    out = [stream.feed(piece) for piece in pieces]
    assert out[-1].startswith("data: hello")  # sent at once, not held for the next event


AKIA = "AKIA" + "Q3RMXWV2JZ5HNPAY"
STRIPE = "sk_live_" + "9fQ27ZpLmWx3RtYv8KbN2sDe"
_TOOL_COMMANDS = [
    (f"echo ok\n{AKIA}", AKIA),  # "\n" in JSON source: its "n" must not glue to the key
    (f"KEY:\t{AKIA}", AKIA),
    ('export DB_PASSWORD="Zq8kLm2Vx9rT4wQ7"', "Zq8kLm2Vx9rT4wQ7"),  # quotes escaped as \"
    (f"url https:\\/\\/x\\/{GITHUB}", GITHUB),
]


def _anthropic_tool(arguments: str, step: int) -> str:
    start = {"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use"}}
    events = [f"event: content_block_start\ndata: {json.dumps(start)}\n\n"]
    for i in range(0, len(arguments), step):
        delta = {"type": "input_json_delta", "partial_json": arguments[i : i + step]}
        payload = {"type": "content_block_delta", "index": 1, "delta": delta}
        events.append(f"event: content_block_delta\ndata: {json.dumps(payload)}\n\n")
    events.append('event: content_block_stop\ndata: {"type":"content_block_stop","index":1}\n\n')
    return "".join(events)


def _openai_tool(arguments: str, step: int) -> str:
    events = []
    for i in range(0, len(arguments), step):
        call = {"index": 0, "function": {"arguments": arguments[i : i + step]}}
        chunk = {"choices": [{"index": 0, "delta": {"tool_calls": [call]}}]}
        events.append(f"data: {json.dumps(chunk)}\n\n")
    events.append('data: {"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}\n\n')
    return "".join(events) + "data: [DONE]\n\n"


@pytest.mark.parametrize(("command", "secret"), _TOOL_COMMANDS)
@pytest.mark.parametrize("api", ["anthropic", "openai"])
def test_streamed_tool_arguments_are_redacted_as_json_source(
    command: str, secret: str, api: str
) -> None:
    arguments = json.dumps({"command": command})
    body = (_anthropic_tool if api == "anthropic" else _openai_tool)(arguments, 7)
    whole, findings = REDACTOR.redact(body, "text/event-stream")
    if api == "anthropic":
        joined = _delta_text(whole, lambda e: e.get("delta", {}).get("partial_json"))
    else:
        joined = _delta_text(
            whole,
            lambda e: "".join(
                c["function"].get("arguments", "")
                for c in e["choices"][0]["delta"].get("tool_calls", [])
            ),
        )
    # What the client reassembles: valid JSON, the secret gone, the rest kept.
    redacted = json.loads(joined)["command"]
    assert secret not in redacted and "[REDACTED:" in redacted
    assert redacted.startswith(command[:4])
    assert findings
    for size in (1, 5, 64):
        assert "".join(_feed_in_pieces(body, size)) == whole


def test_json_over_several_data_lines_is_redacted_as_one_value() -> None:
    value = {"result": {"text": "stripe " + STRIPE + " at https://x/", "ref": GITHUB}}
    pretty = json.dumps(value, indent=1).replace("/", "\\/").replace("sk_live_", "sk\\u005flive_")
    body = "event: message\n" + "".join(f"data: {line}\n" for line in pretty.split("\n"))
    body += "id: 9\n\n"
    out, findings = REDACTOR.redact(body, "text/event-stream")
    events = out.split("\n\n")
    data = "\n".join(x[6:] for x in events[0].split("\n") if x.startswith("data: "))
    assert json.loads(data) == {
        "result": {
            "text": "stripe [REDACTED:stripe_secret_key] at https://x/",
            "ref": "[REDACTED:github_token]",
        }
    }
    assert "event: message\n" in out and "id: 9\n" in out and out.endswith("\n\n")
    # Findings point into the body, even on later data lines.
    spots = {f.kind: body[f.start : f.end] for f in findings}  # type: ignore[misc]
    assert spots["github_token"] == GITHUB
    assert spots["stripe_secret_key"].startswith("sk\\u005f")
    assert "".join(_feed_in_pieces(body, 3)) == out


def test_a_byte_order_mark_before_the_first_event_is_skipped_as_clients_do() -> None:
    body = '\ufeffdata: {"k": "x\\/' + GITHUB.replace("_", "\\u005f") + '"}\n\n'
    out, _ = REDACTOR.redact(body, "text/event-stream")
    assert out.startswith("\ufeffdata: ") and GITHUB[4:] not in out
    assert json.loads(out[7:]) == {"k": "x/[REDACTED:github_token]"}


@pytest.mark.parametrize(
    "document",
    [
        '{"command": "echo ok\\n' + AKIA + " more",  # cut off (finish_reason "length")
        '{"command": "echo ok\\n' + AKIA + '",}',  # a trailing comma
        '{"command": "export DB_PASSWORD=\\"Zq8kLm2Vx9rT4wQ7\\" && ',
        '{"token_value": "' + GITHUB.replace("_", "\\u005f") + '", "more": "',
    ],
)
def test_json_that_does_not_parse_still_has_its_escapes_decoded(document: str) -> None:
    out, findings = REDACTOR.redact(document, "application/json")
    assert findings
    for secret in (AKIA, "Zq8kLm2Vx9rT4wQ7", GITHUB[4:]):
        assert secret not in out


def test_an_oversized_event_of_another_choice_leaves_held_text_alone() -> None:
    # Choice 0 holds the head of a key while choice 1 sends one event too large to
    # buffer: choice 0's stream goes on, and the key is redacted whole.
    def chat(choice: int, content: str) -> str:
        delta = {"choices": [{"index": choice, "delta": {"content": content}}]}
        return "data: " + json.dumps(delta) + "\n\n"

    finish = {"index": 0, "delta": {}, "finish_reason": "stop"}
    body = (
        chat(0, "the key is ")
        + chat(0, GITHUB[:10])
        + chat(1, "lorem ipsum " * 200)
        + chat(0, GITHUB[10:] + " thanks")
        + "data: "
        + json.dumps({"choices": [finish, {**finish, "index": 1}]})
        + "\n\ndata: [DONE]\n\n"
    )
    stream = SSEStream(REDACTOR, max_event=1024)
    out = "".join(stream.feed(body[i : i + 200]) for i in range(0, len(body), 200))
    out += stream.flush()
    text = _delta_text(
        out,
        lambda e: (
            e["choices"][0]["delta"].get("content") if e["choices"][0]["index"] == 0 else None
        ),
    )
    assert text == "the key is [REDACTED:github_token] thanks"
    assert GITHUB[10:] not in out


@pytest.mark.parametrize("eol", ["\n", "\r\n"])
def test_an_oversized_event_ending_across_pieces_leaves_later_deltas_guarded(eol: str) -> None:
    # A writer that sends each line and the blank line on their own: the end of the
    # big event straddles two pieces, which once left the rest of the stream plain.
    def chat(text: str) -> str:
        return "data: " + json.dumps({"choices": [{"index": 0, "delta": {"content": text}}]})

    events = [
        "data: " + json.dumps({"image": "A" * 3000}),
        chat("the key is " + GITHUB[:10]),
        chat(GITHUB[10:] + " thanks"),
        "data: [DONE]",
    ]
    pieces = [part for event in events for part in (event + eol, eol)]
    stream = SSEStream(REDACTOR, max_event=1024)
    out = "".join(stream.feed(piece) for piece in pieces) + stream.flush()
    one_shot = SSEStream(REDACTOR, max_event=1024)
    assert out == one_shot.feed("".join(pieces)) + one_shot.flush()
    text = _delta_text(out, lambda e: e.get("choices", [{}])[0].get("delta", {}).get("content"))
    assert text == "the key is [REDACTED:github_token] thanks"


def test_a_responses_item_that_ends_leaves_another_items_deltas_held() -> None:
    def event(kind: str, item: str, **fields: object) -> str:
        body = {"type": kind, "item_id": item, "output_index": 0, "content_index": 0, **fields}
        return f"event: {kind}\ndata: {json.dumps(body)}\n\n"

    body = (
        event("response.output_text.delta", "msg_b", delta="key " + GITHUB[:12])
        + event("response.reasoning_summary_text.done", "rs_a", text="done thinking")
        + event("response.output_text.delta", "msg_b", delta=GITHUB[12:] + " end")
        + event("response.output_text.done", "msg_b", text="")
    )
    out, _ = REDACTOR.redact(body, "text/event-stream")
    text = _delta_text(out, lambda e: e.get("delta") if e.get("item_id") == "msg_b" else None)
    assert text == "key [REDACTED:github_token] end"


@pytest.mark.parametrize("index", [0, None])
def test_parallel_tool_calls_numbered_alike_stay_separate(index: int | None) -> None:
    # Ollama numbers every parallel call 0; Gemini's compatible endpoint sends none.
    def event(call: dict[str, object]) -> str:
        if index is not None:
            call = {**call, "index": index}
        return "data: " + json.dumps({"choices": [{"index": 0, "delta": {"tool_calls": [call]}}]})

    first = json.dumps({"path": "a.sh", "content": "echo\n" + AKIA})
    second = json.dumps({"path": "b.sh", "content": "echo hi"})
    body = (
        "\n\n".join(
            [
                event({"id": "call_1", "function": {"name": "write", "arguments": ""}}),
                event({"function": {"arguments": first}}),
                event({"id": "call_2", "function": {"name": "write", "arguments": ""}}),
                event({"function": {"arguments": second}}),
                'data: {"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}',
                "data: [DONE]",
            ]
        )
        + "\n\n"
    )
    out, _ = REDACTOR.redact(body, "text/event-stream")
    calls: list[str] = []
    for line in out.splitlines():
        if not line.startswith("data: {"):
            continue
        for call in json.loads(line[6:])["choices"][0]["delta"].get("tool_calls", []):
            if "id" in call:
                calls.append("")
            calls[-1] += call["function"].get("arguments", "")
    assert [json.loads(c)["path"] for c in calls] == ["a.sh", "b.sh"]
    assert AKIA not in out and "[REDACTED:aws_access_key_id]" in calls[0]


def test_cut_off_arguments_inside_a_valid_reply_are_redacted_as_json() -> None:
    # A non-streamed reply stopped by max_tokens: valid JSON, its arguments not.
    arguments = json.dumps({"command": "echo ok\n" + AKIA + " && ls -la /tmp"})[:-8]
    reply = {"choices": [{"message": {"tool_calls": [{"function": {"arguments": arguments}}]}}]}
    out, findings = REDACTOR.redact(json.dumps(reply), "application/json")
    assert AKIA not in out and [f.kind for f in findings] == ["aws_access_key_id"]


@pytest.mark.parametrize(
    "tail",
    [" C:\\\\Users", " C:\\Users", "\\u00", "\\u", "\\\\", "\\", " raw\ttab", " line\nbreak"],
)
def test_unparsable_literals_are_decoded_loosely(tail: str) -> None:
    document = '{"command": "echo ok\\n' + AKIA + tail
    out, findings = REDACTOR.redact(document, "application/json")
    assert AKIA not in out and "aws_access_key_id" in [f.kind for f in findings]


def test_findings_outside_literals_of_broken_json_point_into_the_text() -> None:
    document = '{"a": "' + "x\\n" * 100 + '", password: "Zq8kL2vB9xW4mQ"'
    out, findings = REDACTOR.redact(document, "application/json")
    (finding,) = findings
    assert document[finding.start : finding.end] == "Zq8kL2vB9xW4mQ"  # type: ignore[misc]


def test_two_calls_numbered_alike_in_one_event_stay_in_order() -> None:
    calls = [
        {"index": 0, "id": "call_1", "function": {"name": "w", "arguments": '{"path": "a.sh"}'}},
        {"index": 0, "id": "call_2", "function": {"name": "w", "arguments": '{"path": "b.sh"}'}},
    ]
    body = "data: " + json.dumps({"choices": [{"index": 0, "delta": {"tool_calls": calls}}]})
    body += '\n\ndata: {"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}\n\n'
    out, _ = REDACTOR.redact(body, "text/event-stream")
    rebuilt: list[list[str]] = []
    for line in out.splitlines():
        if line.startswith("data: {"):
            for call in json.loads(line[6:])["choices"][0]["delta"].get("tool_calls", []):
                if "id" in call:
                    rebuilt.append([call["id"], ""])
                rebuilt[-1][1] += call["function"].get("arguments", "")
    assert rebuilt == [["call_1", '{"path": "a.sh"}'], ["call_2", '{"path": "b.sh"}']]


@pytest.mark.parametrize(
    "document",
    [
        'export DB_PASSWORD="Zq8kLm2Vx9rT4wQ7 ' + AKIA + '" && run\n',
        'password="Zq8kLm2Vx9rT4wQ7\\n' + AKIA + '"',
    ],
)
def test_broken_json_keeps_the_context_outside_its_literals(document: str) -> None:
    # Plain text redacts the password by its DB_PASSWORD=" context, and the key:
    # the JSON path (text that does not parse) must not lose either.
    out, findings = REDACTOR.redact(document, "application/json")
    assert "Zq8kLm2Vx9rT4wQ7" not in out and AKIA not in out
    assert sorted(f.kind for f in findings) == ["aws_access_key_id", "generic_secret"]


def test_a_lone_surrogate_escape_before_a_secret_does_not_crash() -> None:
    out, findings = REDACTOR.redact(
        '{"cmd": "DB_PASSWORD=\\ude00Zq8kLm2Vx9rT4wQ7"}', "application/json"
    )
    assert "Zq8kLm2Vx9rT4wQ7" not in out and findings


@pytest.mark.parametrize(
    "document", ['{"password": "hunter2xyz", "a": 1,}', '{"password": "hunter2xyz", "a": "cut']
)
def test_json_keys_hold_in_json_that_does_not_parse(document: str) -> None:
    out, findings = REDACTOR.redact(document, "application/json")
    assert "hunter2xyz" not in out and [f.kind for f in findings] == ["sensitive_field"]


BIG = "1" + "0" * 5000  # past Python's int digit limit: json.loads refuses it, clients do not


@pytest.mark.parametrize(
    "event",
    [
        'data: {"n": BIG, "k": "ESC"}\n\n',
        'data: {"n": BIG,\ndata: "k": "ESC"}\n\n',
        'data: [BIG, "ESC"]\n\n',
        'data: {"n": BIG, "password": "hunter2xyz"}\n\n',
    ],
)
def test_sse_json_with_an_integer_python_cannot_read_is_still_redacted_as_json(
    event: str,
) -> None:
    event = event.replace("BIG", BIG).replace("ESC", GITHUB.replace("_", "\\u005f"))
    stream = SSEStream(REDACTOR)
    out = stream.feed(event) + stream.flush()
    assert GITHUB[4:] not in out and "hunter2xyz" not in out
    assert out.startswith("data:") and BIG in out and stream.findings
    buffered, findings = REDACTOR.redact(event, "text/event-stream")
    assert buffered == out and findings


DEEP = "[" * 100_000 + '"ESC"' + "]" * 100_000  # deeper than the parser reads here


@pytest.mark.parametrize(
    ("media", "body"),
    [
        ("application/json", DEEP),
        ("application/x-ndjson", DEEP + "\n"),
        ("text/event-stream", "data: " + DEEP + "\n\n"),
    ],
)
def test_json_too_deep_to_parse_is_redacted_not_an_error(media: str, body: str) -> None:
    body = body.replace("ESC", GITHUB.replace("_", "\\u005f"))
    out, findings = REDACTOR.redact(body, media)
    assert GITHUB[4:] not in out and [f.kind for f in findings] == ["github_token"]
    assert "[" * 100_000 + '"[REDACTED:github_token]"' + "]" * 100_000 in out
    stream = REDACTOR.stream(media)
    assert stream.feed(body) + stream.flush() == out
