"""What every stream parser shares: the same events for any split of the body, in-stream
errors that never swallow the events before them, defensive JSON readers, tool calls,
usage totals and the mapping of upstream error objects."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from recorded import SPLITS, Run, bodies, cut, feed, parser_for, run

from providers.errors import (
    AuthError,
    BadRequestError,
    ProtocolError,
    ProviderError,
    RateLimitError,
    TimeoutError_,
    UpstreamError,
)
from providers.events import ProviderEvent, TextDelta, ToolCall, Usage
from providers.streaming import (
    StreamParserBase,
    ToolCallBuffer,
    UsageTracker,
    arguments_json,
    count,
    error_from,
    load_object,
    names_in,
    short,
)


@pytest.mark.parametrize("split", SPLITS[1:])
@pytest.mark.parametrize("name", bodies())
def test_every_recording_parses_the_same_for_any_split(name: str, split: str) -> None:
    assert run(name, split) == run(name)


def test_every_recording_has_a_parser() -> None:
    assert len(bodies()) == 25
    assert all(parser_for(name) for name in bodies())


class Script(StreamParserBase):
    """Each byte is an instruction: ``t`` a text event, ``e`` an upstream error."""

    def _feed(self, data: bytes, out: list[ProviderEvent]) -> None:
        for byte in data:
            if byte == ord("e"):
                raise UpstreamError("boom")
            out.append(TextDelta(chr(byte)))

    def _close(self, out: list[ProviderEvent]) -> None:
        out.append(TextDelta("end"))


class TestDeferredErrors:
    def test_events_before_an_error_in_the_same_read_come_first(self) -> None:
        parser = Script()
        assert parser.feed(b"tte") == [TextDelta("t"), TextDelta("t")]
        with pytest.raises(UpstreamError):
            parser.feed(b"")

    def test_an_error_with_nothing_before_it_is_raised_at_once(self) -> None:
        parser = Script()
        with pytest.raises(UpstreamError):
            parser.feed(b"e")

    def test_the_error_sticks(self) -> None:
        parser = Script()
        parser.feed(b"te")
        with pytest.raises(UpstreamError, match="boom"):
            parser.feed(b"t")
        with pytest.raises(UpstreamError, match="boom"):
            parser.close()

    def test_close_without_error(self) -> None:
        assert Script().close() == [TextDelta("end")]


def test_load_object() -> None:
    assert load_object(b'{"a": 1}') == {"a": 1}
    for bad in (b"[]", b"nul", b"\xff{}", "[" * 100_000):
        with pytest.raises(ProtocolError):
            load_object(bad)


def test_count_takes_non_negative_ints_only() -> None:
    assert [count(v) for v in (0, 7, -1, True, 1.0, "3", None)] == [
        0,
        7,
        None,
        None,
        None,
        None,
        None,
    ]


def test_arguments_json() -> None:
    assert arguments_json('{"a": 1}') == '{"a": 1}'
    assert arguments_json({"city": "Pelé", "n": [1]}) == '{"city":"Pelé","n":[1]}'
    assert arguments_json(None) == "{}"


def test_tool_call_buffer() -> None:
    calls = ToolCallBuffer()
    assert not calls
    assert calls.next_index() == 0
    calls.add(2, call_id="x", name="f", arguments='{"a"')
    calls.add(2, arguments=":1}")
    calls.append(call_id="", name="g", arguments={"b": 2})
    assert 2 in calls
    assert 0 not in calls
    assert calls.index_of("x") == 2
    assert calls.index_of("y") is None
    assert calls.calls() == (ToolCall(2, "x", "f", '{"a":1}'), ToolCall(3, None, "g", '{"b":2}'))


def test_usage_tracker_keeps_counts_left_out_and_skips_repeats() -> None:
    usage = UsageTracker()
    assert usage.report(None, None) == []
    assert usage.report(10, None) == [Usage(10, None)]
    assert usage.report(None, 5) == [Usage(10, 5)]
    assert usage.report(10, 5) == []


def test_names_in() -> None:
    assert names_in(b'{"m": [{"n": "a"}, {"n": ""}, {}, 1, {"n": "b"}]}', "m", "n") == ["a", "b"]
    assert names_in(b'{"m": {"n": "a"}}', "m", "n") == []


def test_short_messages_are_one_bounded_line() -> None:
    assert short("a\n  b\tc") == "a b c"
    long = short("x" * 1000)
    assert len(long) == 300
    assert long.endswith("…")


@pytest.mark.parametrize(
    ("error", "kind", "status"),
    [
        ({"message": "m", "status_code": 400, "code": "tool_use_failed"}, BadRequestError, 400),
        ({"message": "m", "code": 400}, BadRequestError, 400),
        ({"code": 503, "status": "UNAVAILABLE"}, UpstreamError, 503),
        ({"status": 429}, RateLimitError, 429),
        ({"type": "overloaded_error"}, UpstreamError, 529),
        ({"type": "rate_limit_error"}, RateLimitError, 429),
        ({"type": "authentication_error"}, AuthError, 401),
        ({"code": "rate_limit_exceeded"}, RateLimitError, 429),
        ({"status": "RESOURCE_EXHAUSTED", "code": 99}, RateLimitError, 429),
        ({"status": "DEADLINE_EXCEEDED"}, TimeoutError_, 504),
        ({"type": "server_error", "code": None}, UpstreamError, 500),
        ({"type": "something_new", "code": True}, UpstreamError, None),
        ("a plain string", UpstreamError, None),
        (None, UpstreamError, None),
    ],
)
def test_error_from(error: object, kind: type[ProviderError], status: int | None) -> None:
    exc = error_from(error)
    assert type(exc) is kind
    assert exc.status == status


def test_error_from_messages() -> None:
    assert error_from({"message": "  Overloaded \n"}).message == "Overloaded"
    assert error_from("plain").message == "plain"
    assert error_from({"message": 5}).message == "the upstream reported an error mid-stream"
    # An unknown in-stream failure may pass on a retry; a 4xx one will not.
    assert error_from({}).retryable
    assert not error_from({"code": 404}).retryable


# Property tests: whatever the upstream sends, a parser raises nothing but ProviderError, and
# gives the same result for any split. The JSON is built from the field names and values the
# parsers look at, so that fields of every wrong type and order get tried.
KEYS = st.sampled_from(
    [
        "choices",
        "delta",
        "content",
        "reasoning",
        "reasoning_content",
        "refusal",
        "tool_calls",
        "index",
        "id",
        "function",
        "name",
        "arguments",
        "finish_reason",
        "usage",
        "prompt_tokens",
        "completion_tokens",
        "x_groq",
        "error",
        "message",
        "code",
        "status",
        "status_code",
        "type",
        "content_block",
        "text",
        "thinking",
        "partial_json",
        "stop_reason",
        "input_tokens",
        "output_tokens",
        "cache_read_input_tokens",
        "candidates",
        "parts",
        "thought",
        "functionCall",
        "args",
        "finishReason",
        "usageMetadata",
        "promptTokenCount",
        "candidatesTokenCount",
        "thoughtsTokenCount",
        "promptFeedback",
        "blockReason",
        "response",
        "done",
        "done_reason",
        "prompt_eval_count",
        "eval_count",
    ]
)
WORDS = st.sampled_from(
    [
        "text_delta",
        "thinking_delta",
        "input_json_delta",
        "tool_use",
        "text",
        "thinking",
        "error",
        "message_start",
        "content_block_start",
        "content_block_delta",
        "message_delta",
        "message_stop",
        "STOP",
        "SAFETY",
        "stop",
        "<think>",
        "</think>",
        "rate_limit_error",
        "",
    ]
)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-2, 600) | st.floats() | WORDS | st.text(max_size=4),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=4),
    max_leaves=12,
)
EVENT_NAMES = st.sampled_from(["", "error", "message_start", "content_block_delta", "ping"])


@st.composite
def bodies_for_parser(draw: st.DrawFn, name: str) -> bytes:
    values = draw(st.lists(JSON, max_size=5))
    texts = [json.dumps(v) for v in values]
    if name.startswith("ollama"):
        return "".join(t + "\n" for t in texts).encode()
    if name.startswith("gemini_stream_array"):
        return ("[" + ",\n".join(texts) + "]").encode()
    frames = []
    for text in texts:
        event = draw(EVENT_NAMES)
        head = f"event: {event}\n" if event else ""
        frames.append(head + "data: " + text + "\n\n" if draw(st.booleans()) else text + "\n")
    return "".join(frames).encode()


PARSER_KINDS = ["openai_", "anthropic_", "gemini_sse_", "gemini_stream_array_", "ollama_"]


def split_run(name: str, data: bytes, cuts: list[int]) -> tuple[Run, Run]:
    return feed(parser_for(name)(), [data]), feed(parser_for(name)(), cut(data, cuts))


@pytest.mark.parametrize("kind", PARSER_KINDS)
@given(data=st.data(), cuts=st.lists(st.integers(min_value=0)))
def test_arbitrary_bytes_raise_only_provider_errors(
    kind: str, data: st.DataObject, cuts: list[int]
) -> None:
    body = data.draw(st.binary())
    whole, split = split_run(kind, body, cuts)  # any other exception fails the test
    assert whole == split


@pytest.mark.parametrize("kind", PARSER_KINDS)
@given(data=st.data(), cuts=st.lists(st.integers(min_value=0)))
def test_arbitrary_json_raises_only_provider_errors(
    kind: str, data: st.DataObject, cuts: list[int]
) -> None:
    body = data.draw(bodies_for_parser(kind))
    whole, split = split_run(kind, body, cuts)
    assert whole == split


def test_parser_kinds_name_each_parser_once() -> None:
    assert len({parser_for(kind) for kind in PARSER_KINDS}) == len(PARSER_KINDS)
