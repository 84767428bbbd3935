"""The OpenAI Chat Completions streaming protocol, pure: build the request, parse the bytes.

Spoken by OpenAI and by most servers that copy it (OpenRouter, vLLM, llama.cpp, Ollama
``/v1``, LM Studio, Groq, Together, DeepSeek). Their differences are handled here:
reasoning as ``reasoning_content`` or ``reasoning`` or inline ``<think>`` tags, usage on a
``choices: []`` chunk or on the finish chunk or in ``x_groq``, errors as ``event: error``
or as a chunk with an ``error`` object.
https://platform.openai.com/docs/api-reference/chat-streaming
"""

from __future__ import annotations

import json
from typing import Any

from .base import ChatRequest, HttpRequest, ProviderConfig
from .errors import ProtocolError, ProviderError, error_for_status
from .events import Finish, ProviderEvent, ReasoningDelta, TextDelta, ToolCall, Usage
from .sse import SSEDecoder, SSEEvent
from .think import ThinkSplitter

DEFAULT_BASE_URL = "https://api.openai.com/v1"


def build_request(config: ProviderConfig, request: ChatRequest) -> HttpRequest:
    body: dict[str, Any] = {
        "model": request.model,
        "messages": [{"role": m.role, "content": m.content} for m in request.messages],
        **request.params,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    headers = {"Accept": "text/event-stream"}
    if config.api_key:
        headers["Authorization"] = f"Bearer {config.api_key}"
    base = (config.base_url or DEFAULT_BASE_URL).rstrip("/")
    return HttpRequest("POST", f"{base}/chat/completions", headers, body)


def parser() -> OpenAIStreamParser:
    return OpenAIStreamParser()


class OpenAIStreamParser:
    """Turns a Chat Completions SSE body into provider events (choice 0 only)."""

    def __init__(self) -> None:
        self._sse = SSEDecoder()
        self._think = ThinkSplitter()
        self._tools: dict[int, list[Any]] = {}  # index -> [id, name, [argument pieces]]
        self._finish: str | None = None
        self._done = False
        self._seen_any = False

    def feed(self, data: bytes) -> list[ProviderEvent]:
        out: list[ProviderEvent] = []
        for event in self._sse.feed(data):
            self._event(event, out)
        return out

    def close(self) -> list[ProviderEvent]:
        out: list[ProviderEvent] = []
        for event in self._sse.flush():
            self._event(event, out)
        out.extend(self._think.flush())
        if self._finish is None and not self._done:
            raise ProtocolError("the upstream closed the stream before the answer was complete")
        out.append(Finish(self._finish or "stop", self._tool_calls()))
        return out

    def _event(self, event: SSEEvent, out: list[ProviderEvent]) -> None:
        if self._done:
            return
        if event.data == "[DONE]":
            self._done = True
            return
        try:
            chunk = json.loads(event.data)
        except ValueError as exc:
            raise ProtocolError("the upstream sent a chunk that is not valid JSON") from exc
        if not isinstance(chunk, dict):
            raise ProtocolError("the upstream sent a chunk that is not a JSON object")
        if event.event == "error" or chunk.get("error"):
            raise _stream_error(chunk.get("error", chunk))
        self._chunk(chunk, out)

    def _chunk(self, chunk: dict[str, Any], out: list[ProviderEvent]) -> None:
        choices = chunk.get("choices") or []
        for choice in choices:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            reasoning = delta.get("reasoning_content") or delta.get("reasoning")
            if isinstance(reasoning, str) and reasoning:
                out.append(ReasoningDelta(reasoning))
            content = delta.get("content")
            if isinstance(content, str) and content:
                out.extend(self._think.feed(content))
            for call in delta.get("tool_calls") or ():
                self._tool_fragment(call)
            if choice.get("finish_reason"):
                self._finish = str(choice["finish_reason"])
        usage = chunk.get("usage") or (chunk.get("x_groq") or {}).get("usage")
        if isinstance(usage, dict):
            out.append(
                Usage(_int(usage.get("prompt_tokens")), _int(usage.get("completion_tokens")))
            )

    def _tool_fragment(self, call: dict[str, Any]) -> None:
        index = int(call.get("index", 0))
        slot = self._tools.setdefault(index, [None, "", []])
        if call.get("id"):
            slot[0] = call["id"]
        function = call.get("function") or {}
        if function.get("name"):
            slot[1] = function["name"]
        if function.get("arguments"):
            slot[2].append(function["arguments"])

    def _tool_calls(self) -> tuple[ToolCall, ...]:
        return tuple(
            ToolCall(index, id_, name, "".join(args))
            for index, (id_, name, args) in sorted(self._tools.items())
        )


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _stream_error(error: Any) -> ProviderError:
    """An error the upstream reported inside a 200 stream (Groq, OpenRouter, OpenAI)."""
    if not isinstance(error, dict):
        return error_for_status(502, "the upstream reported an error mid-stream")
    message = str(error.get("message") or "the upstream reported an error mid-stream")[:500]
    status = error.get("status_code") or error.get("code")
    if isinstance(status, int) and 400 <= status < 600:
        return error_for_status(status, message)
    if error.get("type") in ("rate_limit_error", "rate_limit_exceeded"):
        return error_for_status(429, message)
    return error_for_status(502, message)
