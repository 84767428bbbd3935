"""Ollama's native API, pure: build the ``/api/chat`` request, parse its NDJSON lines.

https://docs.ollama.com/api/streaming — one JSON object a line: ``message.content`` is the
answer, ``message.thinking`` the reasoning (for thinking models; older versions put it
inline as ``<think>`` tags), ``message.tool_calls`` come whole. The last line has
``done: true``, ``done_reason`` and the counts. A failure after the 200 is a line
``{"error": "…"}`` (https://docs.ollama.com/api/errors). The parser also reads
``/api/generate`` lines (``response`` and ``thinking`` at the top level). A body that ends
before ``done: true`` is cut off (``ProtocolError``).
"""

from __future__ import annotations

from typing import Any

from .base import ChatRequest, HttpRequest, Message, ProviderConfig, with_key
from .errors import BadRequestError, ProtocolError
from .events import Finish, ProviderEvent, ReasoningDelta, Usage
from .images import check_images
from .ndjson import NDJSONDecoder
from .streaming import (
    TRUNCATED,
    StreamParserBase,
    ToolCallBuffer,
    count,
    error_from,
    load_object,
    names_in,
    obj,
    objs,
    string,
)
from .think import ThinkSplitter

DEFAULT_BASE_URL = "http://127.0.0.1:11434"

# Request fields of /api/chat; every other parameter is a model option, with our
# OpenAI-style names renamed. https://docs.ollama.com/api/chat ,
# https://github.com/ollama/ollama/blob/main/docs/modelfile.md#valid-parameters-and-values
_TOP_LEVEL = {"think", "format", "keep_alive", "tools"}
_OPTIONS = {"max_tokens": "num_predict"}
_ROLES = {"system", "user", "assistant", "tool"}


def build_request(config: ProviderConfig, request: ChatRequest) -> HttpRequest:
    for m in request.messages:
        if m.role not in _ROLES:
            raise BadRequestError(f"Ollama models do not take {m.role!r} messages")
    # Ollama fetches nothing: an image must come as data (base64), not as a link.
    check_images(config, request, links=False)
    body: dict[str, Any] = {
        "model": request.model,
        "messages": [_message(m) for m in request.messages],
    }
    options: dict[str, Any] = {}
    for key, value in request.params.items():
        if key in _TOP_LEVEL:
            body[key] = value
        else:
            options[_OPTIONS.get(key, key)] = value
    if options:
        body["options"] = options
    body["stream"] = True
    return HttpRequest("POST", f"{_base(config)}/api/chat", _headers(config), body)


def _message(message: Message) -> dict[str, Any]:
    """Images go beside the text as base64 strings. https://docs.ollama.com/api/chat"""
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.images:
        out["images"] = [image.inline[1] for image in message.images if image.inline]
    return out


def models_request(config: ProviderConfig) -> HttpRequest:
    return HttpRequest("GET", f"{_base(config)}/api/tags", _headers(config))


def parse_models(body: bytes) -> list[str]:
    """``GET /api/tags``: ``{"models": [{"name": "llama3.2:latest", …}, …]}``."""
    return names_in(body, "models", "name")


def parser() -> OllamaStreamParser:
    return OllamaStreamParser()


def _base(config: ProviderConfig) -> str:
    return (config.base_url or DEFAULT_BASE_URL).rstrip("/")


def _headers(config: ProviderConfig) -> dict[str, str]:
    # Ollama itself takes no key; one set here is for a proxy in front of it.
    return with_key(config, {"Accept": "application/x-ndjson"})


class OllamaStreamParser(StreamParserBase):
    def __init__(self) -> None:
        super().__init__()
        self._lines = NDJSONDecoder()
        self._think = ThinkSplitter()
        self._tools = ToolCallBuffer()
        self._reason: str | None = None

    def _feed(self, data: bytes, out: list[ProviderEvent]) -> None:
        for line in self._lines.feed(data):
            self._line(line, out)

    def _close(self, out: list[ProviderEvent]) -> None:
        for line in self._lines.flush():
            self._line(line, out)
        if self._reason is None:
            raise ProtocolError(TRUNCATED)
        out.extend(self._think.flush())
        reason = self._reason
        if reason == "stop" and self._tools:
            reason = "tool_calls"  # Ollama says stop after a tool call; OpenAI does not
        out.append(Finish(reason, self._tools.calls()))

    def _line(self, line: str, out: list[ProviderEvent]) -> None:
        if self._reason is not None:
            return  # nothing is expected after done: true
        chunk = load_object(line)
        if "error" in chunk:
            raise error_from(chunk["error"])
        message = obj(chunk.get("message"))
        reasoning = string(message.get("thinking")) or string(chunk.get("thinking"))
        if reasoning:
            out.append(ReasoningDelta(reasoning))
        text = string(message.get("content")) or string(chunk.get("response"))
        if text:
            self._think.feed_into(text, out)
        for call in objs(message.get("tool_calls")):
            function = obj(call.get("function"))
            self._tools.append(
                call_id=string(call.get("id")),
                name=string(function.get("name")),
                arguments=function.get("arguments"),
            )
        if chunk.get("done") is True:
            self._reason = string(chunk.get("done_reason")) or "stop"
            prompt, output = count(chunk.get("prompt_eval_count")), count(chunk.get("eval_count"))
            if prompt is not None or output is not None:
                out.append(Usage(prompt, output))
