"""What the stream parsers of every wire protocol share.

* ``StreamParserBase``: the ``feed``/``close`` shape, and the rule for in-stream errors;
  ``SSEStreamParser``: the same for protocols framed as Server-Sent Events.
* Defensive readers for upstream JSON (``load_object``, ``obj``, ``objs``, ``string``,
  ``count``): a field of the wrong type is treated as absent, never as a crash.
* ``ToolCallBuffer``: tool calls assembled from fragments, keyed by index;
  ``UsageTracker``: running token totals, reported only when they change.
* ``error_from``: an upstream error object (OpenAI, Groq, OpenRouter, Anthropic, Gemini,
  Ollama shapes) as one of our ``ProviderError`` types, with a short message.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from .errors import ProtocolError, ProviderError, UpstreamError, error_for_status
from .events import ProviderEvent, ToolCall, Usage
from .sse import SSEDecoder, SSEEvent

TRUNCATED = "the upstream closed the stream before the answer was complete"


class StreamParserBase(ABC):
    """``feed``/``close`` for a subclass's ``_feed``/``_close``, which append to ``out``.

    An error the upstream sends mid-stream must not swallow the events that came before it
    in the same read, or what a client sees would depend on how TCP split the body. So when
    ``_feed`` raises after producing events, those events are returned and the error is
    raised by the next call (or at once by ``raise_held``).
    Once raised, the same error is raised by every later call.
    """

    def __init__(self) -> None:
        self._error: ProviderError | None = None

    def feed(self, data: bytes) -> list[ProviderEvent]:
        if self._error is not None:
            raise self._error
        out: list[ProviderEvent] = []
        try:
            self._feed(data, out)
        except ProviderError as exc:
            self._error = exc
            if not out:
                raise
        return out

    def raise_held(self) -> None:
        """Raise the error held back by the last ``feed`` (the events before it were
        returned), if there is one: for a caller that wants it at once."""
        if self._error is not None:
            raise self._error

    def close(self) -> list[ProviderEvent]:
        if self._error is not None:
            raise self._error
        out: list[ProviderEvent] = []
        try:
            self._close(out)
        except ProviderError as exc:
            self._error = exc
            raise
        return out

    @abstractmethod
    def _feed(self, data: bytes, out: list[ProviderEvent]) -> None: ...

    @abstractmethod
    def _close(self, out: list[ProviderEvent]) -> None: ...


class SSEStreamParser(StreamParserBase):
    """Each SSE event goes to ``_event``; at end of body, ``_end`` checks and finishes."""

    def __init__(self, *, keep_stray: bool = False) -> None:
        super().__init__()
        self._sse = SSEDecoder(keep_stray=keep_stray)

    def _feed(self, data: bytes, out: list[ProviderEvent]) -> None:
        for event in self._sse.feed(data):
            self._event(event, out)

    def _close(self, out: list[ProviderEvent]) -> None:
        for event in self._sse.flush():
            self._event(event, out)
        self._end(out)

    @abstractmethod
    def _event(self, event: SSEEvent, out: list[ProviderEvent]) -> None: ...

    @abstractmethod
    def _end(self, out: list[ProviderEvent]) -> None: ...


def load_object(text: str | bytes) -> dict[str, Any]:
    """One JSON object, or ``ProtocolError``."""
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError("the upstream sent a chunk that is not valid JSON") from exc
    if not isinstance(value, dict):
        raise ProtocolError("the upstream sent a chunk that is not a JSON object")
    return value


def obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def objs(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def string(value: Any) -> str:
    return value if isinstance(value, str) else ""


def count(value: Any) -> int | None:
    """A token count or an index: a non-negative int (``bool`` is not one)."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def arguments_json(value: Any) -> str:
    """Tool arguments as the JSON text OpenAI sends (Gemini and Ollama send an object)."""
    if isinstance(value, str):
        return value
    return json.dumps(value if value is not None else {}, ensure_ascii=False, separators=(",", ":"))


@dataclass(slots=True)
class _Draft:
    id: str | None = None
    name: str = ""
    pieces: list[str] = field(default_factory=list)


class ToolCallBuffer:
    """Tool calls by index: ``id`` and ``name`` come once, ``arguments`` in pieces."""

    def __init__(self) -> None:
        self._drafts: dict[int, _Draft] = {}

    def __contains__(self, index: int) -> bool:
        return index in self._drafts

    def __bool__(self) -> bool:
        return bool(self._drafts)

    def next_index(self) -> int:
        return max(self._drafts, default=-1) + 1

    def index_of(self, call_id: str) -> int | None:
        return next((i for i, d in self._drafts.items() if d.id == call_id), None)

    def add(self, index: int, *, call_id: str = "", name: str = "", arguments: str = "") -> None:
        draft = self._drafts.setdefault(index, _Draft())
        if call_id:
            draft.id = call_id
        if name:
            draft.name = name
        if arguments:
            draft.pieces.append(arguments)

    def append(self, *, call_id: str, name: str, arguments: Any) -> None:
        """A whole call (Gemini, Ollama), after the ones before it."""
        self.add(self.next_index(), call_id=call_id, name=name, arguments=arguments_json(arguments))

    def calls(self) -> tuple[ToolCall, ...]:
        # A call with no arguments at all is sent as "{}" by OpenAI; do the same for all.
        return tuple(
            ToolCall(i, d.id, d.name, "".join(d.pieces) or "{}")
            for i, d in sorted(self._drafts.items())
        )


class UsageTracker:
    """Token counts as running totals: a count the upstream leaves out keeps its last value,
    and a report that changes nothing is not sent again."""

    def __init__(self) -> None:
        self.last = Usage()

    def report(self, input_tokens: int | None, output_tokens: int | None) -> list[Usage]:
        new = Usage(
            self.last.input_tokens if input_tokens is None else input_tokens,
            self.last.output_tokens if output_tokens is None else output_tokens,
        )
        if new == self.last:
            return []
        self.last = new
        return [new]


# Error type names → the HTTP status they stand for, when an in-stream error carries a type
# but no usable status. OpenAI: https://platform.openai.com/docs/guides/error-codes ;
# Anthropic: https://docs.anthropic.com/en/api/errors ; Google RPC status names:
# https://cloud.google.com/apis/design/errors#handling_errors
_KIND_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "rate_limit_exceeded": 429,
    "insufficient_quota": 429,
    "server_error": 500,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "RESOURCE_EXHAUSTED": 429,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}

MAX_MESSAGE = 300


def short(text: str) -> str:
    """An upstream message fit for the UI: one line, bounded."""
    text = " ".join(text.split())
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1] + "…"


def error_from(error: Any) -> ProviderError:
    """An error object the upstream sent inside a 200 stream, as our type.

    A status in 400-599 (``status_code``, ``code``, numeric ``status``) wins; else a known
    type name (``type``, ``code``, ``status``); else an ``UpstreamError`` with no status.
    """
    fields = obj(error)
    message = short(string(error) or string(fields.get("message")))
    message = message or "the upstream reported an error mid-stream"
    for key in ("status_code", "code", "status"):
        status = count(fields.get(key))
        if status is not None and 400 <= status < 600:
            return error_for_status(status, message)
    for key in ("type", "code", "status"):
        status = _KIND_STATUS.get(string(fields.get(key)))
        if status is not None:
            return error_for_status(status, message)
    return UpstreamError(message)


def names_in(body: bytes, list_key: str, name_key: str) -> list[str]:
    """The ``name_key`` of each object in ``body[list_key]``: a model list response."""
    return [
        name
        for item in objs(load_object(body).get(list_key))
        if (name := string(item.get(name_key)))
    ]
