"""The Gemini protocol: the request we send, and what real streams parse to, in both
framings (``alt=sse`` and the bare JSON array)."""

from __future__ import annotations

import json
from collections.abc import Mapping

import pytest
from recorded import Expect, Run, Text, bodies_for, body, feed, pieces, run

from providers import gemini
from providers.base import ChatRequest, Message, ProviderConfig
from providers.errors import BadRequestError, ProtocolError, RateLimitError, UpstreamError
from providers.events import Finish, ReasoningDelta, TextDelta, ToolCall, Usage

RECORDED = {
    # usageMetadata is a running total: promptTokenCount goes 15, 15, 13; the last one holds.
    "gemini_stream_sse_text.sse": Expect(
        text="The capital of France is Paris.\n", usage=Usage(13, 8)
    ),
    "gemini_stream_sse_thinking.sse": Expect(
        text=Text("This is a great question! Safely crossing the street", "not see you.", 1938),
        reasoning=Text("**Clarifying User Goals**\n\n", "circumstances or locations.\n\n\n", 1575),
        usage=Usage(34, 1256),
    ),
    # Output counts thinking too: 10 candidate tokens + 202 thought tokens.
    "gemini_stream_sse_function_call.sse": Expect(
        usage=Usage(29, 212),
        finish="tool_calls",
        tool_calls=[ToolCall(0, None, "get_country", "{}")],
    ),
    "gemini_stream_sse_error_midstream_transcribed.txt": Expect(
        text="Okay",
        usage=Usage(2301, 1),
        finish=None,
        error=(UpstreamError, 503, "The model is overloaded. Please try again later."),
    ),
    "gemini_stream_array_thinking.json": Expect(
        text="Scoop",
        reasoning=Text(
            "**Considering the Constraint**\n\n", "This constraint is paramount.\n\n\n", 275
        ),
        usage=Usage(11, 293),
    ),
    "gemini_stream_array_function_call.json": Expect(
        usage=Usage(105, 13),
        finish="tool_calls",
        tool_calls=[ToolCall(0, None, "pelican_name_generator", "{}")],
    ),
}


def test_every_gemini_recording_has_an_expectation() -> None:
    assert sorted(RECORDED) == sorted(bodies_for(gemini.parser) + bodies_for(gemini.array_parser))


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_recorded_stream(name: str) -> None:
    RECORDED[name].check(run(name))


def test_the_bare_error_is_found_with_crlf_line_endings_too() -> None:
    # The transcript has LF; the wire was probably CRLF, as every other Gemini body.
    data = body("gemini_stream_sse_error_midstream_transcribed.txt").replace(b"\n", b"\r\n")
    for split in ("whole", "bytes-1", "random-1"):
        got = feed(gemini.parser(), pieces(data, split))
        assert got.text == "Okay"
        assert got.error_status == 503


def test_thought_parts_come_before_the_answer() -> None:
    events = run("gemini_stream_sse_thinking.sse").events
    kinds = [type(e) for e in events if isinstance(e, TextDelta | ReasoningDelta)]
    assert kinds == [ReasoningDelta] * 4 + [TextDelta] * 19


def response(
    *parts: dict[str, object], finish: str | None = None, **extra: object
) -> dict[str, object]:
    candidate: dict[str, object] = {"content": {"role": "model", "parts": list(parts)}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    return {"candidates": [candidate], **extra}


def sse(*responses: Mapping[str, object]) -> bytes:
    return b"".join(b"data: " + json.dumps(r).encode() + b"\r\n\r\n" for r in responses)


def array(*responses: Mapping[str, object]) -> bytes:
    return ("[" + "\n,\r\n".join(json.dumps(r, indent=2) for r in responses) + "\n]").encode()


def parse(data: bytes) -> Run:
    return feed(gemini.parser(), [data])


def parse_array(data: bytes) -> Run:
    return feed(gemini.array_parser(), [data])


class TestResponses:
    @pytest.mark.parametrize(
        ("raw", "ours"),
        [
            ("STOP", "stop"),
            ("MAX_TOKENS", "length"),
            ("SAFETY", "content_filter"),
            ("RECITATION", "content_filter"),
            ("MALFORMED_FUNCTION_CALL", "malformed_function_call"),
        ],
    )
    def test_finish_reasons_in_openai_words(self, raw: str, ours: str) -> None:
        assert parse(sse(response({"text": "a"}, finish=raw))).finish == Finish(ours)

    def test_a_blocked_prompt_is_a_content_filter_finish(self) -> None:
        blocked = {
            "promptFeedback": {"blockReason": "SAFETY"},
            "usageMetadata": {"promptTokenCount": 4},
        }
        assert parse(sse(blocked)).events == [Usage(4, None), Finish("content_filter")]

    def test_only_the_first_candidate_counts(self) -> None:
        second = {"content": {"parts": [{"text": "no"}]}, "index": 1}
        first = {"content": {"parts": [{"text": "yes"}]}}
        got = parse(
            sse(
                {"candidates": [second, first]},
                response(finish="STOP"),
            )
        )
        assert got.text == "yes"

    def test_function_calls_keep_their_order_and_ids(self) -> None:
        got = parse(
            sse(
                response({"functionCall": {"name": "a", "args": {"x": 1}, "id": "c1"}}),
                response({"functionCall": {"name": "b"}}, {"text": ""}, finish="STOP"),
            )
        )
        assert got.finish == Finish(
            "tool_calls", (ToolCall(0, "c1", "a", '{"x":1}'), ToolCall(1, None, "b", "{}"))
        )

    def test_usage_without_output_counts(self) -> None:
        got = parse(
            sse(response({"text": "a"}, finish="STOP", usageMetadata={"promptTokenCount": 3}))
        )
        assert got.usage == Usage(3, None)

    def test_fields_of_the_wrong_type_are_ignored(self) -> None:
        junk = {
            "candidates": [{"content": {"parts": [{"text": 1}, "x"]}, "finishReason": 5}, 3],
            "usageMetadata": [],
            "promptFeedback": "no",
        }
        got = parse(sse(junk, response(finish="STOP")))
        assert got.events == [Finish("stop")]

    def test_a_body_without_finish_reason_is_truncated(self) -> None:
        got = parse(sse(response({"text": "a"})))
        assert got.text == "a"
        assert got.error_type is ProtocolError


class TestErrors:
    def test_error_in_a_data_event(self) -> None:
        error = {"error": {"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED"}}
        got = parse(sse(response({"text": "a"}), error))
        assert got.text == "a"
        assert got.error_type is RateLimitError

    def test_a_one_line_bare_error(self) -> None:
        got = parse(b'{"error": {"code": 500, "message": "internal"}}\n')
        assert got.error == (UpstreamError, "internal", 500, True)

    def test_a_bare_error_inside_a_list(self) -> None:
        got = parse(b'[{"error": {"code": 400, "message": "bad"}}]\n')
        assert got.error_type is BadRequestError

    def test_a_bare_error_without_a_final_newline(self) -> None:
        got = parse(sse(response({"text": "a"}, finish="STOP")) + b'{"error": {"code": 503}}')
        assert got.text == "a"
        assert got.error_status == 503

    def test_stray_text_that_closes_without_being_json_is_dropped(self) -> None:
        got = parse(b"{oops}\n{\n" + b'  "error": {"code": 429}\n}\n')
        assert got.error_type is RateLimitError

    def test_stray_text_that_is_not_an_error_is_ignored(self) -> None:
        got = parse(b'{"note": 1}\n{\n' + sse(response({"text": "a"}, finish="STOP")) + b"}\n")
        assert got.events == [TextDelta("a"), Finish("stop")]

    def test_stray_text_has_a_size_bound(self) -> None:
        noise = b"x\n" * 20_000
        got = parse(noise + b'{"error": {"code": 500}}\n' + sse(response(finish="STOP")))
        assert got.events == []
        assert got.error is not None
        got = parse(
            b"{\n"
            + b'"pad": "'
            + b"x" * 20_000
            + b'",\n'
            + b'"error": {"code": 500}}\n'
            + sse(response(finish="STOP"))
        )
        assert got.events == [Finish("stop")]  # too big to be Gemini's error: dropped


class TestArrayFraming:
    def test_elements_split_on_commas_between_objects(self) -> None:
        got = parse_array(
            array(response({"text": "a, [b] {c}"}), response({"text": '"d\\"'}, finish="STOP"))
        )
        assert got.events == [TextDelta("a, [b] {c}"), TextDelta('"d\\"'), Finish("stop")]

    def test_a_closed_array_without_finish_reason_is_complete(self) -> None:
        assert parse_array(array(response({"text": "a"}))).events == [
            TextDelta("a"),
            Finish("stop"),
        ]

    def test_an_open_array_without_finish_reason_is_truncated(self) -> None:
        got = parse_array(array(response({"text": "a"}))[:-1])
        assert got.text == "a"
        assert got.error_type is ProtocolError

    def test_an_error_element(self) -> None:
        got = parse_array(array({"error": {"code": 503, "status": "UNAVAILABLE", "message": "m"}}))
        assert got.error == (UpstreamError, "m", 503, True)

    def test_a_bare_error_object_instead_of_an_array(self) -> None:
        got = parse_array(b'{"error": {"code": 401, "message": "key"}}')
        assert got.error_status == 401


class TestRequest:
    def test_stream_generate_content_request(self) -> None:
        config = ProviderConfig(name="gemini", type="gemini", api_key="AIza-test")
        request = ChatRequest(
            "gemini-2.5-flash",
            [
                Message("system", "be brief"),
                Message("user", "hi"),
                Message("assistant", "yo"),
                Message("user", "again"),
            ],
            {
                "temperature": 0.1,
                "max_tokens": 50,
                "top_p": 0.9,
                "stop": "END",
                "safetySettings": [],
                "generationConfig": {"thinkingConfig": {"thinkingBudget": 0}},
            },
        )
        req = gemini.build_request(config, request)
        assert req.method == "POST"
        assert req.url == (
            "https://generativelanguage.googleapis.com/v1beta/models/"
            "gemini-2.5-flash:streamGenerateContent?alt=sse"
        )
        assert req.headers == {"x-goog-api-key": "AIza-test", "Accept": "text/event-stream"}
        assert req.json == {
            "contents": [
                {"role": "user", "parts": [{"text": "hi"}]},
                {"role": "model", "parts": [{"text": "yo"}]},
                {"role": "user", "parts": [{"text": "again"}]},
            ],
            "systemInstruction": {"parts": [{"text": "be brief"}]},
            "safetySettings": [],
            "generationConfig": {
                "thinkingConfig": {"thinkingBudget": 0},
                "temperature": 0.1,
                "maxOutputTokens": 50,
                "topP": 0.9,
                "stopSequences": ["END"],
            },
        }

    def test_plain_request_and_model_paths(self) -> None:
        config = ProviderConfig(name="g", type="gemini", base_url="http://proxy/v1beta/")
        req = gemini.build_request(config, ChatRequest("models/gemini-pro", [Message("user", "x")]))
        assert req.url == "http://proxy/v1beta/models/gemini-pro:streamGenerateContent?alt=sse"
        assert req.json == {"contents": [{"role": "user", "parts": [{"text": "x"}]}]}
        assert "x-goog-api-key" not in req.headers
        tuned = gemini.build_request(config, ChatRequest("tunedModels/mine", []))
        assert "/v1beta/tunedModels/mine:streamGenerateContent" in tuned.url

    def test_other_roles_are_a_bad_request(self) -> None:
        config = ProviderConfig(name="g", type="gemini")
        with pytest.raises(BadRequestError, match="'developer'"):
            gemini.build_request(config, ChatRequest("m", [Message("developer", "x")]))

    def test_models(self) -> None:
        config = ProviderConfig(name="g", type="gemini", api_key="k")
        req = gemini.models_request(config)
        assert req.url == "https://generativelanguage.googleapis.com/v1beta/models?pageSize=1000"
        assert req.headers["x-goog-api-key"] == "k"
        listing = {
            "models": [
                {
                    "name": "models/gemini-2.5-flash",
                    "supportedGenerationMethods": ["generateContent", "countTokens"],
                },
                {
                    "name": "models/text-embedding-004",
                    "supportedGenerationMethods": ["embedContent"],
                },
                {"name": "models/aqa", "supportedGenerationMethods": "streamGenerateContent"},
                {
                    "name": "models/gemini-live",
                    "supportedGenerationMethods": ["streamGenerateContent"],
                },
                {"supportedGenerationMethods": ["generateContent"]},
            ]
        }
        assert gemini.parse_models(json.dumps(listing).encode()) == [
            "gemini-2.5-flash",
            "gemini-live",
        ]
