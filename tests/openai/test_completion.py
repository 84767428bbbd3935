"""``Completion`` and the body parser, pure: Chorus events in, OpenAI shapes out."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.api.errors import ApiError
from app.api.openai_compat import Completion, parse_chat_body
from app.engine.wire import encode_data, utf8

USAGE = {"input_tokens": 7, "output_tokens": 2, "estimated": False}
HELLO = [{"role": "user", "content": "hi"}]


def feed(completion: Completion, *events: tuple[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [chunk for kind, data in events for chunk in completion.feed(kind, data)]


def deltas(chunks: list[dict[str, Any]]) -> list[tuple[int, dict[str, Any], str | None]]:
    return [(c["choices"][0]["index"], c["choices"][0]["delta"],
             c["choices"][0]["finish_reason"]) for c in chunks if c["choices"]]


def test_chunks_carry_the_role_once_per_choice_then_text() -> None:
    c = Completion("chatcmpl-x", "demo/fast", 1, 2)
    chunks = feed(c, ("stream.start", {"slots": []}), ("model.start", {"slot": 0}),
                  ("delta", {"slot": 1, "text": "a"}), ("reasoning", {"slot": 0, "text": "hm"}),
                  ("delta", {"slot": 1, "text": "b"}),
                  ("model.done", {"slot": 1, "finish_reason": "stop", "usage": USAGE}))
    assert deltas(chunks) == [
        (1, {"role": "assistant", "content": "a"}, None),
        (0, {"role": "assistant", "reasoning_content": "hm"}, None),
        (1, {"content": "b"}, None),
        (1, {}, "stop"),
    ]
    assert {(ch["id"], ch["object"], ch["model"], ch["created"]) for ch in chunks} == {
        ("chatcmpl-x", "chat.completion.chunk", "demo/fast", 1)}
    assert all("usage" not in ch for ch in chunks)


def test_usage_is_null_until_the_last_chunk_and_summed_over_choices() -> None:
    c = Completion("id", "m", 1, 2, include_usage=True)
    chunks = feed(c, ("delta", {"slot": 0, "text": "a"}),
                  ("model.done", {"slot": 0, "finish_reason": "stop", "usage": USAGE}),
                  ("model.done", {"slot": 1, "finish_reason": "length", "usage": USAGE}),
                  ("stream.done", {"counts": {}}))
    assert [ch["usage"] for ch in chunks[:-1]] == [None, None, None]
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {"prompt_tokens": 14, "completion_tokens": 4,
                                   "total_tokens": 18}
    assert c.finished
    assert c.error is None


def test_tool_calls_come_before_the_finish_and_in_the_message() -> None:
    call = {"index": 0, "id": "call_1", "name": "f", "arguments": "{}"}
    c = Completion("id", "m", 1, 1)
    chunks = feed(c, ("model.done", {"slot": 0, "finish_reason": "tool_calls", "usage": USAGE,
                                     "tool_calls": [call]}))
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
    c = Completion("id", "m", 1, 1)
    feed(c, ("delta", {"slot": 0, "text": "par"}),
         ("model.stopped", {"slot": 0, "reason": "user", "usage": USAGE}))
    assert c.result()["choices"][0]["message"]["content"] == "par"
    assert c.result()["choices"][0]["finish_reason"] == "stop"

    c = Completion("id", "m", 1, 1)
    feed(c, ("model.stopped", {"slot": 0, "reason": "shutdown", "usage": USAGE}))
    assert c.error is not None
    assert (c.error.status, c.error.type) == (503, "stopped")


def test_the_first_error_ends_the_completion() -> None:
    c = Completion("id", "m", 1, 2)
    error = {"type": "rate_limit", "message": "slow down", "retryable": True, "status": 429}
    assert feed(c, ("model.error", {"slot": 1, "error": error, "usage": USAGE}),
                ("delta", {"slot": 0, "text": "late"}), ("stream.done", {})) == []
    assert c.error is not None
    assert (c.error.status, c.error.type, c.error.message) == (429, "rate_limit", "slow down")
    assert not c.started
    assert not c.finished


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


@given(st.lists(st.tuples(st.integers(0, 1), st.sampled_from(["delta", "reasoning"]),
                          st.text(st.characters(blacklist_categories=()))), max_size=8),
       st.booleans())
def test_the_wire_is_every_chunk_encoded_whole(
    texts: list[tuple[int, str, str]], include_usage: bool,
) -> None:
    """``wire`` puts text chunks together around their text; the bytes are the same."""
    events = [(kind, {"slot": slot, "text": text}) for slot, kind, text in texts]
    events += [("model.done", {"slot": 0, "finish_reason": "stop", "usage": USAGE}),
               ("delta", {"slot": 1, "text": "late"}), ("stream.done", {"counts": {}})]
    whole = Completion("chatcmpl-\u00e9", "m\"/x", 1, 2, include_usage)
    fast = Completion("chatcmpl-\u00e9", "m\"/x", 1, 2, include_usage)
    expected = b"".join(utf8(f"data: {encode_data(c)}\n\n")
                        for kind, data in events for c in whole.feed(kind, data))
    assert b"".join(fast.wire(kind, data) for kind, data in events) == expected
    assert fast.result() == whole.result()
