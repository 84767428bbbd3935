"""The frames between Chorus and an agent: one JSON object per WebSocket text message.

    server -> agent   challenge {nonce} · welcome {heartbeat} · job {id, model, request}
                      · cancel {id} · ping
    agent -> server   hello {name, mac} · announce {models, capacity}
                      · events {id, events: [...]} · end {id} · error {id, error} · ping

An event is a small object: ``{"text": s}``, ``{"reasoning": s}``,
``{"usage": [input, output]}`` or ``{"finish": reason, "tool_calls": [...]}``. An error
carries the ``ProviderError`` fields, so the slot ends with the type the agent's upstream
gave. Pure: no I/O; a malformed frame raises ``FrameError``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from .. import errors
from ..base import ChatRequest, ImagePart, Message
from ..errors import ProviderError, RateLimitError, UpstreamError
from ..events import Finish, ProviderEvent, ReasoningDelta, TextDelta, ToolCall, Usage

Frame = dict[str, Any]

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


def field(frame: Mapping[str, Any], name: str, kind: type) -> Any:
    """``frame[name]``, checked to be a ``kind``."""
    value = frame.get(name)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
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
    try:
        if "text" in data:
            return TextDelta(str(data["text"]))
        if "reasoning" in data:
            return ReasoningDelta(str(data["reasoning"]))
        if "usage" in data:
            given, taken = data["usage"]
            return Usage(_count(given), _count(taken))
        if "finish" in data:
            calls = tuple(ToolCall(int(i), None if c is None else str(c), str(n), str(a))
                          for i, c, n, a in data.get("tool_calls") or ())
            return Finish(str(data["finish"]), calls)
    except (TypeError, ValueError) as exc:
        raise FrameError("an event has the wrong shape") from exc
    raise FrameError("an event of an unknown kind")


def _count(value: Any) -> int | None:
    return None if value is None else int(value)


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
    try:
        messages = [Message(str(m["role"]), str(m["content"]),
                            tuple(ImagePart(str(u), d) for u, d in m.get("images") or ()))
                    for m in data.get("messages") or ()]
    except (KeyError, TypeError, ValueError) as exc:
        raise FrameError("a job's messages have the wrong shape") from exc
    params = data.get("params", {})
    if not isinstance(params, dict):
        raise FrameError("a job's params must be an object")
    return ChatRequest(model, tuple(messages), params)


def events_frame(job: str, events: Sequence[dict[str, Any]]) -> Frame:
    return {"type": "events", "id": job, "events": list(events)}
