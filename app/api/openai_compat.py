"""OpenAI's Chat Completions API in front of the engine: ``POST /v1/chat/completions``.

One request is one stream of ``n`` slots of the same model (or one slot per member of a
``group:NAME``, each choice naming its model), run by the same hub as
``/v1/streams`` (same limits, retries and fallbacks). ``chat_body.py`` checks the request,
``completion.py`` turns the stream's events into OpenAI's shapes; this module only moves
them. A client that leaves stops the upstreams at once: an OpenAI client cannot resume,
so there is no grace, and nothing of the stream is kept once it ends.
"""

from __future__ import annotations

from quart import Blueprint, Response, jsonify

from app.catalog import UnknownModel
from app.engine import LogEntry, Reader, Stream
from app.engine.wire import PING

from .bodies import StreamBody, Target
from .chat_body import parse_chat_body
from .completion import DONE, Completion, encode_chunk, openai_error
from .context import chorus, json_body, owner
from .errors import ApiError, invalid
from .planning import plan_slots
from .streams import open_stream, sse_response

bp = Blueprint("openai_compat", __name__)


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
    group = ch.catalog.is_group(chat.model)
    targets = _group_targets(chat.model, chat.n) if group else (Target(chat.model),) * chat.n
    plans = plan_slots(StreamBody(targets, chat.messages, chat.params), ch.catalog,
                       ch.config.server, "model")
    stream = await open_stream(who, plans, reader=True, resumable=False)
    completion = Completion(f"chatcmpl-{stream.id}", chat.model, int(stream.created),
                            [p.model for p in plans], include_usage=chat.include_usage,
                            name_choices=group)
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


def _group_targets(name: str, n: int) -> tuple[Target, ...]:
    """``group:NAME``'s members, one choice each (``choices[].index`` = member)."""
    if n != 1:
        raise invalid("'n' cannot be combined with a group: each member answers once", "n")
    try:
        refs = chorus().catalog.group(name)
    except UnknownModel as exc:
        raise ApiError(400, "unknown_model", str(exc), "model") from exc
    max_slots = chorus().config.server.max_slots
    if len(refs) > max_slots:
        raise ApiError(400, "too_many_slots", f"{name} has {len(refs)} members; at most "
                       f"{max_slots} per request", "model")
    return tuple(Target(ref) for ref in refs)


class CompletionBody:
    """A streamed completion's SSE body: the stream's events as ``chat.completion.chunk``
    objects, one write per batch of events; ``[DONE]`` at the end, or the error that
    ended the completion, and no ``[DONE]``.

    ``aclose`` (the response ended, or the client left) stops every slot still running,
    closing its upstream, and detaches the reader. Nothing here opens a nursery or a
    cancel scope.
    """

    __slots__ = ("_made", "_over", "_reader", "_stream", "completion")

    def __init__(self, stream: Stream, completion: Completion) -> None:
        self._stream = stream
        self.completion = completion
        self._reader: Reader[LogEntry] = stream.entries(0, attached=True)
        self._made: list[bytes] = []  # chunks made from events read, not yet written
        self._over = False  # the last bytes (``[DONE]`` or the error) are made

    async def start(self, streaming: bool) -> None:
        """Read events until the completion ends or, when ``streaming``, has its first
        chunk."""
        completion = self.completion
        async for batch in self._reader:
            for entry in batch:
                self._made += [encode_chunk(c) for c in completion.feed(entry.event)]
            if (completion.error is not None or completion.finished
                    or (streaming and completion.started)):
                return

    def _take(self) -> bytes:
        """The bytes due now: the chunks made, and the end once reached."""
        data = b"".join(self._made)
        self._made.clear()
        if not self._over:
            completion = self.completion
            if completion.error is not None:
                data += encode_chunk(openai_error(completion.error))
                self._over = True
            elif completion.finished:
                data += DONE
                self._over = True
        return data

    def __aiter__(self) -> CompletionBody:
        return self

    async def __anext__(self) -> bytes:
        while True:
            data = self._take()
            if data:
                return data
            if self._over:
                raise StopAsyncIteration
            batch = await self._reader.__anext__()
            if not batch:
                return PING
            feed = self.completion.feed
            for entry in batch:
                self._made += [encode_chunk(c) for c in feed(entry.event)]

    async def aclose(self) -> None:
        """Safe under cancellation: ``stop`` is synchronous, and so is the reader's
        ``aclose`` in effect (it awaits nothing)."""
        self._stream.stop(None, "disconnect")
        await self._reader.aclose()
