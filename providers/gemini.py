"""The Gemini ``streamGenerateContent`` protocol, pure: build the request, parse the bytes.

https://ai.google.dev/api/generate-content#method:-models.streamgeneratecontent — we ask for
``?alt=sse``: unnamed SSE events, each a whole ``GenerateContentResponse``, no end sentinel.
Without ``alt=sse`` the body is one JSON array sent bit by bit; ``array_parser()`` reads
that framing (see ``providers.jsonarray``). Both parsers map responses the same way: parts
with ``thought: true`` are reasoning, ``functionCall`` parts come whole, ``usageMetadata``
is a running total (the last one wins), and ``finishReason`` ends the answer. A body that
ends before any ``finishReason`` (or, in the array framing, before its ``]``) is cut off.

Errors after the 200: an ``{"error": …}`` object in an event or array element is raised as
our type. Gemini has also been seen (https://github.com/vercel/ai/issues/5217) to end an
``alt=sse`` stream with a bare, pretty-printed JSON error and no ``data:`` prefix, which an
SSE parser must ignore by the spec. We don't let that error vanish: lines outside the SSE
framing are collected, and if they form an object with an ``error`` member it is raised.
Any other stray text is ignored, as the spec says.
"""

from __future__ import annotations

import json
import mimetypes
from typing import Any
from urllib.parse import urlsplit

from .base import ChatRequest, HttpRequest, ImagePart, ProviderConfig, with_key
from .errors import BadRequestError, ProtocolError
from .events import Finish, ProviderEvent, ReasoningDelta, TextDelta
from .images import check_images, content_parts
from .jsonarray import JSONArrayDecoder
from .sse import SSEEvent
from .streaming import (
    TRUNCATED,
    SSEStreamParser,
    StreamParserBase,
    ToolCallBuffer,
    UsageTracker,
    count,
    error_from,
    load_object,
    obj,
    objs,
    string,
)

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"

# Our OpenAI-style parameter names → generationConfig fields; others go top-level as given.
# https://ai.google.dev/api/generate-content#generationconfig
_GENERATION = {
    "temperature": "temperature",
    "max_tokens": "maxOutputTokens",
    "top_p": "topP",
    "top_k": "topK",
    "stop": "stopSequences",
    "seed": "seed",
    "presence_penalty": "presencePenalty",
    "frequency_penalty": "frequencyPenalty",
}

# https://ai.google.dev/api/generate-content#FinishReason, in OpenAI's words.
_REASONS = {"STOP": "stop", "MAX_TOKENS": "length"}
_FILTERED = {"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY"}

MAX_STRAY_CHARS = 16 * 1024  # Gemini's error objects are well under 1 KiB


def build_request(config: ProviderConfig, request: ChatRequest) -> HttpRequest:
    check_images(config, request)
    contents = []
    system = []
    for m in request.messages:
        if m.role == "system":
            system.append({"text": m.content})
        elif m.role in ("user", "assistant"):
            role = "model" if m.role == "assistant" else "user"
            parts = content_parts(m, _image, lambda text: {"text": text}) or [{"text": ""}]
            contents.append({"role": role, "parts": parts})
        else:
            raise BadRequestError(f"Gemini models do not take {m.role!r} messages")
    body: dict[str, Any] = {"contents": contents}
    if system:
        body["systemInstruction"] = {"parts": system}
    generation: dict[str, Any] = {}
    for key, value in request.params.items():
        if key in _GENERATION:
            if key == "stop" and isinstance(value, str):
                value = [value]
            generation[_GENERATION[key]] = value
        else:
            body[key] = value
    if generation:
        body["generationConfig"] = {**obj(body.get("generationConfig")), **generation}
    url = f"{_base(config)}/v1beta/{_model_path(request.model)}:streamGenerateContent?alt=sse"
    return HttpRequest("POST", url, _headers(config), body)


def _image(image: ImagePart) -> dict[str, Any]:
    """A data URL inline; a link as ``file_data``, whose ``mime_type`` Gemini requires:
    guessed from the link's file name, else JPEG.
    https://ai.google.dev/gemini-api/docs/vision , https://ai.google.dev/api/caching#Part"""
    inline = image.inline
    if inline is not None:
        return {"inline_data": {"mime_type": inline[0], "data": inline[1]}}
    guessed = mimetypes.guess_type(urlsplit(image.url).path)[0]
    mime_type = guessed if guessed and guessed.startswith("image/") else "image/jpeg"
    return {"file_data": {"file_uri": image.url, "mime_type": mime_type}}


def models_request(config: ProviderConfig) -> HttpRequest:
    # https://ai.google.dev/api/models#method:-models.list — 50 per page unless asked.
    return HttpRequest("GET", f"{_base(config)}/v1beta/models?pageSize=1000", _headers(config))


def parse_models(body: bytes) -> list[str]:
    """``GET /v1beta/models``: the models that can generate text, without ``models/``."""
    wanted = {"generateContent", "streamGenerateContent"}
    return [
        string(m.get("name")).removeprefix("models/")
        for m in objs(load_object(body).get("models"))
        if string(m.get("name")) and wanted & _strings(m.get("supportedGenerationMethods"))
    ]


def _strings(value: Any) -> set[str]:
    return {v for v in value if isinstance(v, str)} if isinstance(value, list) else set()


def parser() -> GeminiSSEParser:
    return GeminiSSEParser()


def array_parser() -> GeminiArrayParser:
    return GeminiArrayParser()


def _base(config: ProviderConfig) -> str:
    # The SDKs take the root; tolerate a base_url that already ends in /v1beta.
    return (config.base_url or DEFAULT_BASE_URL).rstrip("/").removesuffix("/v1beta")


def _model_path(model: str) -> str:
    return model if model.startswith(("models/", "tunedModels/")) else f"models/{model}"


def _headers(config: ProviderConfig) -> dict[str, str]:
    return with_key(config, {"Accept": "text/event-stream"}, "x-goog-api-key", "")


class _Responses:
    """``GenerateContentResponse`` objects → events, whatever framing brought them."""

    def __init__(self) -> None:
        self._tools = ToolCallBuffer()
        self._usage = UsageTracker()
        self._reason: str | None = None

    def take(self, response: dict[str, Any], out: list[ProviderEvent]) -> None:
        if "error" in response:
            raise error_from(response["error"])
        candidates = objs(response.get("candidates"))
        first = next((c for c in candidates if c.get("index", 0) == 0), {})
        for part in objs(obj(first.get("content")).get("parts")):
            text = string(part.get("text"))
            if text:
                out.append(ReasoningDelta(text) if part.get("thought") is True else TextDelta(text))
            call = obj(part.get("functionCall"))
            if call:
                self._tools.append(
                    call_id=string(call.get("id")),
                    name=string(call.get("name")),
                    arguments=call.get("args"),
                )
        self._reason = string(first.get("finishReason")) or self._reason
        if string(obj(response.get("promptFeedback")).get("blockReason")):
            self._reason = "SAFETY"  # the prompt itself was blocked: no candidates come
        meta = obj(response.get("usageMetadata"))
        # Thinking tokens are billed as output, and counted so by OpenAI and Anthropic.
        answer, thoughts = count(meta.get("candidatesTokenCount")), count(
            meta.get("thoughtsTokenCount")
        )
        output = None if answer is None and thoughts is None else (answer or 0) + (thoughts or 0)
        out.extend(self._usage.report(count(meta.get("promptTokenCount")), output))

    def finish(self, out: list[ProviderEvent], *, ended: bool) -> None:
        if self._reason is None and not ended:
            raise ProtocolError(TRUNCATED)
        raw = self._reason or "STOP"
        reason = "content_filter" if raw in _FILTERED else _REASONS.get(raw, raw.lower())
        if reason == "stop" and self._tools:
            reason = "tool_calls"  # Gemini says STOP for a function call; OpenAI does not
        out.append(Finish(reason, self._tools.calls()))


class GeminiSSEParser(SSEStreamParser):
    def __init__(self) -> None:
        super().__init__(keep_stray=True)
        self._responses = _Responses()
        self._stray: list[str] = []
        self._stray_size = 0

    def _event(self, event: SSEEvent, out: list[ProviderEvent]) -> None:
        if event.stray:
            self._stray_line(event.data)
        else:
            self._stray, self._stray_size = [], 0
            self._responses.take(load_object(event.data), out)

    def _end(self, out: list[ProviderEvent]) -> None:
        self._responses.finish(out, ended=False)

    def _stray_line(self, line: str) -> None:
        if not self._stray and not line.lstrip().startswith(("{", "[")):
            return  # not the start of a JSON text: ignored, as the spec says
        self._stray.append(line)
        self._stray_size += len(line)
        if self._stray_size > MAX_STRAY_CHARS:
            self._stray, self._stray_size = [], 0
            return
        if not line.rstrip().endswith(("}", "]")):
            return  # a JSON text can only end on a closing line
        try:
            stray = json.loads("\n".join(self._stray))
        except (ValueError, RecursionError):
            if line[:1].isspace():
                return  # an indented, inner object closed: the text goes on
            stray = None  # the text closed at the margin and is not JSON: drop it
        self._stray, self._stray_size = [], 0
        for item in stray if isinstance(stray, list) else [stray]:
            if isinstance(item, dict) and "error" in item:
                raise error_from(item["error"])


class GeminiArrayParser(StreamParserBase):
    def __init__(self) -> None:
        super().__init__()
        self._array = JSONArrayDecoder()
        self._responses = _Responses()

    def _feed(self, data: bytes, out: list[ProviderEvent]) -> None:
        for element in self._array.feed(data):
            self._responses.take(load_object(element), out)

    def _close(self, out: list[ProviderEvent]) -> None:
        self._responses.finish(out, ended=self._array.flush())
