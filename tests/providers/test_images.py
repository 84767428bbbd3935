"""Images in the request each wire protocol builds (pure: no network), and which models
may be sent them (``providers.images``)."""

from __future__ import annotations

from typing import Any

import pytest

from providers import anthropic, demo, gemini, ollama, openai
from providers.base import ChatRequest, ImagePart, Message, ProviderConfig
from providers.errors import BadRequestError
from providers.events import TextDelta

DATA = ImagePart("data:image/jpeg;base64,AAAA")
LINK = ImagePart("https://example.com/photo", detail="low")
REQUEST = ChatRequest("m", [Message("user", "look", (DATA, LINK))])
BARE = ChatRequest("m", [Message("user", "", (DATA,))])


def config(kind: str, images: bool | tuple[str, ...] = True) -> ProviderConfig:
    return ProviderConfig(name="p", type=kind, base_url="http://127.0.0.1:1", images=images)


def test_an_image_part_knows_its_inline_data() -> None:
    assert DATA.inline == ("image/jpeg", "AAAA")
    assert LINK.inline is None


def test_openai_sends_image_url_parts_as_given_then_the_text() -> None:
    body = openai.build_request(config("openai"), REQUEST).json
    assert body["messages"][0]["content"] == [
        {"type": "image_url", "image_url": {"url": DATA.url}},
        {"type": "image_url", "image_url": {"url": LINK.url, "detail": "low"}},
        {"type": "text", "text": "look"}]
    text_only = ChatRequest("m", [Message("user", "look")])
    assert openai.build_request(config("openai"), text_only).json["messages"][0]["content"] \
        == "look"  # text alone stays a string, for servers that take nothing else


def test_anthropic_sends_base64_and_url_sources_and_no_empty_text_block() -> None:
    body = anthropic.build_request(config("anthropic"), REQUEST).json
    assert body["messages"][0]["content"] == [
        {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg",
                                     "data": "AAAA"}},
        {"type": "image", "source": {"type": "url", "url": LINK.url}},
        {"type": "text", "text": "look"}]
    assert anthropic.build_request(config("anthropic"), BARE).json["messages"][0]["content"] \
        == [{"type": "image", "source": {"type": "base64", "media_type": "image/jpeg",
                                          "data": "AAAA"}}]


def test_gemini_sends_inline_data_and_file_data() -> None:
    parts = gemini.build_request(config("gemini"), REQUEST).json["contents"][0]["parts"]
    assert parts == [{"inline_data": {"mime_type": "image/jpeg", "data": "AAAA"}},
                     # no file name to guess the type from: JPEG
                     {"file_data": {"file_uri": LINK.url, "mime_type": "image/jpeg"}},
                     {"text": "look"}]
    png = ChatRequest("m", [Message("user", "x", (ImagePart("https://e.com/a.png?s=1"),))])
    assert gemini.build_request(config("gemini"), png).json["contents"][0]["parts"][0] == {
        "file_data": {"file_uri": "https://e.com/a.png?s=1", "mime_type": "image/png"}}


def test_ollama_sends_base64_beside_the_text_and_refuses_links() -> None:
    body = ollama.build_request(config("ollama"), BARE).json
    assert body["messages"][0] == {"role": "user", "content": "", "images": ["AAAA"]}
    with pytest.raises(BadRequestError, match="p/m takes images only as data: URLs"):
        ollama.build_request(config("ollama"), REQUEST)


@pytest.mark.parametrize("wire", [openai, anthropic, gemini, ollama])
def test_a_model_the_config_says_takes_no_images_is_refused(wire: Any) -> None:
    kind = wire.__name__.rsplit(".")[-1]
    for images in (False, ("other",)):
        with pytest.raises(BadRequestError, match="p/m does not take images"):
            wire.build_request(config(kind, images), BARE)
    text_only = ChatRequest("m", [Message("user", "hi")])
    assert wire.build_request(config(kind, False), text_only).method == "POST"  # text: fine


async def test_a_demo_model_opens_with_how_many_images_it_got() -> None:
    provider = demo.DemoProvider(config("demo"))
    request = ChatRequest("ttft=0,rate=0,tokens=6", [Message("user", "hi", (DATA,))])
    text = "".join([e.text async for e in provider.stream(request) if isinstance(e, TextDelta)])
    assert text == "I was given 1 image. This "  # six tokens: its words, then the answer's
    blind = demo.DemoProvider(config("demo", images=False))
    with pytest.raises(BadRequestError, match="p/ttft=0,rate=0,tokens=6 does not take images"):
        async for _ in blind.stream(request):
            pass
