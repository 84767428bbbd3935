"""The frame codec: what a provider yields crosses the WebSocket and comes back the same."""

from __future__ import annotations

import pytest

from providers import ChatRequest, ImagePart, Message
from providers.agent.frames import (
    FROM_AGENT,
    FROM_SERVER,
    FrameError,
    decode,
    decode_error,
    decode_event,
    decode_request,
    dumps,
    encode_error,
    encode_event,
    encode_request,
    loads,
)
from providers.errors import (
    AuthError,
    BadRequestError,
    ProviderError,
    RateLimitError,
    TransportError,
    UpstreamError,
)
from providers.events import Finish, ReasoningDelta, TextDelta, ToolCall, Usage

EVENTS = [
    TextDelta("héllo 👋"), ReasoningDelta("hmm"), Usage(7, None), Usage(None, None),
    Finish("stop"), Finish("tool_calls", (ToolCall(0, "call_1", "get", '{"a": 1}'),
                                         ToolCall(1, None, "put", "{}"))),
]


@pytest.mark.parametrize("event", EVENTS)
def test_every_event_comes_back_equal_through_json(event: object) -> None:
    assert decode_event(loads(dumps({"type": "x", "e": encode_event(event)}))["e"]) == event


def test_a_request_comes_back_equal_with_its_images_and_params() -> None:
    request = ChatRequest("m1", (
        Message("system", "be brief"),
        Message("user", "what is this?", (ImagePart("data:image/png;base64,AAAA", "low"),
                                          ImagePart("https://x.test/a.png"))),
    ), {"temperature": 0.2, "max_tokens": 10})
    wire = loads(dumps({"type": "job", "request": encode_request(request)}))
    assert decode_request("m1", wire["request"]) == request


@pytest.mark.parametrize("error", [
    AuthError("no", status=401), BadRequestError("bad", status=400),
    UpstreamError("boom", status=503), TransportError("refused"),
    RateLimitError("slow down", retry_after=2.5),
])
def test_an_agents_error_keeps_its_type_retryability_and_status(error: ProviderError) -> None:
    back = decode_error(loads(dumps({"type": "error", "e": encode_error(error)}))["e"], "box1")
    assert type(back) is type(error)
    assert back.retryable == error.retryable
    assert back.status == error.status
    assert back.message == f"agent box1: {error.message}"
    assert getattr(back, "retry_after", None) == getattr(error, "retry_after", None)


def test_an_unreadable_error_is_an_upstream_error_naming_the_agent() -> None:
    back = decode_error("?", "box1")
    assert isinstance(back, UpstreamError)
    assert "box1" in back.message


@pytest.mark.parametrize("text", ["not json", "[1]", '{"id": 1}', '{"type": 3}'])
def test_a_frame_that_is_not_an_object_with_a_type_is_refused(text: str) -> None:
    with pytest.raises(FrameError):
        loads(text)


@pytest.mark.parametrize("data", [{"what": 1}, {"usage": 3}, {"finish": "stop",
                                                            "tool_calls": [[1]]}, "text"])
def test_an_event_of_the_wrong_shape_is_refused(data: object) -> None:
    with pytest.raises(FrameError):
        decode_event(data)


@pytest.mark.parametrize("data", [None, {"messages": [{"role": "user"}]},
                                  {"messages": [], "params": []}])
def test_a_request_of_the_wrong_shape_is_refused(data: object) -> None:
    with pytest.raises(FrameError):
        decode_request("m1", data)


def test_decode_gives_an_events_frames_events_and_a_jobs_request_decoded() -> None:
    events = decode(dumps({"type": "events", "id": "3", "events": [
        encode_event(e) for e in EVENTS]}), *FROM_AGENT)
    assert events == {"type": "events", "id": "3", "events": EVENTS}
    request = ChatRequest("m1", (Message("user", "hi"),), {"temperature": 0.5})
    job = decode(dumps({"type": "job", "id": "3", "model": "m1", "window": 8,
                        "request": encode_request(request)}), *FROM_SERVER)
    assert job["request"] == request


@pytest.mark.parametrize(("frame", "kinds", "reason"), [
    ({"type": "job", "id": "1"}, FROM_AGENT,
     "a 'job' frame where 'events' or 'end' or 'error' or 'ping' was expected"),
    ({"type": "end", "id": 1}, FROM_AGENT, "a 'end' frame needs 'id' (str)"),
    ({"type": "credit", "id": "1", "events": True}, FROM_SERVER,
     "a 'credit' frame needs 'events' (int)"),
    ({"type": "welcome", "heartbeat": 0}, ("welcome",),
     "a 'welcome' frame needs a positive 'heartbeat' (seconds)"),
    ({"type": "announce", "models": ["m1", 2], "capacity": 1}, ("announce",),
     "an announce needs model names and a capacity from 1 to 1024"),
    ({"type": "announce", "models": ["m1"], "capacity": 1025}, ("announce",),
     "an announce needs model names and a capacity from 1 to 1024"),
    ({"type": "events", "id": "1", "events": [{"finish": "stop", "tool_calls": [[0]]}]},
     FROM_AGENT, "a finish event's tool_calls must be lists of [index, id or null, name, "
                 "arguments]"),
    ({"type": "job", "id": "1", "model": "m1", "window": 4, "request": {
        "messages": [{"role": "user", "content": "x", "images": [["u", 3]]}]}}, FROM_SERVER,
     "a job's messages must be objects with a string role and content, and images as "
     "[url, detail or null]"),
])
def test_decode_refuses_a_frame_that_is_unexpected_or_malformed_saying_why(
    frame: dict[str, object], kinds: tuple[str, ...], reason: str,
) -> None:
    with pytest.raises(FrameError) as refused:
        decode(dumps(frame), *kinds)
    assert str(refused.value) == reason
