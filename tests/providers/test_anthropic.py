"""The Anthropic Messages protocol: the request we send, and what real streams parse to."""

from __future__ import annotations

import json
from collections.abc import Mapping

import pytest
from recorded import Expect, Run, Text, bodies_for, feed, run

from providers import anthropic
from providers.base import ChatRequest, Message, ProviderConfig
from providers.errors import (
    AuthError,
    BadRequestError,
    ProtocolError,
    RateLimitError,
    UpstreamError,
)
from providers.events import Finish, ReasoningDelta, TextDelta, ToolCall, Usage

RECORDED = {
    "anthropic_messages_text.sse": Expect(text="- Captain\n- Scoop", usage=Usage(17, 10)),
    "anthropic_messages_thinking.sse": Expect(
        text=Text(
            "1. **Pouch** - references their iconic bill pouch\n2. **Pelé**", '"pelican"', 89
        ),
        reasoning=Text("The user wants two names for a pet pelican", "catchy names:", 289),
        usage=Usage(46, 133),
    ),
    "anthropic_messages_tool_use.sse": Expect(
        text=Text("Certainly! I can help you with that information.", "data for you.", 175),
        usage=Usage(506, 153),
        finish="tool_calls",
        tool_calls=[
            ToolCall(
                1,
                "toolu_014x5X91kx3fvdhpLvwXZWE2",
                "get_weather",
                '{"location": "San Francisco, CA", "unit": "celsius"}',
            ),
            ToolCall(
                2,
                "toolu_0121kXsENLvoDZ72LCuAnCCz",
                "get_time",
                '{"timezone": "America/Los_Angeles"}',
            ),
        ],
    ),
    "anthropic_messages_error_overloaded_docs.sse": Expect(
        finish=None, error=(UpstreamError, 529, "Overloaded")
    ),
}


def test_every_anthropic_recording_has_an_expectation() -> None:
    assert sorted(RECORDED) == bodies_for(anthropic.parser)


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_recorded_stream(name: str) -> None:
    RECORDED[name].check(run(name))


def test_overloaded_is_retryable() -> None:
    error = run("anthropic_messages_error_overloaded_docs.sse").error
    assert error is not None
    assert error[3] is True


def test_thinking_comes_before_the_answer_and_empty_deltas_are_dropped() -> None:
    events = run("anthropic_messages_thinking.sse").events
    kinds = [type(e) for e in events if isinstance(e, TextDelta | ReasoningDelta)]
    assert kinds == [ReasoningDelta] * 5 + [TextDelta] * 2


def sse(*events: Mapping[str, object]) -> bytes:
    return b"".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events)


START = {"type": "message_start", "message": {"usage": {"input_tokens": 5, "output_tokens": 1}}}
STOP = {"type": "message_stop"}


def block(index: int, **content_block: object) -> dict[str, object]:
    return {"type": "content_block_start", "index": index, "content_block": content_block}


def delta(index: int, **fields: object) -> dict[str, object]:
    return {"type": "content_block_delta", "index": index, "delta": fields}


def message_delta(reason: str | None, **usage: int) -> dict[str, object]:
    return {"type": "message_delta", "delta": {"stop_reason": reason}, "usage": usage}


def parse(data: bytes) -> Run:
    return feed(anthropic.parser(), [data])


class TestEvents:
    def test_text_in_a_block_start_is_kept(self) -> None:
        got = parse(
            sse(
                block(0, type="text", text="Hi"),
                delta(0, type="text_delta", text="!"),
                message_delta("end_turn"),
            )
        )
        assert got.events == [TextDelta("Hi"), TextDelta("!"), Finish("stop")]

    def test_thinking_in_a_block_start_is_kept(self) -> None:
        got = parse(sse(block(0, type="thinking", thinking="hmm"), message_delta("end_turn")))
        assert got.events == [ReasoningDelta("hmm"), Finish("stop")]

    def test_ping_signature_citations_and_unknown_events_are_ignored(self) -> None:
        got = parse(
            sse(
                {"type": "ping"},
                block(0, type="thinking", thinking=""),
                delta(0, type="signature_delta", signature="sig"),
                delta(0, type="citations_delta", citation={}),
                {"type": "future_event", "x": 1},
                STOP,
            )
        )
        assert got.events == [Finish("stop")]

    def test_server_tool_input_is_not_a_tool_call(self) -> None:
        got = parse(
            sse(
                block(0, type="server_tool_use", id="srv", name="web_search"),
                delta(0, type="input_json_delta", partial_json='{"q": 1}'),
                delta(9, type="input_json_delta", partial_json="{}"),
                {"type": "content_block_delta", "delta": {"type": "text_delta", "text": "ok"}},
                block(1, type="tool_use"),
                STOP,
            )
        )
        assert got.events == [TextDelta("ok"), Finish("stop", (ToolCall(1, None, "", "{}"),))]

    def test_a_tool_call_without_arguments_has_empty_object_arguments(self) -> None:
        got = parse(
            sse(
                block(0, type="tool_use", id="t", name="now", input={}),
                delta(0, type="input_json_delta", partial_json=""),
                message_delta("tool_use"),
            )
        )
        assert got.finish == Finish("tool_calls", (ToolCall(0, "t", "now", "{}"),))

    @pytest.mark.parametrize(
        ("reason", "ours"),
        [
            ("end_turn", "stop"),
            ("stop_sequence", "stop"),
            ("max_tokens", "length"),
            ("refusal", "content_filter"),
            ("pause_turn", "pause_turn"),
        ],
    )
    def test_stop_reasons_in_openai_words(self, reason: str, ours: str) -> None:
        assert parse(sse(message_delta(reason))).finish == Finish(ours)

    def test_data_after_message_stop_is_ignored(self) -> None:
        assert parse(sse(STOP) + b"data: junk\n\n").events == [Finish("stop")]


class TestUsage:
    def test_running_totals_with_cached_input_added(self) -> None:
        start = {
            "type": "message_start",
            "message": {
                "usage": {
                    "input_tokens": 5,
                    "cache_creation_input_tokens": 100,
                    "cache_read_input_tokens": 20,
                    "output_tokens": 1,
                }
            },
        }
        got = parse(sse(start, message_delta("end_turn", output_tokens=9), STOP))
        assert got.events == [Usage(125, 1), Usage(125, 9), Finish("stop")]

    def test_message_delta_may_restate_input(self) -> None:
        got = parse(sse(START, message_delta("end_turn", input_tokens=7, output_tokens=2)))
        assert [e for e in got.events if isinstance(e, Usage)] == [Usage(5, 1), Usage(7, 2)]

    def test_a_message_start_without_usage_reports_nothing(self) -> None:
        got = parse(sse({"type": "message_start", "message": {}}, STOP))
        assert got.events == [Finish("stop")]


class TestErrorsAndTruncation:
    @pytest.mark.parametrize(
        ("kind", "error"),
        [
            ("rate_limit_error", RateLimitError),
            ("authentication_error", AuthError),
            ("invalid_request_error", BadRequestError),
            ("api_error", UpstreamError),
        ],
    )
    def test_error_event_types(self, kind: str, error: type[Exception]) -> None:
        # The Vertex variant seen in anthropic-sdk-typescript#346: extra "details", padding.
        error_object = '{"details":null,"type":"%TYPE%","message":"m"}'.replace("%TYPE%", kind)
        data = '{"type":"error","error":' + error_object + " }"
        got = parse(b"event: error\ndata: " + data.encode() + b"\n\n")
        assert got.error_type is error

    def test_error_named_only_by_the_event(self) -> None:
        got = parse(b'event: error\ndata: {"error": {"type": "overloaded_error"}}\n\n')
        assert got.error is not None
        assert got.error[:3] == (UpstreamError, "the upstream reported an error mid-stream", 529)

    def test_error_after_text_keeps_the_text(self) -> None:
        got = parse(
            sse(
                START,
                delta(0, type="text_delta", text="Hel"),
                {"type": "error", "error": {"type": "overloaded_error", "message": "O"}},
            )
        )
        assert got.text == "Hel"
        assert got.error_status == 529

    def test_a_body_that_stops_before_the_stop_reason_is_truncated(self) -> None:
        got = parse(sse(START, delta(0, type="text_delta", text="Hel")))
        assert got.text == "Hel"
        assert got.error_type is ProtocolError

    def test_stop_reason_without_message_stop_is_complete(self) -> None:
        assert parse(sse(message_delta("max_tokens"))).finish == Finish("length")

    def test_events_that_are_not_json_objects(self) -> None:
        got = parse(b"event: ping\ndata: [1]\n\n")
        assert got.error_type is ProtocolError


class TestRequest:
    def test_messages_request(self) -> None:
        config = ProviderConfig(name="anthropic", type="anthropic", api_key="sk-ant")
        request = ChatRequest(
            "claude-sonnet-4-5",
            [
                Message("system", "be brief"),
                Message("user", "hi"),
                Message("assistant", "yo"),
                Message("system", "in French"),
                Message("user", "again"),
            ],
            {"temperature": 0.5, "stop": "END", "top_k": 3, "thinking": {"type": "enabled"}},
        )
        req = anthropic.build_request(config, request)
        assert (req.method, req.url) == ("POST", "https://api.anthropic.com/v1/messages")
        assert req.headers == {
            "x-api-key": "sk-ant",
            "anthropic-version": "2023-06-01",
            "Accept": "text/event-stream",
        }
        assert req.json == {
            "model": "claude-sonnet-4-5",
            "max_tokens": 4096,
            "system": "be brief\n\nin French",
            "messages": [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "yo"},
                {"role": "user", "content": "again"},
            ],
            "temperature": 0.5,
            "stop_sequences": ["END"],
            "top_k": 3,
            "thinking": {"type": "enabled"},
            "stream": True,
        }

    def test_max_tokens_from_params_or_options_and_base_url_with_v1(self) -> None:
        config = ProviderConfig(
            name="a", type="anthropic", base_url="http://proxy/v1/", options={"max_tokens": 1000}
        )
        plain = anthropic.build_request(config, ChatRequest("m", [Message("user", "x")]))
        assert plain.url == "http://proxy/v1/messages"
        assert plain.json["max_tokens"] == 1000
        assert "x-api-key" not in plain.headers
        assert "system" not in plain.json
        given = anthropic.build_request(
            config, ChatRequest("m", [], {"max_tokens": 5, "stop": ["a"]})
        )
        assert given.json["max_tokens"] == 5
        assert given.json["stop_sequences"] == ["a"]

    def test_other_roles_are_a_bad_request(self) -> None:
        config = ProviderConfig(name="a", type="anthropic")
        with pytest.raises(BadRequestError, match="'tool'"):
            anthropic.build_request(config, ChatRequest("m", [Message("tool", "42")]))

    def test_models(self) -> None:
        config = ProviderConfig(name="a", type="anthropic", api_key="k")
        req = anthropic.models_request(config)
        assert req.url == "https://api.anthropic.com/v1/models?limit=1000"
        assert req.headers["x-api-key"] == "k"
        body = b'{"data": [{"type": "model", "id": "claude-sonnet-4-5"}], "has_more": false}'
        assert anthropic.parse_models(body) == ["claude-sonnet-4-5"]
