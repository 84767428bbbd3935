"""The OpenAI Chat Completions streaming protocol, pure: build the request, parse the bytes.

Spoken by OpenAI and by most servers that copy it (OpenRouter, vLLM, llama.cpp, Ollama
``/v1``, LM Studio, Groq, Together, DeepSeek, Azure). Their differences are handled here:
reasoning as ``reasoning_content`` or ``reasoning`` or inline ``<think>`` tags; usage on a
``choices: []`` chunk, on the finish chunk or in ``x_groq``; errors as ``event: error`` or
as a chunk with an ``error`` object; tool calls in fragments merged by ``index``.
https://platform.openai.com/docs/api-reference/chat-streaming

When is the answer complete? ``data: [DONE]`` says so, and so does a ``finish_reason``: a
server that sends one and then closes without ``[DONE]`` has finished the answer (only the
usage chunk may be missing). A body that ends with neither is cut off: ``ProtocolError``.
"""

from __future__ import annotations

from typing import Any

from .base import ChatRequest, HttpRequest, ImagePart, ProviderConfig, with_key
from .errors import ProtocolError, ProviderError, UpstreamError
from .events import Finish, ProviderEvent, ReasoningDelta
from .images import check_images, text_or_parts
from .sse import SSEEvent
from .streaming import (
    TRUNCATED,
    SSEStreamParser,
    ToolCallBuffer,
    UsageTracker,
    count,
    error_from,
    load_object,
    names_in,
    obj,
    objs,
    short,
    string,
)
from .think import ThinkSplitter

DEFAULT_BASE_URL = "https://api.openai.com/v1"


def build_request(config: ProviderConfig, request: ChatRequest) -> HttpRequest:
    check_images(config, request)
    body: dict[str, Any] = {
        "model": request.model,
        "messages": [{"role": m.role, "content": text_or_parts(m, _image)}
                     for m in request.messages],
        **request.params,
        "stream": True,
    }
    # Usage arrives only when asked for; a server that rejects the option can opt out.
    if config.options.get("include_usage", True):
        body["stream_options"] = {"include_usage": True}
    return HttpRequest("POST", f"{_base(config)}/chat/completions", _headers(config), body)


def _image(image: ImagePart) -> dict[str, Any]:
    """As OpenAI takes it. https://platform.openai.com/docs/guides/images-vision"""
    part: dict[str, Any] = {"url": image.url}
    if image.detail is not None:
        part["detail"] = image.detail
    return {"type": "image_url", "image_url": part}


def models_request(config: ProviderConfig) -> HttpRequest:
    return HttpRequest("GET", f"{_base(config)}/models", _headers(config))


def parse_models(body: bytes) -> list[str]:
    """``GET /models``: ``{"data": [{"id": …}, …]}``."""
    return names_in(body, "data", "id")


def parser() -> OpenAIStreamParser:
    return OpenAIStreamParser()


def _base(config: ProviderConfig) -> str:
    return (config.base_url or DEFAULT_BASE_URL).rstrip("/")


def _headers(config: ProviderConfig) -> dict[str, str]:
    return with_key(config, {"Accept": "text/event-stream"})


class OpenAIStreamParser(SSEStreamParser):
    """Turns a Chat Completions SSE body into provider events (choice 0 only)."""

    def __init__(self) -> None:
        super().__init__()
        self._think = ThinkSplitter()
        self._tools = ToolCallBuffer()
        self._usage = UsageTracker()
        self._finish: str | None = None
        self._done = False

    def _end(self, out: list[ProviderEvent]) -> None:
        if self._finish is None and not self._done:
            raise ProtocolError(TRUNCATED)
        out.extend(self._think.flush())
        out.append(Finish(self._finish or "stop", self._tools.calls()))

    def _event(self, event: SSEEvent, out: list[ProviderEvent]) -> None:
        if self._done:
            return
        if event.data == "[DONE]":
            self._done = True
            return
        if event.event == "error":  # Groq: a named event, then the body ends without [DONE]
            raise _named_error(event.data)
        chunk = load_object(event.data)
        # The common chunk holds one choice with a bit of text and no usage: it goes through
        # here with no helper calls and nothing built that is not handed on (this parser is
        # a good part of a relayed token's cost, ``bench/findings.md``).
        usage = chunk.get("usage")
        groq = chunk.get("x_groq")
        tokens: tuple[int | None, int | None] | None = None
        if usage is not None or groq is not None:
            usage = obj(usage) or obj(obj(groq).get("usage"))
            tokens = count(usage.get("prompt_tokens")), count(usage.get("completion_tokens"))
        if chunk.get("error"):  # OpenAI, OpenRouter: an error chunk, then [DONE]
            if tokens is not None:
                out.extend(self._usage.report(*tokens))  # OpenRouter's has what it billed
            raise error_from(chunk["error"])
        choices = chunk.get("choices")
        if isinstance(choices, list):
            for choice in choices:
                if isinstance(choice, dict) and choice.get("index", 0) == 0:
                    self._choice(choice, out)
        if tokens is not None:
            out.extend(self._usage.report(*tokens))

    def _choice(self, choice: dict[str, Any], out: list[ProviderEvent]) -> None:
        # ``string``/``obj`` inlined: their calls were 8 % of this parser's instructions.
        delta = choice.get("delta")
        if isinstance(delta, dict):
            # DeepSeek and llama.cpp say reasoning_content; vLLM (since 0.10), Ollama, Groq
            # and OpenRouter say reasoning.
            # https://docs.vllm.ai/en/latest/features/reasoning_outputs/
            reasoning = delta.get("reasoning_content")
            if not (reasoning and isinstance(reasoning, str)):
                reasoning = delta.get("reasoning")
            if reasoning and isinstance(reasoning, str):
                out.append(ReasoningDelta(reasoning))
            # A refusal is the model's answer too, sent in its own field.
            for key in ("content", "refusal"):
                text = delta.get(key)
                if text and isinstance(text, str):
                    self._think.feed_into(text, out)
            calls = delta.get("tool_calls")
            if calls is not None:
                for call in objs(calls):
                    self._tool_fragment(call)
        reason = choice.get("finish_reason")  # Ollama before 0.1.39 sent ""
        if reason and isinstance(reason, str):
            self._finish = reason

    def _tool_fragment(self, call: dict[str, Any]) -> None:
        function = obj(call.get("function"))
        call_id = string(call.get("id"))
        index = count(call.get("index"))
        if index is None:
            # Some servers (Gemini's OpenAI endpoint) leave out the index: a new id starts
            # a new call, a fragment with no id continues the last one.
            known = self._tools.index_of(call_id) if call_id else None
            if known is not None:
                index = known
            elif call_id or not self._tools:
                index = self._tools.next_index()
            else:
                index = self._tools.next_index() - 1
        self._tools.add(
            index,
            call_id=call_id,
            name=string(function.get("name")),
            arguments=string(function.get("arguments")),
        )


def _named_error(data: str) -> ProviderError:
    try:
        body = load_object(data)
    except ProtocolError:
        return UpstreamError(short(data) or "the upstream reported an error mid-stream")
    return error_from(body.get("error") or body)
