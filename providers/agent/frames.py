"""The frames between Chorus and an agent: one JSON object per WebSocket text message.

    server -> agent   challenge {nonce} · welcome {heartbeat}
                      · job {id, model, window, request} · credit {id, events}
                      · cancel {id} · ping
    agent -> server   hello {name, mac} · announce {models, capacity}
                      · events {id, events: [...]} · end {id} · error {id, error} · ping

An event is a small object: ``{"text": s}``, ``{"reasoning": s}``,
``{"usage": [input, output]}`` or ``{"finish": reason, "tool_calls": [...]}``. An error
carries the ``ProviderError`` fields, so the slot ends with the type the agent's upstream
gave. Pure: no I/O.

Each side reads every frame through ``decode``, the one check at the boundary: a frame of a
type not expected there, lacking a field its type needs, or carrying an event or a request
of the wrong shape raises ``FrameError`` (the reader then closes the connection with 1002),
so nothing past the reader meets a malformed frame.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .. import errors
from ..base import ChatRequest, ImagePart, Message
from ..errors import ProviderError, RateLimitError, UpstreamError
from ..events import Finish, ProviderEvent, ReasoningDelta, TextDelta, ToolCall, Usage

Frame = dict[str, Any]

MAX_CAPACITY = 1024  # jobs one agent may announce it runs at once

# The fields each frame type needs, and their JSON types (checked by ``field``).
SHAPES: dict[str, dict[str, type]] = {
    "challenge": {"nonce": str},
    "hello": {"name": str, "mac": str},
    "welcome": {},  # its heartbeat, a positive number, is checked by ``_welcome``
    "announce": {"models": list, "capacity": int},
    "job": {"id": str, "model": str, "window": int},  # its request: ``decode_request``
    "events": {"id": str, "events": list},
    "credit": {"id": str, "events": int},
    "end": {"id": str},
    "error": {"id": str, "error": dict},
    "cancel": {"id": str},
    "ping": {},
}
FROM_AGENT = ("events", "end", "error", "ping")  # what an announced agent may send
FROM_SERVER = ("job", "credit", "cancel", "ping")  # what a welcomed agent may be sent

_ERRORS: dict[str, type[ProviderError]] = {
    cls.type: cls for cls in (errors.AuthError, RateLimitError, errors.TimeoutError_,
                              errors.BadRequestError, UpstreamError, errors.TransportError,
                              errors.ProtocolError)
}


class FrameError(ValueError):
    """A frame that is not JSON, not an object, or lacks what its type needs."""


def dumps(frame: Mapping[str, Any]) -> str:
    return json.dumps(frame, separators=(",", ":"), ensure_ascii=False)


def loads(text: str | bytes) -> Frame:
    try:
        frame = json.loads(text)
    except ValueError as exc:
        raise FrameError("a frame is not JSON") from exc
    if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
        raise FrameError("a frame must be a JSON object with a string 'type'")
    return frame


def _is_number(value: Any, kind: type | tuple[type, ...] = int) -> bool:
    """A JSON number of ``kind``: ``True`` and ``False`` are ints to Python, not here."""
    return isinstance(value, kind) and not isinstance(value, bool)


def field(frame: Mapping[str, Any], name: str, kind: type) -> Any:
    """``frame[name]``, checked to be a ``kind``."""
    value = frame.get(name)
    if not (_is_number(value, kind) if kind is int else isinstance(value, kind)):
        raise FrameError(f"a {frame.get('type')!r} frame needs {name!r} ({kind.__name__})")
    return value


def encode_event(event: ProviderEvent) -> dict[str, Any]:
    if isinstance(event, TextDelta):
        return {"text": event.text}
    if isinstance(event, ReasoningDelta):
        return {"reasoning": event.text}
    if isinstance(event, Usage):
        return {"usage": [event.input_tokens, event.output_tokens]}
    return {"finish": event.reason,
            "tool_calls": [[c.index, c.id, c.name, c.arguments] for c in event.tool_calls]}


def decode_event(data: Any) -> ProviderEvent:
    if not isinstance(data, dict):
        raise FrameError("an event must be an object")
    if "text" in data:
        return TextDelta(_text(data, "text"))
    if "reasoning" in data:
        return ReasoningDelta(_text(data, "reasoning"))
    if "usage" in data:
        usage = data["usage"]
        if not (isinstance(usage, list) and len(usage) == 2 and all(map(_is_count, usage))):
            raise FrameError("a usage event needs [input, output]: token counts or nulls")
        return Usage(*usage)
    if "finish" in data:
        calls = data.get("tool_calls") or []
        if not (isinstance(calls, list) and all(map(_is_call, calls))):
            raise FrameError("a finish event's tool_calls must be lists of [index, id or "
                             "null, name, arguments]")
        return Finish(_text(data, "finish"), tuple(ToolCall(*call) for call in calls))
    raise FrameError("an event of an unknown kind")


def _text(data: Mapping[str, Any], name: str) -> str:
    value = data[name]
    if not isinstance(value, str):
        raise FrameError(f"a {name!r} event needs a string")
    return value


def _is_count(value: Any) -> bool:
    return value is None or (_is_number(value) and value >= 0)


def _is_call(call: Any) -> bool:
    return (isinstance(call, list) and len(call) == 4 and _is_number(call[0])
            and isinstance(call[1], str | None)
            and isinstance(call[2], str) and isinstance(call[3], str))


def encode_error(exc: ProviderError) -> dict[str, Any]:
    out: dict[str, Any] = {"type": exc.type, "message": exc.message, "status": exc.status}
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        out["retry_after"] = retry_after
    return out


def decode_error(data: Any, where: str) -> ProviderError:
    """The agent's error as the same ``ProviderError`` type, its message saying which
    agent; an unreadable one is an ``UpstreamError``."""
    if not isinstance(data, dict):
        return UpstreamError(f"agent {where} failed without saying why")
    cls = _ERRORS.get(str(data.get("type")), UpstreamError)
    message = f"agent {where}: {data.get('message') or 'failed'}"
    status = data.get("status") if isinstance(data.get("status"), int) else None
    if cls is RateLimitError:
        after = data.get("retry_after")
        return RateLimitError(message, status=status,
                              retry_after=float(after) if isinstance(after, int | float)
                              else None)
    return cls(message, status=status)


def encode_request(request: ChatRequest) -> dict[str, Any]:
    return {
        "messages": [{"role": m.role, "content": m.content,
                      "images": [[i.url, i.detail] for i in m.images]}
                     for m in request.messages],
        "params": dict(request.params),
    }


def decode_request(model: str, data: Any) -> ChatRequest:
    if not isinstance(data, dict):
        raise FrameError("a job's request must be an object")
    messages = data.get("messages") or []
    if not (isinstance(messages, list) and all(map(_is_message, messages))):
        raise FrameError("a job's messages must be objects with a string role and content, "
                         "and images as [url, detail or null]")
    params = data.get("params", {})
    if not isinstance(params, dict):
        raise FrameError("a job's params must be an object")
    return ChatRequest(model, tuple(
        Message(m["role"], m["content"], tuple(ImagePart(u, d) for u, d in m.get("images")
                                               or ()))
        for m in messages), params)


def _is_message(data: Any) -> bool:
    if not (isinstance(data, dict) and isinstance(data.get("role"), str)
            and isinstance(data.get("content"), str)):
        return False
    images = data.get("images") or []
    return isinstance(images, list) and all(
        isinstance(i, list) and len(i) == 2 and isinstance(i[0], str)
        and isinstance(i[1], str | None) for i in images)


def decode(text: str | bytes, *kinds: str) -> Frame:
    """The frame in ``text``: one of ``kinds``, with the fields its type needs, its parts
    decoded (an events frame's ``events`` as ``ProviderEvent``s, a job's ``request`` as a
    ``ChatRequest``). ``FrameError`` for anything else."""
    frame = loads(text)
    kind = frame["type"]
    if kind not in kinds:
        expected = " or ".join(repr(k) for k in kinds)
        raise FrameError(f"a {kind!r} frame where {expected} was expected")
    for name, of in SHAPES[kind].items():
        field(frame, name, of)
    check = _PARTS.get(kind)
    if check is not None:
        check(frame)
    return frame


def _welcome(frame: Frame) -> None:
    heartbeat: Any = frame.get("heartbeat")
    if not _is_number(heartbeat, (int, float)) or not heartbeat > 0:
        raise FrameError("a 'welcome' frame needs a positive 'heartbeat' (seconds)")


def _announce(frame: Frame) -> None:
    if (not all(isinstance(m, str) and m for m in frame["models"])
            or not 1 <= frame["capacity"] <= MAX_CAPACITY):
        raise FrameError("an announce needs model names and a capacity from 1 to "
                         f"{MAX_CAPACITY}")


def _job(frame: Frame) -> None:
    if frame["window"] < 1:
        raise FrameError("a job's window must be at least one event")
    frame["request"] = decode_request(frame["model"], frame.get("request"))


def _events(frame: Frame) -> None:
    frame["events"] = [decode_event(data) for data in frame["events"]]


_PARTS: dict[str, Callable[[Frame], None]] = {
    "welcome": _welcome, "announce": _announce, "job": _job, "events": _events,
}


def events_frame(job: str, events: Sequence[dict[str, Any]]) -> Frame:
    return {"type": "events", "id": job, "events": list(events)}
