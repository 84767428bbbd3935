"""The Anthropic Messages streaming protocol, pure: build the request, parse the bytes.

https://docs.anthropic.com/en/docs/build-with-claude/streaming — events arrive as
``message_start`` → per content block ``content_block_start`` / ``content_block_delta``… /
``content_block_stop`` → ``message_delta`` → ``message_stop``, with ``ping`` anywhere and
``error`` possible at any point; unknown events are ignored, as the docs ask. The answer is
complete once ``message_stop`` or a ``stop_reason`` has arrived; a body that ends before
either is cut off (``ProtocolError``).
"""

from __future__ import annotations

from typing import Any

from .base import ChatRequest, HttpRequest, ImagePart, ProviderConfig, with_key
from .errors import BadRequestError, ProtocolError
from .events import Finish, ProviderEvent, ReasoningDelta, TextDelta
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
    string,
)

DEFAULT_BASE_URL = "https://api.anthropic.com"
VERSION = "2023-06-01"  # https://docs.anthropic.com/en/api/versioning
DEFAULT_MAX_TOKENS = 4096  # Anthropic requires max_tokens; OpenAI-style clients omit it

# Our OpenAI-style parameter names → Anthropic's; others pass through unchanged.
_PARAMS = {"max_tokens": "max_tokens", "stop": "stop_sequences"}

# https://docs.anthropic.com/en/api/messages#response-stop-reason, in OpenAI's words.
_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def build_request(config: ProviderConfig, request: ChatRequest) -> HttpRequest:
    """``POST /v1/messages``; system messages go to the top-level ``system`` field."""
    check_images(config, request)
    system = [m.content for m in request.messages if m.role == "system"]
    messages = []
    for m in request.messages:
        if m.role in ("user", "assistant"):
            messages.append({"role": m.role, "content": text_or_parts(m, _image)})
        elif m.role != "system":
            raise BadRequestError(f"Anthropic models do not take {m.role!r} messages")
    body: dict[str, Any] = {
        "model": request.model,
        "max_tokens": config.options.get("max_tokens", DEFAULT_MAX_TOKENS),
        "messages": messages,
    }
    if system:
        body["system"] = "\n\n".join(system)
    for key, value in request.params.items():
        if key == "stop" and isinstance(value, str):
            value = [value]
        body[_PARAMS.get(key, key)] = value
    body["stream"] = True
    return HttpRequest("POST", f"{_base(config)}/v1/messages", _headers(config), body)


def _image(image: ImagePart) -> dict[str, Any]:
    """A base64 source for a data URL, a url source for a link.
    https://docs.anthropic.com/en/docs/build-with-claude/vision"""
    inline = image.inline
    if inline is None:
        return {"type": "image", "source": {"type": "url", "url": image.url}}
    media_type, data = inline
    return {"type": "image",
            "source": {"type": "base64", "media_type": media_type, "data": data}}


def models_request(config: ProviderConfig) -> HttpRequest:
    # https://docs.anthropic.com/en/api/models-list — 20 per page unless asked; 1000 is the max.
    return HttpRequest("GET", f"{_base(config)}/v1/models?limit=1000", _headers(config))


def parse_models(body: bytes) -> list[str]:
    """``GET /v1/models``: ``{"data": [{"id": …}, …], "has_more": …}``."""
    return names_in(body, "data", "id")


def parser() -> AnthropicStreamParser:
    return AnthropicStreamParser()


def _base(config: ProviderConfig) -> str:
    # The SDKs take the root; tolerate a base_url that already ends in /v1.
    return (config.base_url or DEFAULT_BASE_URL).rstrip("/").removesuffix("/v1")


def _headers(config: ProviderConfig) -> dict[str, str]:
    headers = {"anthropic-version": VERSION, "Accept": "text/event-stream"}
    return with_key(config, headers, "x-api-key", "")


class AnthropicStreamParser(SSEStreamParser):
    def __init__(self) -> None:
        super().__init__()
        self._tools = ToolCallBuffer()
        self._usage = UsageTracker()
        self._reason: str | None = None
        self._stopped = False

    def _end(self, out: list[ProviderEvent]) -> None:
        if self._reason is None and not self._stopped:
            raise ProtocolError(TRUNCATED)
        reason = self._reason or "end_turn"
        out.append(Finish(_REASONS.get(reason, reason), self._tools.calls()))

    def _event(self, event: SSEEvent, out: list[ProviderEvent]) -> None:
        if self._stopped:
            return
        data = load_object(event.data)
        # The data's "type" repeats the event name; trust either one saying "error".
        kind = "error" if event.event == "error" else string(data.get("type")) or event.event
        if kind == "error":
            raise error_from(obj(data.get("error")) or data)
        if kind == "message_start":
            self._count(obj(obj(data.get("message")).get("usage")), out)
        elif kind == "content_block_start":
            self._block_start(count(data.get("index")), obj(data.get("content_block")), out)
        elif kind == "content_block_delta":
            self._delta(count(data.get("index")), obj(data.get("delta")), out)
        elif kind == "message_delta":
            self._reason = string(obj(data.get("delta")).get("stop_reason")) or self._reason
            self._count(obj(data.get("usage")), out)
        elif kind == "message_stop":
            self._stopped = True

    def _block_start(
        self, index: int | None, block: dict[str, Any], out: list[ProviderEvent]
    ) -> None:
        kind = string(block.get("type"))
        if kind == "text":
            _add(out, TextDelta, string(block.get("text")))
        elif kind == "thinking":
            _add(out, ReasoningDelta, string(block.get("thinking")))
        elif kind == "tool_use" and index is not None:
            # Server tools (server_tool_use) run at Anthropic; only client tools are ours.
            self._tools.add(
                index, call_id=string(block.get("id")), name=string(block.get("name"))
            )

    def _delta(self, index: int | None, delta: dict[str, Any], out: list[ProviderEvent]) -> None:
        kind = string(delta.get("type"))
        if kind == "text_delta":
            _add(out, TextDelta, string(delta.get("text")))
        elif kind == "thinking_delta":
            _add(out, ReasoningDelta, string(delta.get("thinking")))
        elif kind == "input_json_delta" and index is not None and index in self._tools:
            # Partial JSON strings, valid only once joined (the first one is often "").
            self._tools.add(index, arguments=string(delta.get("partial_json")))

    def _count(self, usage: dict[str, Any], out: list[ProviderEvent]) -> None:
        """Counts are running totals. Anthropic's ``input_tokens`` leaves out cached prompt
        tokens, which OpenAI's ``prompt_tokens`` includes: add them, so inputs compare."""
        parts = [
            count(usage.get(key))
            for key in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
        ]
        given = [n for n in parts if n is not None]
        input_tokens = sum(given) if given else None
        out.extend(self._usage.report(input_tokens, count(usage.get("output_tokens"))))


def _add(out: list[ProviderEvent], kind: type[TextDelta] | type[ReasoningDelta], text: str) -> None:
    if text:
        out.append(kind(text))
