"""The stream API: create, follow, stop and look at streams. Thin: the engine does the work."""

from __future__ import annotations

from collections.abc import AsyncIterator

import trio
from quart import Blueprint, Response, jsonify, request

from app.catalog import UnknownModel
from app.engine import (
    ConversationPlan,
    ManagerPlan,
    ShuttingDown,
    SlotPlan,
    Speaker,
    Stream,
    TooManyStreams,
)
from app.engine.hub import Unavailable
from app.engine.stream import StreamHandle
from app.limits import cap_max_tokens, check_messages

from .bodies import (
    PASS_THROUGH_ROLES,
    ConversationBody,
    StreamBody,
    parse_skip,
    parse_stop_body,
    parse_stream_body,
)
from .context import chorus, json_body, owner
from .errors import ApiError, invalid, not_found

bp = Blueprint("streams", __name__)

STOP_WAIT = 2.0  # seconds the stop call waits for its slots to end


@bp.post("/v1/streams")
async def create_stream() -> Response:
    who = owner()
    ch = chorus()
    body = parse_stream_body(await json_body(), ch.config.server.max_slots, ch.catalog.group,
                             max_rounds=ch.config.server.max_rounds)
    conversation = None
    if body.conversation is not None:
        plans = plan_slots(body, "participants[{i}]")
        conversation = plan_conversation(body, body.conversation, plans)
    else:
        plans = plan_slots(body)
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


def plan_slots(body: StreamBody, target_param: str = "models[{i}]") -> list[SlotPlan]:
    """Each target's routes, with the server's limits on history and output tokens applied
    (``app.limits``). Errors name target ``i`` as ``target_param`` says: the request field
    the caller's API calls it."""
    ch = chorus()
    catalog, server = ch.catalog, ch.config.server
    seen: dict[str, int] = {}
    plans = []
    for i, target in enumerate(body.targets):
        where = target_param.format(i=i)
        messages = target.messages if target.messages is not None else body.messages
        check_messages(messages, server.max_messages, server.max_message_chars,
                       "messages" if target.messages is None else f"{where}.messages")
        params = cap_max_tokens({**body.params, **target.params}, server.max_tokens)
        try:
            routes = catalog.route(target.model, messages, params, target.fallbacks)
        except UnknownModel as exc:
            raise ApiError(400, "unknown_model", str(exc), where) from exc
        for route in routes:
            for m in messages:
                allowed = PASS_THROUGH_ROLES.get(m.role)
                if allowed is not None and route.provider.config.type not in allowed:
                    raise invalid(f"role {m.role!r} is not supported by {route.ref}", where)
        seen[target.model] = seen.get(target.model, 0) + 1
        label = target.label or (target.model if seen[target.model] == 1
                                 else f"{target.model} #{seen[target.model]}")
        plans.append(SlotPlan(i, label, routes))
    return plans


MANAGER_PARAMS = {"max_tokens": 64}  # a pick is one name: a short answer, a small bill


def plan_conversation(body: StreamBody, talk: ConversationBody, plans: list[SlotPlan]
                      ) -> ConversationPlan:
    """The participants' plans (resolved once, here) as speakers, and the manager's routes."""
    manager = None
    if talk.manager is not None:
        try:
            routes = chorus().catalog.route(talk.manager, body.messages, MANAGER_PARAMS)
        except UnknownModel as exc:
            raise ApiError(400, "unknown_model", str(exc), "manager.model") from exc
        manager = ManagerPlan(routes, talk.manager_system)
    speakers = tuple(Speaker(plan, system) for plan, system in zip(plans, talk.systems,
                                                                      strict=True))
    return ConversationPlan(speakers, body.messages, talk.rounds, talk.turn_order, manager,
                            talk.stop_on_error)


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
