"""Images in messages, on the wire: each protocol gets them in its own shape, and a model
that cannot take them fails alone, with a clear error, while its siblings answer."""

from __future__ import annotations

import base64
import json

import pytest

from ..conftest import Server, StartServer, read_events
from ..support.upstream import FakeUpstream, Script, Seen, openai_script, sse

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n not really a picture").decode()
DATA_URL = f"data:image/png;base64,{PNG}"
LINK = "https://example.com/cat.webp"
SSE = {"Accept": "text/event-stream"}


def asking(*urls: str) -> dict[str, object]:
    parts: list[dict[str, object]] = [{"type": "text", "text": "What is this?"}]
    parts += [{"type": "image_url", "image_url": {"url": url}} for url in urls]
    return {"messages": [{"role": "system", "content": "Be brief."},
                         {"role": "user", "content": parts}]}


def answer(seen: Seen) -> Script:
    """A one-word answer in the protocol the request was sent in."""
    if seen.path == "/v1/messages":
        return Script(body=sse(
            {"type": "content_block_delta", "index": 0,
             "delta": {"type": "text_delta", "text": "ok"}},
            {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
             "usage": {"output_tokens": 1}},
            {"type": "message_stop"}, done=False))
    if "streamGenerateContent" in seen.path:
        return Script(body=sse({"candidates": [{"content": {"parts": [{"text": "ok"}]},
                                                "finishReason": "STOP"}]}, done=False))
    if seen.path == "/api/chat":
        lines = [{"message": {"role": "assistant", "content": "ok"}, "done": False},
                 {"done": True, "done_reason": "stop"}]
        return Script(body=[b"".join(json.dumps(x).encode() + b"\n" for x in lines)],
                      headers=[("content-type", "application/x-ndjson")])
    return openai_script(["ok"])


def config(upstream: FakeUpstream, extra: str = "") -> str:
    out = "[server]\nresume_grace = 0.0\n"
    for kind, base in (("openai", "/v1"), ("anthropic", ""), ("gemini", ""), ("ollama", "")):
        out += (f"[providers.{kind}]\ntype = \"{kind}\"\nbase_url = \"{upstream.url}{base}\"\n"
                "retries = 0\n")
    return out + extra


@pytest.fixture
async def chorus(upstream: FakeUpstream, start_server: StartServer) -> Server:
    upstream.respond = answer
    return await start_server(config(upstream, '[providers.blind]\ntype = "openai"\n'
                                               f'base_url = "{upstream.url}/v1"\n'
                                               'images = ["vision"]\n'))


async def run(server: Server, models: list[str], body: dict[str, object]) -> list[tuple]:
    async with server.client() as client, client.stream(
        "POST", "/v1/streams", headers=SSE, json={"models": models, **body},
    ) as r:
        assert r.status_code == 200
        return [e async for e in read_events(r)]


def ends(events: list[tuple]) -> dict[int, tuple[str, dict]]:
    return {d["slot"]: (t, d) for _, t, d in events
            if t in ("model.done", "model.error", "model.stopped")}


def sent_to(upstream: FakeUpstream, path_part: str) -> dict:
    return next(s.json for s in upstream.seen if path_part in s.path)


async def test_each_protocol_gets_a_data_url_image_in_its_own_shape(
    upstream: FakeUpstream, chorus: Server,
) -> None:
    events = await run(chorus, ["openai/m", "anthropic/m", "gemini/m", "ollama/m"],
                       asking(DATA_URL))
    assert {slot: kind for slot, (kind, _) in ends(events).items()} == {
        0: "model.done", 1: "model.done", 2: "model.done", 3: "model.done"}
    assert sent_to(upstream, "/chat/completions")["messages"][1]["content"] == [
        {"type": "image_url", "image_url": {"url": DATA_URL}},
        {"type": "text", "text": "What is this?"}]
    assert sent_to(upstream, "/v1/messages")["messages"][0]["content"] == [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "text", "text": "What is this?"}]
    assert sent_to(upstream, "streamGenerateContent")["contents"][0]["parts"] == [
        {"inline_data": {"mime_type": "image/png", "data": PNG}}, {"text": "What is this?"}]
    assert sent_to(upstream, "/api/chat")["messages"][1] == {
        "role": "user", "content": "What is this?", "images": [PNG]}


async def test_a_link_goes_as_a_link_and_ollama_refuses_it_alone(
    upstream: FakeUpstream, chorus: Server,
) -> None:
    events = await run(chorus, ["openai/m", "anthropic/m", "gemini/m", "ollama/m"],
                       asking(LINK))
    result = ends(events)
    assert [result[i][0] for i in range(3)] == ["model.done"] * 3
    kind, data = result[3]
    assert kind == "model.error"
    assert data["error"]["type"] == "bad_request"
    assert data["error"]["message"] == ("ollama/m takes images only as data: URLs (base64), "
                                        "not as links")
    assert not any(s.path == "/api/chat" for s in upstream.seen)  # nothing was sent
    assert sent_to(upstream, "/chat/completions")["messages"][1]["content"][0] == {
        "type": "image_url", "image_url": {"url": LINK}}
    assert sent_to(upstream, "/v1/messages")["messages"][0]["content"][0] == {
        "type": "image", "source": {"type": "url", "url": LINK}}
    assert sent_to(upstream, "streamGenerateContent")["contents"][0]["parts"][0] == {
        "file_data": {"file_uri": LINK, "mime_type": "image/webp"}}


async def test_a_model_that_takes_no_images_fails_alone(
    upstream: FakeUpstream, chorus: Server,
) -> None:
    events = await run(chorus, ["blind/text-only", "blind/vision"], asking(DATA_URL))
    result = ends(events)
    assert result[0][0] == "model.error"
    assert result[0][1]["error"]["type"] == "bad_request"
    assert "blind/text-only does not take images" in result[0][1]["error"]["message"]
    assert result[1][0] == "model.done"
    assert [s.json["model"] for s in upstream.seen] == ["vision"]


async def test_demo_models_say_how_many_images_they_got(server: Server) -> None:
    async with server.client() as client:
        r = await client.post("/v1/chat/completions", json={
            "model": "demo/ttft=0,rate=0,tokens=5", **asking(DATA_URL, LINK)})
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == "I was given 2 images. "


async def test_chat_completions_carries_images_too(
    upstream: FakeUpstream, chorus: Server,
) -> None:
    async with chorus.client() as client:
        r = await client.post("/v1/chat/completions",
                              json={"model": "anthropic/m", **asking(DATA_URL)})
    assert r.status_code == 200, r.text
    assert sent_to(upstream, "/v1/messages")["messages"][0]["content"][0]["type"] == "image"


@pytest.mark.parametrize(("part", "says"), [
    ({"type": "image_url", "image_url": {"url": "http://example.com/a.png"}},
     "must be an https:// URL"),
    ({"type": "image_url", "image_url": {"url": "data:text/plain;base64,aGk="}},
     "must be a data URL 'data:image/<type>;base64,<data>'"),
    ({"type": "image_url", "image_url": {"url": "data:image/png;base64,@@@"}},
     "not valid base64"),
    ({"type": "image_url", "image_url": {"url": LINK, "detail": "max"}},
     "detail must be one of low, high, auto"),
    ({"type": "input_audio", "input_audio": {}}, "must be a text part"),
])
async def test_a_bad_image_part_is_a_400_naming_it(
    server: Server, part: dict[str, object], says: str,
) -> None:
    body = {"messages": [{"role": "user", "content": [part]}]}
    async with server.client() as client:
        r = await client.post("/v1/streams", json={"models": ["demo/instant"], **body})
        chat = await client.post("/v1/chat/completions", json={"model": "demo/instant", **body})
    for answered in (r, chat):
        assert answered.status_code == 400
        error = answered.json()["error"]
        assert error["type"] == "invalid_request"
        assert error["param"].startswith("messages[0].content[0]")
        assert says in error["message"]


async def test_images_only_in_user_messages(server: Server) -> None:
    parts = [{"type": "image_url", "image_url": {"url": LINK}}]
    async with server.client() as client:
        r = await client.post("/v1/streams", json={
            "models": ["demo/instant"],
            "messages": [{"role": "system", "content": parts},
                         {"role": "user", "content": "hi"}]})
    assert r.status_code == 400
    assert r.json()["error"]["message"] == ("messages[0].content: images may be sent in user "
                                            "messages only")
