"""OpenAI's Chat Completions API in front of the engine: ``POST /v1/chat/completions``.

One request is one stream of ``n`` slots of the same model, run by the same hub as
``/v1/streams`` (same limits, retries and fallbacks). ``Completion`` turns the stream's
events into OpenAI's shapes and does no I/O; the handler only moves bytes. A client that
leaves stops the upstreams at once: an OpenAI client cannot resume, so there is no grace.
Shapes: https://platform.openai.com/docs/api-reference/chat
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from quart import Blueprint, Response, jsonify

from app.engine import Live, LiveBatch, LogEntry, Stream
from app.engine.wire import PING, encode_data, encode_string, utf8
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

TEXT_KEYS = {"delta": "content", "reasoning": "reasoning_content"}  # event type: delta key
_MARK = "\x00chorus text\x00"  # stands for a text in a chunk made into a template


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

    def keep(self, kind: str, text: str) -> None:
        """A text event's text, for ``result``: the answer's or the reasoning's."""
        (self.text if kind == "delta" else self.reasoning).append(text)


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
        # (slot, event type): a text chunk's bytes before and after its text (``wire``)
        self._around: dict[tuple[int, str], tuple[bytes, bytes]] = {}

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
        if kind in TEXT_KEYS:
            choice.keep(kind, data["text"])
            return [self._chunk(slot, {TEXT_KEYS[kind]: data["text"]})]
        if kind == "model.error":
            self.error = model_error(data["error"])
        elif kind == "model.stopped" and data.get("reason") != "user":
            self.error = ApiError(503, "stopped", f"the model was stopped ({data.get('reason')})")
        elif kind in ("model.done", "model.stopped"):
            return self._finish(slot, data)
        return []  # stream.start, model.start, model.retry: nothing in OpenAI's terms

    def wire(self, kind: str, data: dict[str, Any]) -> bytes:
        """``feed``'s chunks as the SSE body's bytes.

        A text chunk after a choice's first (most of a completion) is its text between
        bytes made once per choice and kind, by encoding such a chunk whole around a
        mark: the same bytes as encoding each chunk, without encoding its nine other
        fields for every token (a tenth of the time, ``bench/findings.md``).
        """
        if kind in TEXT_KEYS and self.error is None and not self.finished:
            slot = data["slot"]
            choice = self.choices[slot]
            if choice.role_sent:
                text = data["text"]
                choice.keep(kind, text)
                around = self._around.get((slot, kind)) or self._template(slot, kind)
                return b"%s%s%s" % (around[0], utf8(encode_string(text)), around[1])
        return b"".join([_data(c) for c in self.feed(kind, data)])

    def _template(self, slot: int, kind: str) -> tuple[bytes, bytes]:
        """The bytes around the text of ``slot``'s text chunks of ``kind`` (its role sent:
        ``_chunk`` changes nothing then)."""
        before, after = _data(self._chunk(slot, {TEXT_KEYS[kind]: _MARK})).split(
            encode_string(_MARK).encode())
        self._around[slot, kind] = before, after
        return before, after

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


class ChunkSink(Protocol):
    """Where a response's bytes go without waiting, once the HTTP layer can write them so
    (``app/tcp.py``'s ``ChunkOffers``)."""

    def offer_chunk(self, data: bytes) -> bool:
        """Write ``data`` now, or refuse it (``False``: none of it was written)."""
        ...

    @property
    def behind(self) -> bool:
        """Part of what ``offer_chunk`` took is not written yet."""
        ...

    async def flush(self) -> None:
        """Write what ``offer_chunk`` took and could not write at once."""
        ...


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
    body = CompletionBody(stream, completion)
    try:
        # Streaming or not, wait for the first chunk: until then an error can still be
        # the response's status, as OpenAI's own API does it.
        await body.start(chat.stream)
    except BaseException:
        await body.aclose()
        raise
    if not completion.started or not chat.stream:
        await body.aclose()
        if completion.error is not None:
            raise completion.error
        response = jsonify(completion.result())
        response.headers["X-Chorus-Stream-Id"] = stream.id
        return response
    return sse_response(body, stream)


class CompletionBody:
    """A streamed completion's SSE body: the stream's events as ``chat.completion.chunk``
    objects, one write per batch of events; ``[DONE]`` at the end, or the error that
    ended the completion, and no ``[DONE]``.

    Once the response can be written without waiting (``write_live``, on HTTP/1.1), this
    is also its reader's ``LiveWriter``: the merge task feeds a caught-up reader's new
    events to the completion and writes their chunks at once, as ``/v1/streams`` does
    with the events' own bytes, and the response's task sleeps on. Both ways feed the one
    ``Completion`` past one cursor (``_fed``), so events that an offer fed and could not
    write are not fed twice when the reader's task reads them from the log: their chunks
    wait in ``_unsent`` and go out first. The end (the completion finished or failed) is
    always the reader's task's to write, since the response ends with it.

    ``aclose`` (the response ended, or the client left) stops every slot still running,
    closing its upstream, and leaves the log. Nothing here opens a nursery or a cancel
    scope. (Should the client leave in the instant before Quart takes the body, nothing
    closes it: ``entries`` is then finalised when dropped, the reader leaves, and the
    stream's ``resume_grace`` stops the slots.)
    """

    __slots__ = ("_batches", "_fed", "_live", "_made", "_over", "_sink", "_stream",
                 "_unsent", "completion")

    def __init__(self, stream: Stream, completion: Completion) -> None:
        self._stream = stream
        self.completion = completion
        self._live = Live()
        self._batches = stream.entries(0, attached=True, live=self._live)
        self._sink: ChunkSink | None = None
        self._fed = 0  # the id of the last event fed to ``completion``
        self._made: list[bytes] = []  # the chunks of fed events, not yet written
        self._unsent = b""  # written by neither way yet, and due before ``_made``
        self._over = False  # the last bytes (``[DONE]`` or the error) are made

    async def start(self, streaming: bool) -> None:
        """Feed events until the completion ends or, when ``streaming``, has its first
        chunk."""
        completion = self.completion
        async for batch in self._batches:
            self._feed(batch)
            if (completion.error is not None or completion.finished
                    or (streaming and completion.started)):
                return

    def _feed(self, entries: list[LogEntry]) -> None:
        fed, wire, made = self._fed, self.completion.wire, self._made
        for entry in entries:
            if entry.id > fed:
                made.append(wire(entry.type, entry.data))
        if entries:
            self._fed = max(fed, entries[-1].id)

    def _take(self) -> bytes:
        """The bytes due now: what is unsent, the chunks made, and the end once reached."""
        data = self._unsent + b"".join(self._made)
        self._unsent = b""
        self._made.clear()
        if not self._over:
            completion = self.completion
            if completion.error is not None:
                data += _data(openai_error(completion.error))
                self._over = True
            elif completion.finished:
                data += DONE
                self._over = True
        return data

    # -- the response's own reads -----------------------------------------------------------

    def __aiter__(self) -> CompletionBody:
        return self

    async def __anext__(self) -> bytes:
        while True:
            data = self._take()
            if data:
                return data
            if self._over:
                raise StopAsyncIteration
            batch = await self._batches.__anext__()
            if not batch:
                return PING
            self._feed(batch)

    async def aclose(self) -> None:
        """Safe under cancellation: ``stop`` is synchronous, and closing ``entries`` runs
        only its synchronous ``finally`` (it is paused at ``yield``, or has ended)."""
        self._stream.stop(None, "disconnect")
        await self._batches.aclose()

    # -- the merge task's writes (``LiveWriter``) ---------------------------------------

    def write_live(self, sink: ChunkSink) -> None:
        self._sink = sink
        self._live.writer = self

    def offer(self, batch: LiveBatch) -> bool:
        if self._over or self._sink is None:
            return False
        self._feed(batch.entries())
        data = self._take()
        if self._over or (data and not self._sink.offer_chunk(data)):
            self._unsent = data  # for the reader's task, which reads this batch anew
            return False
        return True

    @property
    def behind(self) -> bool:
        return self._sink is not None and self._sink.behind

    async def flush(self) -> None:
        if self._sink is not None:
            await self._sink.flush()


def _data(obj: dict[str, Any]) -> bytes:
    return utf8(f"data: {encode_data(obj)}\n\n")
