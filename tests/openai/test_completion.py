"""``Completion`` and the body parser, pure: Chorus events in, OpenAI shapes out."""

from __future__ import annotations

import json
from typing import Any

import pytest

from app.api.chat_body import parse_chat_body
from app.api.completion import Completion, encode_chunk
from app.api.errors import ApiError
from app.engine.events import (
    Counts,
    Delta,
    Event,
    ModelDone,
    ModelError,
    ModelStart,
    ModelStopped,
    Reasoning,
    SlotError,
    SlotInfo,
    SlotTiming,
    SlotUsage,
    StreamDone,
    StreamStart,
    ToolCall,
)

USAGE = SlotUsage(7, 2, False)
TIMING = SlotTiming(1.0, 2.0, None)
HELLO = [{"role": "user", "content": "hi"}]
END = StreamDone(Counts(), 1.0)


def done(slot: int, finish: str = "stop", *calls: ToolCall) -> ModelDone:
    return ModelDone(slot, finish, USAGE, TIMING, calls)


def feed(completion: Completion, *events: Event) -> list[dict[str, Any]]:
    return [chunk for event in events for chunk in completion.feed(event)]


def deltas(chunks: list[dict[str, Any]]) -> list[tuple[int, dict[str, Any], str | None]]:
    return [(c["choices"][0]["index"], c["choices"][0]["delta"],
             c["choices"][0]["finish_reason"]) for c in chunks if c["choices"]]


def test_chunks_carry_the_role_once_per_choice_then_text() -> None:
    c = Completion("chatcmpl-x", "demo/fast", 1, ["demo/fast"] * 2)
    chunks = feed(c, StreamStart("s", 1, (SlotInfo(0, "demo/fast", "a"),)),
                  ModelStart(0, "demo/fast"), Delta(1, "a"), Reasoning(0, "hm"), Delta(1, "b"),
                  done(1))
    assert deltas(chunks) == [
        (1, {"role": "assistant", "content": "a"}, None),
        (0, {"role": "assistant", "reasoning_content": "hm"}, None),
        (1, {"content": "b"}, None),
        (1, {}, "stop"),
    ]
    assert {(ch["id"], ch["object"], ch["model"], ch["created"]) for ch in chunks} == {
        ("chatcmpl-x", "chat.completion.chunk", "demo/fast", 1)}
    assert all("usage" not in ch for ch in chunks)
    assert all("model" not in ch["choices"][0] for ch in chunks)  # one model: no extension


def test_a_fanned_out_completion_names_each_choices_model() -> None:
    c = Completion("id", "group:panel", 1, ["demo/fast", "up/m"], name_choices=True)
    chunks = feed(c, Delta(0, "a"), Delta(1, "b"), done(0), done(1))
    assert [(ch["choices"][0]["index"], ch["choices"][0]["model"]) for ch in chunks] == [
        (0, "demo/fast"), (1, "up/m"), (0, "demo/fast"), (1, "up/m")]
    assert {ch["model"] for ch in chunks} == {"group:panel"}
    assert [(ch["index"], ch["model"], ch["message"]["content"])
            for ch in c.result()["choices"]] == [(0, "demo/fast", "a"), (1, "up/m", "b")]


def test_usage_is_null_until_the_last_chunk_and_summed_over_choices() -> None:
    c = Completion("id", "m", 1, ["m", "m"], include_usage=True)
    chunks = feed(c, Delta(0, "a"), done(0), done(1, "length"), END)
    assert [ch["usage"] for ch in chunks[:-1]] == [None, None, None]
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {"prompt_tokens": 14, "completion_tokens": 4,
                                   "total_tokens": 18}
    assert c.finished
    assert c.error is None


def test_tool_calls_come_before_the_finish_and_in_the_message() -> None:
    c = Completion("id", "m", 1, ["m"])
    chunks = feed(c, done(0, "tool_calls", ToolCall(0, "call_1", "f", "{}")))
    function = {"name": "f", "arguments": "{}"}
    assert deltas(chunks) == [
        (0, {"role": "assistant", "tool_calls": [
            {"index": 0, "id": "call_1", "type": "function", "function": function}]}, None),
        (0, {}, "tool_calls"),
    ]
    (choice,) = c.result()["choices"]
    assert choice["message"] == {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": function}]}


def test_a_user_stop_finishes_the_choice_and_a_shutdown_fails_it() -> None:
    c = Completion("id", "m", 1, ["m"])
    feed(c, Delta(0, "par"), ModelStopped(0, "user", USAGE, TIMING))
    assert c.result()["choices"][0]["message"]["content"] == "par"
    assert c.result()["choices"][0]["finish_reason"] == "stop"

    c = Completion("id", "m", 1, ["m"])
    feed(c, ModelStopped(0, "shutdown", USAGE, TIMING))
    assert c.error is not None
    assert (c.error.status, c.error.type) == (503, "stopped")


def test_the_first_error_ends_the_completion() -> None:
    c = Completion("id", "m", 1, ["m", "m"])
    error = SlotError("rate_limit", "slow down", True, 429)
    assert feed(c, ModelError(1, error, USAGE, TIMING), Delta(0, "late"), END) == []
    assert c.error is not None
    assert (c.error.status, c.error.type, c.error.message) == (429, "rate_limit", "slow down")
    assert not c.started
    assert not c.finished


def test_a_chunk_is_one_data_line_of_compact_json() -> None:
    chunk = {"id": "chatcmpl-\u00e9", "choices": [{"delta": {"content": "a\nb"}}]}
    wire = encode_chunk(chunk)
    assert wire.startswith(b"data: ")
    assert wire.endswith(b"\n\n")
    assert wire.count(b"\n") == 2
    assert json.loads(wire[6:]) == chunk


def test_the_body_keeps_openai_fields_apart_from_model_parameters() -> None:
    body = parse_chat_body({"model": " demo/fast ", "messages": HELLO, "stream": True,
                            "stream_options": {"include_usage": True}, "n": 2,
                            "temperature": 0, "user": "u1", "top_p": None}, 9)
    assert (body.model, body.n, body.stream, body.include_usage) == ("demo/fast", 2, True, True)
    assert body.params == {"temperature": 0, "user": "u1"}


@pytest.mark.parametrize(("body", "param", "kind"), [
    ([], None, "invalid_request"),
    ({"messages": HELLO}, "model", "invalid_request"),
    ({"model": "demo/fast"}, "messages", "invalid_request"),
    ({"model": "demo/fast", "messages": HELLO, "stream": "yes"}, "stream", "invalid_request"),
    ({"model": "demo/fast", "messages": HELLO, "n": True}, "n", "invalid_request"),
    ({"model": "demo/fast", "messages": HELLO, "n": 10}, "n", "too_many_slots"),
    ({"model": "demo/fast", "messages": HELLO, "stream_options": []}, "stream_options",
     "invalid_request"),
    ({"model": "demo/fast", "messages": HELLO, "max_tokens": 0}, "max_tokens",
     "invalid_request"),
])
def test_bad_bodies_name_the_field(body: Any, param: str | None, kind: str) -> None:
    with pytest.raises(ApiError) as caught:
        parse_chat_body(body, 9)
    assert (caught.value.status, caught.value.param, caught.value.type) == (400, param, kind)
