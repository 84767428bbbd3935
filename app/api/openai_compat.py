"""OpenAI's Chat Completions API in front of the engine: ``POST /v1/chat/completions``.

One request is one stream of ``n`` slots of the same model, run by the same hub as
``/v1/streams`` (same limits, retries and fallbacks). ``Completion`` turns the stream's
events into OpenAI's shapes and does no I/O; the handler only moves bytes. A client that
leaves stops the upstreams at once: an OpenAI client cannot resume, so there is no grace.
Shapes: https://platform.openai.com/docs/api-reference/chat
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from quart import Blueprint, Response, jsonify

from app.engine import LogEntry, Stream
from app.engine.wire import PING, encode_data
from providers import Message

from .bodies import StreamBody, Target, parse_messages, parse_params
from .context import chorus, json_body, owner
from .errors import ApiError, invalid
from .streams import open_stream, plan_slots, sse_response

bp = Blueprint("openai_compat", __name__)

# Keys of the request body that Chorus reads itself; every other one is a model parameter.
OWN_KEYS = frozenset({"model", "messages", "stream", "stream_options", "n"})

# Before the first chunk, a model's error becomes the response's status (DESIGN.md).
ERROR_STATUS = {
    "bad_request": 400, "rate_limit": 429, "auth": 502, "upstream": 502, "connection": 502,
    "protocol": 502, "timeout": 504, "stopped": 503,
}

DONE = b"data: [DONE]\n\n"

Entries = AsyncGenerator[list[LogEntry], None]


@dataclass(frozen=True, slots=True)
class ChatBody:
    model: str
    messages: tuple[Message, ...]
    params: dict[str, Any]
    n: int = 1
    stream: bool = False
    include_usage: bool = False


def parse_chat_body(data: Any, max_slots: int) -> ChatBody:
    """Check a Chat Completions body; unknown fields pass through to the provider."""
    if not isinstance(data, dict):
        raise invalid("the body must be a JSON object")
    model = data.get("model")
    if not isinstance(model, str) or not model.strip():
        raise invalid("'model' must be a model ref such as 'demo/fast'", "model")
    messages = parse_messages(data.get("messages"), "messages")
    if not messages:
        raise invalid("'messages' must hold at least one message", "messages")
    stream = _optional(data, "stream", bool, False, "true or false")
    options = _optional(data, "stream_options", dict, {}, "an object")
    include_usage = _optional(options, "include_usage", bool, False, "true or false")
    n = _optional(data, "n", int, 1, "a positive integer")
    if n < 1:
        raise invalid("'n' must be a positive integer", "n")
    if n > max_slots:
        raise ApiError(400, "too_many_slots", f"n={n} asked for; at most {max_slots}", "n")
    try:
        params = parse_params({k: v for k, v in data.items()
                               if k not in OWN_KEYS and v is not None}, "params")
    except ApiError as exc:  # name the field as OpenAI clients know it: "temperature"
        raise invalid(exc.message.removeprefix("params."),
                      (exc.param or "").removeprefix("params.") or None) from exc
    return ChatBody(model.strip(), messages, params, n, stream, include_usage)


def _optional(data: dict[str, Any], key: str, kind: type, default: Any, what: str) -> Any:
    value = data.get(key)
    if value is None:
        return default
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise invalid(f"'{key}' must be {what}", key)
    return value


def openai_error(exc: ApiError) -> dict[str, Any]:
    """OpenAI's error object, keeping Chorus's keys: ``type`` is Chorus's error type, and
    ``code`` repeats it, since OpenAI clients look there for a machine-readable reason."""
    return {"error": {"message": exc.message, "type": exc.type, "param": exc.param,
                      "code": exc.type}}


def model_error(error: dict[str, Any]) -> ApiError:
    """A slot's ``model.error`` as the response's error (status per ``ERROR_STATUS``)."""
    kind = str(error.get("type", "internal"))
    return ApiError(ERROR_STATUS.get(kind, 500), kind, str(error.get("message", "")))


@dataclass(slots=True)
class _Choice:
    text: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    finish_reason: str | None = None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    usage: dict[str, Any] = field(default_factory=dict)
    role_sent: bool = False


class Completion:
    """One chat completion as built from its stream's events.

    ``feed`` returns the ``chat.completion.chunk`` objects one event makes (streaming);
    ``result`` is the whole ``chat.completion`` (non-streaming). The first ``model.error``,
    or a stop that the user did not ask for (shutdown), ends it: ``error`` holds why, and
    later events count for nothing. ``stream.done`` sets ``finished``.
    """

    def __init__(self, completion_id: str, model: str, created: int, n: int,
                 include_usage: bool = False) -> None:
        self.id = completion_id
        self.model = model
        self.created = created
        self.include_usage = include_usage
        self.choices = [_Choice() for _ in range(n)]
        self.error: ApiError | None = None
        self.started = False  # a chunk has been made: the response's status is sent
        self.finished = False

    def feed(self, kind: str, data: dict[str, Any]) -> list[dict[str, Any]]:
        if self.error is not None or self.finished:
            return []
        if kind == "stream.done":
            self.finished = True
            return [self._usage_chunk()] if self.include_usage else []
        if "slot" not in data:
            return []
        slot = data["slot"]
        choice = self.choices[slot]
        if kind in ("delta", "reasoning"):
            (choice.text if kind == "delta" else choice.reasoning).append(data["text"])
            key = "content" if kind == "delta" else "reasoning_content"
            return [self._chunk(slot, {key: data["text"]})]
        if kind == "model.error":
            self.error = model_error(data["error"])
        elif kind == "model.stopped" and data.get("reason") != "user":
            self.error = ApiError(503, "stopped", f"the model was stopped ({data.get('reason')})")
        elif kind in ("model.done", "model.stopped"):
            return self._finish(slot, data)
        return []  # stream.start, model.start, model.retry: nothing in OpenAI's terms

    def _finish(self, slot: int, data: dict[str, Any]) -> list[dict[str, Any]]:
        choice = self.choices[slot]
        choice.finish_reason = data.get("finish_reason") or "stop"
        choice.usage = data.get("usage") or {}
        choice.tool_calls = [
            {"index": c["index"], "id": c["id"], "type": "function",
             "function": {"name": c["name"], "arguments": c["arguments"]}}
            for c in data.get("tool_calls", ())
        ]
        out = []
        if choice.tool_calls:
            out.append(self._chunk(slot, {"tool_calls": choice.tool_calls}))
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
        chunk["choices"] = [{"index": slot, "delta": delta, "logprobs": None,
                             "finish_reason": finish}]
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
        prompt = sum(c.usage.get("input_tokens") or 0 for c in self.choices)
        completion = sum(c.usage.get("output_tokens") or 0 for c in self.choices)
        return {"prompt_tokens": prompt, "completion_tokens": completion,
                "total_tokens": prompt + completion}

    def result(self) -> dict[str, Any]:
        out = self._head("chat.completion")
        out["choices"] = [self._message(i, c) for i, c in enumerate(self.choices)]
        out["usage"] = self.usage()
        return out

    @staticmethod
    def _message(index: int, choice: _Choice) -> dict[str, Any]:
        text = "".join(choice.text)
        message: dict[str, Any] = {
            "role": "assistant", "content": text or (None if choice.tool_calls else ""),
        }
        if choice.reasoning:
            message["reasoning_content"] = "".join(choice.reasoning)
        if choice.tool_calls:
            message["tool_calls"] = [{k: v for k, v in call.items() if k != "index"}
                                     for call in choice.tool_calls]
        return {"index": index, "message": message, "logprobs": None,
                "finish_reason": choice.finish_reason}


@bp.errorhandler(ApiError)
async def api_error(exc: ApiError) -> Response:
    response = jsonify(openai_error(exc))
    response.status_code = exc.status
    response.headers.update(exc.headers)
    return response


@bp.post("/v1/chat/completions")
async def chat_completions() -> Response:
    who = owner()
    ch = chorus()
    chat = parse_chat_body(await json_body(), ch.config.server.max_slots)
    plans = plan_slots(StreamBody((Target(chat.model),) * chat.n, chat.messages, chat.params),
                       target_param="model")
    stream = await open_stream(who, plans, reader=True)
    completion = Completion(f"chatcmpl-{stream.id}", chat.model, int(stream.created), chat.n,
                            chat.include_usage)
    batches = stream.entries(0, attached=True)  # closed in ``_end``: the reader leaves
    try:
        # Streaming or not, wait for the first chunk: until then an error can still be
        # the response's status, as OpenAI's own API does it.
        first = await _read(batches, completion,
                            lambda: chat.stream and completion.started)
    except BaseException:
        await _end(stream, batches)
        raise
    if not completion.started or not chat.stream:
        await _end(stream, batches)
        if completion.error is not None:
            raise completion.error
        response = jsonify(completion.result())
        response.headers["X-Chorus-Stream-Id"] = stream.id
        return response
    return sse_response(_body(stream, batches, completion, first), stream)


async def _read(batches: Entries, completion: Completion,
                enough: Callable[[], bool]) -> list[dict[str, Any]]:
    """Feed events to ``completion`` until it ends or ``enough()``; return the chunks."""
    chunks: list[dict[str, Any]] = []
    async for batch in batches:
        for entry in batch:
            chunks += completion.feed(entry.type, entry.data)
        if completion.error is not None or completion.finished or enough():
            break
    return chunks


async def _body(stream: Stream, batches: Entries,
                completion: Completion, chunks: list[dict[str, Any]]) -> AsyncIterator[bytes]:
    """The SSE body: each batch of events as one write; an error ends it without [DONE].

    Nothing here opens a nursery or a cancel scope: a client that leaves cancels this
    generator (or closes it at ``yield``), and ``finally`` stops every slot at once. (If it
    leaves in the instant before Quart first reads the body, this generator never runs;
    then ``entries`` is finalised when dropped, the reader leaves, and the stream's
    ``resume_grace`` stops the slots.)
    """
    try:
        while True:
            wire = b"".join([_data(c) for c in chunks])
            if completion.error is not None:
                yield wire + _data(openai_error(completion.error))
                return
            if completion.finished:
                yield wire + DONE
                return
            if wire:
                yield wire
            batch = await anext(batches, None)
            if batch is None:
                return
            if not batch:
                yield PING
            chunks = [c for e in batch for c in completion.feed(e.type, e.data)]
    finally:
        await _end(stream, batches)


async def _end(stream: Stream, batches: Entries) -> None:
    """Stop every slot still running (closing its upstream) and leave the log.

    Safe under cancellation: ``stop`` is synchronous, and closing ``entries`` runs only its
    synchronous ``finally`` (it is paused at ``yield``, or has already ended).
    """
    stream.stop(None, "disconnect")
    await batches.aclose()


def _data(obj: dict[str, Any]) -> bytes:
    return f"data: {encode_data(obj)}\n\n".encode()
