"""A Chat Completions request body, checked: JSON in, a typed ``ChatBody`` out.

Pure, like ``bodies.py``. Unknown fields pass through to the provider as parameters, as
OpenAI clients send many Chorus does not read.
https://platform.openai.com/docs/api-reference/chat/create
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from providers import Message

from .bodies import parse_messages, parse_params
from .errors import ApiError, invalid

# Keys of the request body that Chorus reads itself; every other one is a model parameter.
OWN_KEYS = frozenset({"model", "messages", "stream", "stream_options", "n"})


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
