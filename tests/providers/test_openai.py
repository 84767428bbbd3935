"""The Chat Completions protocol: the request we send, and what real streams parse to."""

from __future__ import annotations

import json

import pytest
from recorded import Expect, Run, Text, bodies_for, feed, run

from providers import openai
from providers.base import ChatRequest, Message, ProviderConfig
from providers.errors import (
    BadRequestError,
    ProtocolError,
    RateLimitError,
    UpstreamError,
)
from providers.events import Finish, ReasoningDelta, TextDelta, ToolCall, Usage

RECORDED = {
    "openai_chat_text_plain.sse": Expect(text="1, 2, 3, 4, 5"),
    "openai_chat_text_include_usage.sse": Expect(
        text="The capital of the UK is London.", usage=Usage(78, 9)
    ),
    "openai_chat_tool_calls_include_usage.sse": Expect(
        usage=Usage(53, 15),
        finish="tool_calls",
        tool_calls=[
            ToolCall(0, "call_ZR5UUuTt3pf61kjwAJIYdVMj", "get_capital", '{"country":"UK"}')
        ],
    ),
    "openai_chat_parallel_tool_calls.sse": Expect(
        finish="tool_calls",
        tool_calls=[
            ToolCall(
                0,
                "call_cCPjAyfwTzboEKjVlqFrArNF",
                "get_current_weather",
                '{"location": "San Francisco"}',
            ),
            ToolCall(
                1, "call_Zi4He1Ns0mozwT6f85nW1BOW", "get_current_weather", '{"location": "Boston"}'
            ),
        ],
    ),
    "azure_openai_chat_content_filter.sse": Expect(
        text="Why did the Opentelemetry developer bring a ladder to the coding competition? \n\n"
        "Because they wanted to reach new traces!"
    ),
    "groq_chat_error_event_midstream.sse": Expect(
        reasoning=Text(
            "We need to call the tool with invalid parameters first", "Let's do that.", 412
        ),
        finish=None,
        error=(
            BadRequestError,
            400,
            "Tool call validation failed: tool call validation failed: parameters for tool "
            "get_something_by_name did not match schema: errors: [missing properties: 'name', "
            "additionalProperties 'invalid_param' not allowed]",
        ),
    ),
    "openrouter_chat_comments_error_midstream.sse": Expect(
        reasoning="We need to respond to a greeting. The user",
        usage=Usage(43, 10),
        finish=None,
        error=(BadRequestError, 400, "Token limit reached"),
    ),
    "openrouter_chat_comments_reasoning.sse": Expect(
        text="2 + 2 = 4",
        reasoning="This is a simple arithmetic question. 2+2 equals 4.",
        usage=Usage(43, 36),
    ),
    "deepseek_chat_reasoning_content.sse": Expect(
        text="Hello there! 😊 How can I help you today?",
        reasoning=Text('Hmm, the user just said "Hello".', "and that's okay too.", 882),
        usage=Usage(6, 212),
    ),
    "llamacpp_chat_reasoning_content_tool_calls.sse": Expect(
        reasoning=Text("We need to call function 'weather'", 'location "Florence, Italy".', 67),
        usage=Usage(139, 42),
        finish="tool_calls",
        tool_calls=[
            ToolCall(
                0, "1wNpqrejg1FCTjf6xq8JRCGKgWZO74AL", "weather", '{"location":"Florence, Italy"}'
            )
        ],
    ),
    # Inline <think>: the tags are gone, and so is the whitespace right after each one.
    "together_chat_think_inline.sse": Expect(
        text=Text("Crossing the street safely requires attention", "save your life! 🌟", 2556),
        reasoning=Text(
            'Okay, the user asked "How do I cross the street?"', "paranoid robot.\n", 1429
        ),
        usage=Usage(10, 955),
    ),
    "groq_chat_think_inline_escaped.sse": Expect(
        text=Text("To make Uruguayan alfajores, follow", "homemade Uruguayan alfajores!", 2051),
        reasoning=Text("Okay, so I want to make Uruguayan alfajores.", "next time.\n", 1976),
        usage=Usage(21, 988),
    ),
}


def test_every_openai_recording_has_an_expectation() -> None:
    assert sorted(RECORDED) == bodies_for(openai.parser)


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_recorded_stream(name: str) -> None:
    RECORDED[name].check(run(name))


def test_groq_error_is_not_retryable_and_openrouter_keeps_the_billed_usage() -> None:
    groq = run("groq_chat_error_event_midstream.sse").error
    assert groq is not None
    assert groq[3] is False
    assert run("openrouter_chat_comments_error_midstream.sse").events[-1] == Usage(43, 10)


def sse(*chunks: object, done: bool = True) -> bytes:
    out = b"".join(
        c if isinstance(c, bytes) else b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks
    )
    return out + (b"data: [DONE]\n\n" if done else b"")


def delta(finish: str | None = None, index: int = 0, **fields: object) -> dict[str, object]:
    return {"choices": [{"index": index, "delta": fields, "finish_reason": finish}]}


def parse(data: bytes) -> Run:
    return feed(openai.parser(), [data])


class TestEndOfStream:
    def test_done_without_finish_reason_is_a_stop(self) -> None:
        assert parse(sse(delta(content="hi"))).events == [TextDelta("hi"), Finish("stop")]

    def test_finish_reason_without_done_is_complete(self) -> None:
        got = parse(sse(delta(content="hi"), delta("length"), done=False))
        assert got.events == [TextDelta("hi"), Finish("length")]

    def test_neither_is_truncated(self) -> None:
        got = parse(sse(delta(content="hi"), done=False))
        assert got.events == [TextDelta("hi")]
        assert got.error_type is ProtocolError

    def test_an_unterminated_last_event_is_dropped(self) -> None:
        got = parse(sse(delta(content="hi"), done=False) + b'data: {"choices": []}')
        assert got.error_type is ProtocolError

    def test_anything_after_done_is_ignored(self) -> None:
        got = parse(sse(delta(content="a")) + b"data: not json\n\n")
        assert got.events == [TextDelta("a"), Finish("stop")]

    def test_empty_finish_reason_is_no_finish(self) -> None:
        # Ollama's /v1 sent finish_reason "" on every chunk before v0.1.39 (ollama#4357).
        got = parse(sse(delta("", content="a"), done=False))
        assert got.error_type is ProtocolError


class TestChunks:
    def test_azure_leading_empty_choices_and_unknown_fields(self) -> None:
        got = parse(sse({"choices": [], "prompt_filter_results": []}, delta(content="x")))
        assert got.events == [TextDelta("x"), Finish("stop")]

    def test_vllm_and_ollama_reasoning_field(self) -> None:
        got = parse(sse(delta(reasoning="think"), delta(content="say")))
        assert got.events == [ReasoningDelta("think"), TextDelta("say"), Finish("stop")]

    def test_reasoning_content_wins_when_both_are_sent(self) -> None:
        got = parse(sse(delta(reasoning_content="a", reasoning="a")))
        assert got.events == [ReasoningDelta("a"), Finish("stop")]

    def test_reasoning_of_the_wrong_type_falls_back_to_the_other_field(self) -> None:
        got = parse(sse(delta(reasoning_content=5, reasoning="r"), delta(content="x")))
        assert got.events == [ReasoningDelta("r"), TextDelta("x"), Finish("stop")]

    def test_an_empty_usage_object_falls_back_to_x_groq(self) -> None:
        chunk = {**delta("stop"), "usage": {},
                 "x_groq": {"usage": {"prompt_tokens": 7, "completion_tokens": 8}}}
        assert parse(sse(chunk)).usage == Usage(7, 8)

    def test_a_refusal_is_answer_text(self) -> None:
        got = parse(sse(delta(content=None, refusal="I can't help with that.")))
        assert got.text == "I can't help with that."

    def test_only_choice_zero_counts(self) -> None:
        got = parse(sse(delta(content="zero"), delta(index=1, content="one")))
        assert got.text == "zero"

    def test_usage_on_the_finish_chunk_and_in_x_groq(self) -> None:
        finish_chunk = {**delta("stop"), "usage": {"prompt_tokens": 3, "completion_tokens": 4}}
        assert parse(sse(finish_chunk)).usage == Usage(3, 4)
        groq = {**delta("stop"), "x_groq": {"usage": {"prompt_tokens": 5, "completion_tokens": 6}}}
        assert parse(sse(groq)).usage == Usage(5, 6)

    def test_a_repeated_usage_is_sent_once(self) -> None:
        usage = {"usage": {"prompt_tokens": 1, "completion_tokens": 2}, "choices": []}
        assert parse(sse(usage, usage)).events == [Usage(1, 2), Finish("stop")]

    def test_fields_of_the_wrong_type_are_ignored(self) -> None:
        junk = {"choices": [{"delta": "x"}, 7, {"delta": {"content": 5, "tool_calls": "no"}}]}
        assert parse(sse(junk, {"usage": [], "x_groq": 1})).events == [Finish("stop")]

    @pytest.mark.parametrize("data", [b"data: [1]\n\n", b"data: {nope\n\n"])
    def test_a_chunk_that_is_not_a_json_object_is_a_protocol_error(self, data: bytes) -> None:
        got = parse(data)
        assert got.error_type is ProtocolError


class TestToolCalls:
    def test_fragments_merge_by_index(self) -> None:
        first = {"index": 0, "id": "c1", "function": {"name": "f", "arguments": ""}}
        second = {"index": 1, "id": "c2", "function": {"name": "g", "arguments": '{"a"'}}
        more = {"index": 1, "function": {"arguments": ":1}"}}
        got = parse(sse(delta(tool_calls=[first, second]), delta("tool_calls", tool_calls=[more])))
        assert got.finish == Finish(
            "tool_calls", (ToolCall(0, "c1", "f", "{}"), ToolCall(1, "c2", "g", '{"a":1}'))
        )

    def test_fragments_without_an_index_follow_their_id(self) -> None:
        # Gemini's OpenAI-compatible endpoint has been seen to leave out the index.
        calls = [
            {"id": "a", "function": {"name": "f", "arguments": '{"x"'}},
            {"function": {"arguments": ":1}"}},
            {"id": "b", "function": {"name": "g", "arguments": "{}"}},
            {"id": "a", "function": {"arguments": ""}},
        ]
        got = parse(sse(*(delta(tool_calls=[c]) for c in calls)))
        assert got.finish is not None
        assert got.finish.tool_calls == (
            ToolCall(0, "a", "f", '{"x":1}'),
            ToolCall(1, "b", "g", "{}"),
        )

    def test_a_first_fragment_without_index_or_id_starts_call_zero(self) -> None:
        got = parse(sse(delta(tool_calls=[{"function": {"name": "f"}}])))
        assert got.finish == Finish("stop", (ToolCall(0, None, "f", "{}"),))


class TestErrors:
    def test_openai_error_chunk(self) -> None:
        # The shape reported in sashabaranov/go-openai#396: a plain error chunk, then [DONE].
        error = {"message": "The server had an error", "type": "server_error", "code": None}
        got = parse(sse(delta(content="par"), {"error": error}))
        assert got.events == [TextDelta("par")]
        assert got.error == (UpstreamError, "The server had an error", 500, True)

    def test_rate_limit_by_type(self) -> None:
        got = parse(sse({"error": {"message": "slow down", "type": "rate_limit_exceeded"}}))
        assert got.error_type is RateLimitError

    def test_named_error_event_that_is_not_json(self) -> None:
        got = parse(b"event: error\ndata: upstream   exploded\n\n")
        assert got.error == (UpstreamError, "upstream exploded", None, True)

    def test_named_error_event_with_an_empty_body(self) -> None:
        got = parse(b"event: error\ndata:\n\n")
        assert got.error == (UpstreamError, "the upstream reported an error mid-stream", None, True)

    def test_named_error_event_with_a_bare_object(self) -> None:
        got = parse(b'event: error\ndata: {"message": "bad", "status_code": 422}\n\n')
        assert got.error == (BadRequestError, "bad", 422, False)


class TestRequest:
    config = ProviderConfig(
        name="gpu1", type="openai", base_url="http://10.0.0.5:8000/v1/", api_key="sk-test"
    )
    request = ChatRequest(
        "qwen3-8b",
        [Message("system", "be brief"), Message("user", "hi"), Message("tool", "42")],
        {"temperature": 0.2, "max_tokens": 10},
    )

    def test_chat_completions_request(self) -> None:
        req = openai.build_request(self.config, self.request)
        assert (req.method, req.url) == ("POST", "http://10.0.0.5:8000/v1/chat/completions")
        assert req.headers == {"Accept": "text/event-stream", "Authorization": "Bearer sk-test"}
        assert req.json == {
            "model": "qwen3-8b",
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "hi"},
                {"role": "tool", "content": "42"},
            ],
            "temperature": 0.2,
            "max_tokens": 10,
            "stream": True,
            "stream_options": {"include_usage": True},
        }

    def test_defaults_and_opting_out_of_usage(self) -> None:
        config = ProviderConfig(name="o", type="openai", options={"include_usage": False})
        req = openai.build_request(config, ChatRequest("m", [Message("user", "hi")]))
        assert req.url == "https://api.openai.com/v1/chat/completions"
        assert "Authorization" not in req.headers
        assert "stream_options" not in req.json

    def test_params_cannot_turn_streaming_off(self) -> None:
        req = openai.build_request(self.config, ChatRequest("m", [], {"stream": False}))
        assert req.json["stream"] is True

    def test_models(self) -> None:
        req = openai.models_request(self.config)
        assert (req.method, req.url) == ("GET", "http://10.0.0.5:8000/v1/models")
        assert req.headers["Authorization"] == "Bearer sk-test"
        body = b'{"object": "list", "data": [{"id": "gpt-4o"}, {"id": 3}, "x", {"id": "o1"}]}'
        assert openai.parse_models(body) == ["gpt-4o", "o1"]
        with pytest.raises(ProtocolError):
            openai.parse_models(b"<html>")
