"""Ollama's native protocol: the request we send, and what real NDJSON streams parse to."""

from __future__ import annotations

import json

import pytest
from recorded import Expect, Run, Text, bodies_for, feed, run

from providers import ollama
from providers.base import ChatRequest, Message, ProviderConfig
from providers.errors import BadRequestError, ProtocolError, UpstreamError
from providers.events import Finish, ReasoningDelta, TextDelta, ToolCall, Usage

RECORDED = {
    "ollama_chat.ndjson": Expect(
        text=Text(
            "Why did the OpenTelemetry agent go to therapy?\n\n",
            "I hope it brought a smile to your face!)",
            212,
        ),
        usage=Usage(17, 50),
    ),
    "ollama_generate.ndjson": Expect(
        text=Text(
            "A joke about OpenTelemetry! Here's one:\n\n", "early stages of development!)", 291
        ),
        usage=Usage(17, 71),
    ),
    "ollama_generate_error_midstream_docs.ndjson": Expect(
        text=" Yes.Ican",
        finish=None,
        error=(UpstreamError, None, "an error was encountered while running the model"),
    ),
}


def test_every_ollama_recording_has_an_expectation() -> None:
    assert sorted(RECORDED) == bodies_for(ollama.parser)


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_recorded_stream(name: str) -> None:
    RECORDED[name].check(run(name))


def lines(*objects: dict[str, object], end: bytes = b"\n") -> bytes:
    return b"".join(json.dumps(o).encode() + end for o in objects)


def chat(content: str = "", **message: object) -> dict[str, object]:
    return {
        "model": "m",
        "message": {"role": "assistant", "content": content, **message},
        "done": False,
    }


DONE = {
    "model": "m",
    "message": {"role": "assistant", "content": ""},
    "done": True,
    "done_reason": "stop",
    "prompt_eval_count": 3,
    "eval_count": 2,
}


def parse(data: bytes) -> Run:
    return feed(ollama.parser(), [data])


class TestLines:
    def test_thinking_field_is_reasoning(self) -> None:
        got = parse(lines(chat(thinking="hmm"), chat("Hi"), DONE))
        assert got.events == [ReasoningDelta("hmm"), TextDelta("Hi"), Usage(3, 2), Finish("stop")]

    def test_generate_thinking_is_top_level(self) -> None:
        got = parse(
            lines({"response": "", "thinking": "t", "done": False}, {"response": "a", "done": True})
        )
        assert got.events == [ReasoningDelta("t"), TextDelta("a"), Finish("stop")]

    def test_inline_think_tags_from_older_versions(self) -> None:
        got = parse(
            lines(chat("<think>"), chat("plan"), chat("</think>\n\n"), chat("answer"), DONE)
        )
        assert (got.reasoning, got.text) == ("plan", "answer")

    def test_whole_tool_calls_in_order(self) -> None:
        call = {"function": {"name": "weather", "arguments": {"city": "Florence"}}}
        second = {"id": "c2", "function": {"name": "time", "arguments": '{"tz": "UTC"}'}}
        got = parse(lines(chat(tool_calls=[call]), chat(tool_calls=[second, "junk"]), DONE))
        assert got.finish == Finish(
            "tool_calls",
            (
                ToolCall(0, None, "weather", '{"city":"Florence"}'),
                ToolCall(1, "c2", "time", '{"tz": "UTC"}'),
            ),
        )

    def test_length_and_missing_done_reason(self) -> None:
        assert parse(lines({**DONE, "done_reason": "length"})).finish == Finish("length")
        assert parse(lines({"done": True})).events == [Finish("stop")]

    def test_crlf_blank_lines_and_a_last_line_without_newline(self) -> None:
        got = parse(lines(chat("a"), end=b"\r\n") + b"\n  \n" + json.dumps(DONE).encode())
        assert got.text == "a"
        assert got.finish == Finish("stop")

    def test_lines_after_done_are_ignored(self) -> None:
        assert parse(lines(DONE) + b"not json\n").finish == Finish("stop")


class TestErrorsAndTruncation:
    def test_error_line_keeps_the_text_before_it(self) -> None:
        got = parse(lines(chat("par"), {"error": "model crashed"}))
        assert got.text == "par"
        assert got.error == (UpstreamError, "model crashed", None, True)

    def test_error_object_from_a_proxy(self) -> None:
        got = parse(lines({"error": {"message": "busy", "code": 503}}))
        assert got.error == (UpstreamError, "busy", 503, True)

    @pytest.mark.parametrize("tail", [b"", b'{"model": "m", "mess'])
    def test_a_body_that_ends_before_done_is_truncated(self, tail: bytes) -> None:
        got = parse(lines(chat("a")) + tail)
        assert got.text == "a"
        assert got.error_type is ProtocolError

    def test_a_line_that_is_not_an_object(self) -> None:
        got = parse(b"[1, 2]\n")
        assert got.error_type is ProtocolError


class TestRequest:
    def test_chat_request(self) -> None:
        config = ProviderConfig(name="ollama", type="ollama")
        request = ChatRequest(
            "llama3.2",
            [Message("system", "be brief"), Message("user", "hi"), Message("tool", "42")],
            {
                "temperature": 0.3,
                "max_tokens": 64,
                "num_ctx": 8192,
                "think": True,
                "keep_alive": "5m",
            },
        )
        req = ollama.build_request(config, request)
        assert (req.method, req.url) == ("POST", "http://127.0.0.1:11434/api/chat")
        assert req.headers == {"Accept": "application/x-ndjson"}
        assert req.json == {
            "model": "llama3.2",
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "hi"},
                {"role": "tool", "content": "42"},
            ],
            "options": {"temperature": 0.3, "num_predict": 64, "num_ctx": 8192},
            "think": True,
            "keep_alive": "5m",
            "stream": True,
        }

    def test_base_url_key_and_no_options(self) -> None:
        config = ProviderConfig(
            name="o", type="ollama", base_url="http://box:11434/", api_key="proxy-key"
        )
        req = ollama.build_request(config, ChatRequest("m", [Message("user", "x")]))
        assert req.url == "http://box:11434/api/chat"
        assert "options" not in req.json
        assert req.headers["Authorization"] == "Bearer proxy-key"

    def test_other_roles_are_a_bad_request(self) -> None:
        config = ProviderConfig(name="o", type="ollama")
        with pytest.raises(BadRequestError, match="'developer'"):
            ollama.build_request(config, ChatRequest("m", [Message("developer", "x")]))

    def test_models(self) -> None:
        config = ProviderConfig(name="o", type="ollama")
        req = ollama.models_request(config)
        assert (req.method, req.url) == ("GET", "http://127.0.0.1:11434/api/tags")
        body = b'{"models": [{"name": "llama3.2:latest", "model": "llama3.2:latest"}, {}]}'
        assert ollama.parse_models(body) == ["llama3.2:latest"]
