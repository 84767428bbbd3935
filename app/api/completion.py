"""One chat completion as OpenAI's shapes, built from its stream's typed events. Pure.

``Completion.feed`` turns one event into the ``chat.completion.chunk`` objects it makes
(streaming); ``result`` is the whole ``chat.completion`` (non-streaming); ``encode_chunk``
is the one place a chunk becomes SSE bytes. Each choice is one slot (``index`` = slot).
Shapes: https://platform.openai.com/docs/api-reference/chat/streaming
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from app.engine.events import (
    Delta,
    Event,
    ModelDone,
    ModelError,
    ModelStopped,
    Reasoning,
    SlotError,
    SlotUsage,
    StreamDone,
    ToolCall,
)
from app.engine.wire import encode_json, utf8

from .errors import ApiError

DONE = b"data: [DONE]\n\n"

# Before the first chunk, a model's error becomes the response's status (DESIGN.md).
ERROR_STATUS = {
    "bad_request": 400, "rate_limit": 429, "auth": 502, "upstream": 502, "connection": 502,
    "protocol": 502, "timeout": 504, "stopped": 503,
}


def encode_chunk(obj: dict[str, Any]) -> bytes:
    """A chunk (or an error object) as one SSE ``data:`` event."""
    return utf8(f"data: {encode_json(obj)}\n\n")


def openai_error(exc: ApiError) -> dict[str, Any]:
    """OpenAI's error object, keeping Chorus's keys: ``type`` is Chorus's error type, and
    ``code`` repeats it, since OpenAI clients look there for a machine-readable reason."""
    return {"error": {"message": exc.message, "type": exc.type, "param": exc.param,
                      "code": exc.type}}


def model_error(error: SlotError) -> ApiError:
    """A slot's ``model.error`` as the response's error (status per ``ERROR_STATUS``)."""
    return ApiError(ERROR_STATUS.get(error.type, 500), error.type, error.message)


@dataclass(slots=True)
class _Choice:
    model: str
    text: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    finish_reason: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    usage: SlotUsage | None = None
    role_sent: bool = False


class Completion:
    """The completion's state: each choice's text so far, its end, and the first error.

    The first ``model.error``, or a stop that the user did not ask for (shutdown), ends
    it: ``error`` holds why, and later events count for nothing. ``stream.done`` sets
    ``finished``. ``models`` names each choice's model; with ``name_choices`` (a group's
    fan-out) every chunk's choice carries it as ``model``, an extension field.
    """

    def __init__(self, completion_id: str, model: str, created: int, models: Sequence[str],
                 *, include_usage: bool = False, name_choices: bool = False) -> None:
        self.id = completion_id
        self.model = model
        self.created = created
        self.include_usage = include_usage
        self.name_choices = name_choices
        self.choices = [_Choice(m) for m in models]
        self.error: ApiError | None = None
        self.started = False  # a chunk has been made: the response's status is sent
        self.finished = False

    def feed(self, event: Event) -> list[dict[str, Any]]:
        if self.error is not None or self.finished:
            return []
        if isinstance(event, Delta | Reasoning):
            choice = self.choices[event.slot]
            if isinstance(event, Delta):
                choice.text.append(event.text)
                return [self._chunk(event.slot, {"content": event.text})]
            choice.reasoning.append(event.text)
            return [self._chunk(event.slot, {"reasoning_content": event.text})]
        if isinstance(event, ModelError):
            self.error = model_error(event.error)
        elif isinstance(event, ModelStopped) and event.reason != "user":
            self.error = ApiError(503, "stopped", f"the model was stopped ({event.reason})")
        elif isinstance(event, ModelDone | ModelStopped):
            return self._finish(event)
        elif isinstance(event, StreamDone):
            self.finished = True
            return [self._usage_chunk()] if self.include_usage else []
        return []  # stream.start, model.start, model.retry: nothing in OpenAI's terms

    def _finish(self, event: ModelDone | ModelStopped) -> list[dict[str, Any]]:
        slot = event.slot
        choice = self.choices[slot]
        choice.usage = event.usage
        choice.finish_reason = "stop"
        if isinstance(event, ModelDone):
            choice.finish_reason = event.finish_reason or "stop"
            choice.tool_calls = event.tool_calls
        out = []
        if choice.tool_calls:
            out.append(self._chunk(slot, {"tool_calls": [
                {"index": c.index, **_tool_call(c)} for c in choice.tool_calls]}))
        out.append(self._chunk(slot, {}, choice.finish_reason))
        return out

    def _chunk(self, slot: int, delta: dict[str, Any], finish: str | None = None
               ) -> dict[str, Any]:
        choice = self.choices[slot]
        if not choice.role_sent:
            delta = {"role": "assistant", **delta}
            choice.role_sent = True
        self.started = True
        chunk = self._head("chat.completion.chunk")
        entry: dict[str, Any] = {"index": slot, "delta": delta, "logprobs": None,
                                 "finish_reason": finish}
        if self.name_choices:
            entry["model"] = choice.model
        chunk["choices"] = [entry]
        if self.include_usage:
            chunk["usage"] = None  # OpenAI: null on every chunk but the last
        return chunk

    def _usage_chunk(self) -> dict[str, Any]:
        chunk = self._head("chat.completion.chunk")
        chunk["choices"] = []
        chunk["usage"] = self.usage()
        return chunk

    def _head(self, kind: str) -> dict[str, Any]:
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model}

    def usage(self) -> dict[str, int]:
        """Summed over the choices: each choice is its own upstream request, and pays for
        its own prompt."""
        prompt = sum(c.usage.input_tokens or 0 for c in self.choices if c.usage is not None)
        completion = sum(c.usage.output_tokens for c in self.choices if c.usage is not None)
        return {"prompt_tokens": prompt, "completion_tokens": completion,
                "total_tokens": prompt + completion}

    def result(self) -> dict[str, Any]:
        out = self._head("chat.completion")
        out["choices"] = [self._message(i, c) for i, c in enumerate(self.choices)]
        out["usage"] = self.usage()
        return out

    def _message(self, index: int, choice: _Choice) -> dict[str, Any]:
        text = "".join(choice.text)
        message: dict[str, Any] = {
            "role": "assistant", "content": text or (None if choice.tool_calls else ""),
        }
        if choice.reasoning:
            message["reasoning_content"] = "".join(choice.reasoning)
        if choice.tool_calls:
            message["tool_calls"] = [_tool_call(c) for c in choice.tool_calls]
        out: dict[str, Any] = {"index": index, "message": message, "logprobs": None,
                               "finish_reason": choice.finish_reason}
        if self.name_choices:
            out["model"] = choice.model
        return out


def _tool_call(call: ToolCall) -> dict[str, Any]:
    return {"id": call.id, "type": "function",
            "function": {"name": call.name, "arguments": call.arguments}}
