"""The stream API: create, follow, stop and look at streams. Thin: the engine does the work."""

from __future__ import annotations

from collections.abc import AsyncIterator

import trio
from quart import Blueprint, Response, jsonify, request

from app.engine import ConversationPlan, ShuttingDown, SlotPlan, Stream, TooManyStreams
from app.engine.hub import Unavailable
from app.engine.stream import StreamHandle

from . import planning
from .bodies import parse_skip, parse_stop_body
from .context import chorus, json_body, owner
from .errors import ApiError, invalid, not_found

bp = Blueprint("streams", __name__)

STOP_WAIT = 2.0  # seconds the stop call waits for its slots to end


@bp.post("/v1/streams")
async def create_stream() -> Response:
    who = owner()
    ch = chorus()
    plans, conversation = planning.plan_body(await json_body(), ch.catalog, ch.config.server)
    wants_sse = "text/event-stream" in request.headers.get("Accept", "")
    stream = await open_stream(who, plans, reader=wants_sse, conversation=conversation)
    if wants_sse:
        return sse_response(stream.follow(0, attached=True), stream)
    response = jsonify({
        "id": stream.id,
        "events_url": f"/v1/streams/{stream.id}/events",
        "stop_url": f"/v1/streams/{stream.id}/stop",
        "slots": [{"slot": s.slot, "model": s.model, "label": s.plan.label}
                  for s in stream.slots],
    })
    response.status_code = 201
    response.headers["Location"] = f"/v1/streams/{stream.id}"
    return response


async def open_stream(who: str, plans: list[SlotPlan], *, reader: bool,
                      resumable: bool = True, conversation: ConversationPlan | None = None
                      ) -> Stream:
    """``hub.open``, with its refusals as HTTP errors: 429 at a stream limit (total or per
    key), 503 while the server shuts down; both with ``Retry-After``."""
    ch = chorus()
    try:
        return await ch.hub.open(who, plans, reader=reader, resumable=resumable,
                                 conversation=conversation)
    except ShuttingDown as exc:
        ch.metrics.rejected.labels("shutting_down").inc()
        raise ApiError(503, "unavailable", str(exc), headers={"Retry-After": "5"}) from exc
    except Unavailable as exc:
        ch.metrics.rejected.labels("state").inc()
        raise ApiError(503, "unavailable", str(exc), headers={"Retry-After": "2"}) from exc
    except TooManyStreams as exc:
        ch.metrics.rejected.labels("streams").inc()
        raise ApiError(429, "rate_limited", str(exc), headers={"Retry-After": "5"}) from exc


async def _stream_or_404(stream_id: str) -> StreamHandle:
    """The stream, on this instance or (with shared state) on any; 404 if there is none
    of that id for this key, 503 if the shared state cannot be asked."""
    try:
        stream = await chorus().hub.find(stream_id, owner())
    except Unavailable as exc:
        raise ApiError(503, "unavailable", str(exc), headers={"Retry-After": "2"}) from exc
    if stream is None:
        raise not_found(f"no stream {stream_id!r} (it may have expired)")
    return stream


@bp.get("/v1/streams/<stream_id>/events")
async def stream_events(stream_id: str) -> Response:
    stream = await _stream_or_404(stream_id)
    raw = request.headers.get("Last-Event-ID") or request.args.get("last_event_id") or "0"
    try:
        after = int(raw)
        if after < 0:
            raise ValueError(raw)
    except ValueError as exc:
        raise invalid("Last-Event-ID must be a non-negative integer", "Last-Event-ID") from exc
    last = stream.last_id
    if after > last:  # an id this stream never sent: the client has the wrong stream
        raise invalid(f"Last-Event-ID {after} is past this stream's last event ({last}); "
                      "resume from an id this stream sent, or 0 for all of it",
                      "Last-Event-ID")
    return sse_response(stream.follow(after), stream)


@bp.post("/v1/streams/<stream_id>/stop")
async def stop_stream(stream_id: str) -> Response:
    stream = await _stream_or_404(stream_id)
    data = await json_body(empty={})
    slots = parse_stop_body(data, len(stream.slots))
    skip = parse_skip(data, stream.conversation is not None)
    if skip:
        stream.skip()
    else:
        stream.stop(slots, "user")
    with trio.move_on_after(STOP_WAIT):
        await (stream.wait_skipped() if skip else stream.wait_ended(slots))
    return jsonify({"id": stream.id, "slots": [s.summary() for s in stream.slots]})


@bp.get("/v1/streams/<stream_id>")
async def snapshot(stream_id: str) -> Response:
    return jsonify(await (await _stream_or_404(stream_id)).snapshot())


def sse_response(body: AsyncIterator[bytes], stream: StreamHandle) -> Response:
    """``body`` as an event stream, written by Quart from the response's own task."""
    response = Response(body, status=200, headers={
        "Content-Type": "text/event-stream; charset=utf-8",
        "Cache-Control": "no-cache",
        "X-Accel-Buffering": "no",  # tell nginx-like proxies not to buffer the stream
        "X-Chorus-Stream-Id": stream.id,
    })
    response.timeout = None  # Quart's default 60 s would cut long answers
    return response
