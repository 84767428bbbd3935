"""Request bodies, checked: JSON in, typed values out, or an ``ApiError`` naming the field.

Pure functions of the parsed JSON, so every rule is testable without a server. What a body
may carry is bounded here, before anything else sees it: nesting depth, numbers (finite,
64-bit), output tokens, images (https or base64 data URLs, in user messages).
"""

from __future__ import annotations

import binascii
import difflib
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from app.catalog import UnknownModel
from providers import ImagePart, Message

from .errors import ApiError, invalid

ROLES = frozenset({"system", "user", "assistant"})
# Roles some upstreams accept; they pass through only to providers of these types.
PASS_THROUGH_ROLES = {"developer": frozenset({"openai"}), "tool": frozenset({"openai"})}
MODES = frozenset({"parallel"})
STREAM_FIELDS = ("models", "messages", "params", "mode")  # a /v1/streams body's own keys

MAX_DEPTH = 64  # arrays and objects inside each other; real bodies use under ten
INT_MIN, INT_MAX = -(2**63), 2**63 - 1  # every JSON integer fits a signed 64-bit one
MAX_OUTPUT_TOKENS = 1_000_000  # beyond any model's output; a larger ask is a mistake


@dataclass(frozen=True, slots=True)
class Target:
    model: str
    label: str | None = None
    messages: tuple[Message, ...] | None = None
    params: dict[str, Any] = field(default_factory=dict)
    fallbacks: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class StreamBody:
    targets: tuple[Target, ...]
    messages: tuple[Message, ...]
    params: dict[str, Any]
    mode: str = "parallel"


def parse_json(raw: bytes) -> Any:
    """The body's JSON, with every number finite and 64-bit (``NaN``, ``1e400`` and
    ``10**400`` are refused) and at most ``MAX_DEPTH`` levels of nesting."""
    try:
        data = json.loads(raw, parse_int=_int, parse_float=_float, parse_constant=_constant)
    except RecursionError as exc:  # deeper than the decoder's own stack allows
        raise _too_deep() from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise invalid(f"the body is not valid JSON ({exc})") from exc
    if _depth(data) > MAX_DEPTH:
        raise _too_deep()
    return data


_NUMBERS = ("numbers must be finite, and integers between -2**63 and 2**63-1 "
            "(64-bit)")


def _int(text: str) -> int:
    # The length check comes first: int() of a 5000-digit string is refused by Python
    # itself, and a long one costs time to convert.
    if len(text.lstrip("-")) > 19 or not INT_MIN <= (value := int(text)) <= INT_MAX:
        raise invalid(f"the number {text[:30]}{'…' if len(text) > 30 else ''} is out of "
                      f"range: {_NUMBERS}")
    return value


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise invalid(f"the number {text[:30]} is out of range: {_NUMBERS}")
    return value


def _constant(text: str) -> Any:
    raise invalid(f"{text} is not a JSON number: {_NUMBERS}")


def _too_deep() -> ApiError:
    return invalid(f"the body nests arrays and objects more than {MAX_DEPTH} levels deep")


def _depth(data: Any) -> int:
    """How deep ``data`` nests, walked without recursion (the body may be hostile)."""
    deepest = 0
    todo = [(data, 1)]
    while todo:
        value, level = todo.pop()
        if isinstance(value, dict | list):
            if level > MAX_DEPTH:
                return level
            deepest = max(deepest, level)
            todo.extend((v, level + 1) for v in (value.values() if isinstance(value, dict)
                                                  else value))
    return deepest


Groups = Callable[[str], Sequence[str]]  # "group:NAME" -> its refs (``Catalog.group``)


def parse_stream_body(data: Any, max_slots: int, groups: Groups | None = None) -> StreamBody:
    if not isinstance(data, dict):
        raise invalid("the body must be a JSON object")
    for key in data:
        if key not in STREAM_FIELDS:
            raise invalid(_unknown_field(key), key)
    mode = data.get("mode", "parallel")
    if not isinstance(mode, str) or mode not in MODES:
        raise invalid(f"unknown mode {mode!r}; supported: parallel", "mode")
    models = data.get("models")
    if isinstance(models, str) and models.startswith("group:") and groups is not None:
        try:
            models = list(groups(models))
        except UnknownModel as exc:
            raise ApiError(400, "unknown_model", str(exc), "models") from exc
    if not isinstance(models, list) or not models:
        raise invalid("'models' must be a non-empty list of model refs or targets, or "
                      "'group:NAME'", "models")
    if len(models) > max_slots:
        raise ApiError(400, "too_many_slots",
                       f"{len(models)} targets asked for; at most {max_slots} per stream",
                       "models")
    targets = tuple(_target(item, f"models[{i}]") for i, item in enumerate(models))
    messages = parse_messages(data.get("messages", []), "messages")
    params = parse_params(data.get("params", {}), "params")
    for i, target in enumerate(targets):
        if not (target.messages or messages):
            raise invalid("there are no messages to send: give 'messages', or 'messages' "
                          "in every target", f"models[{i}].messages")
    return StreamBody(targets, messages, params, mode)


def _unknown_field(key: str) -> str:
    """Name the field, and what was probably meant: a typo must not pass silently."""
    message = f"unknown field {key!r}"
    if key == "model":
        return (f"{message}: did you mean 'models'? It takes a list of model refs, "
                "e.g. \"models\": [\"demo/fast\"]")
    if key == "stream":
        return (f"{message}: to have the events in this response, send the header "
                "'Accept: text/event-stream'")
    close = difflib.get_close_matches(key, STREAM_FIELDS, n=1, cutoff=0.6)
    hint = f": did you mean {close[0]!r}?" if close else ""
    return f"{message}{hint} (a stream body has {', '.join(STREAM_FIELDS)})"


def _target(item: Any, where: str) -> Target:
    if isinstance(item, str):
        return Target(_ref(item, where))
    if not isinstance(item, dict):
        raise invalid(f"{where} must be a model ref or an object with 'model'", where)
    unknown = set(item) - {"model", "label", "messages", "params", "fallbacks"}
    if unknown:
        raise invalid(f"{where} has unknown field {sorted(unknown)[0]!r}", where)
    label = item.get("label")
    if label is not None and (not isinstance(label, str) or len(label) > 200):
        raise invalid(f"{where}.label must be a string of at most 200 characters",
                      f"{where}.label")
    messages = None
    if "messages" in item:
        messages = parse_messages(item["messages"], f"{where}.messages")
    fallbacks = item.get("fallbacks", [])
    if not isinstance(fallbacks, list) or not all(isinstance(f, str) for f in fallbacks):
        raise invalid(f"{where}.fallbacks must be a list of model refs", f"{where}.fallbacks")
    return Target(
        model=_ref(item.get("model"), f"{where}.model"), label=label, messages=messages,
        params=parse_params(item.get("params", {}), f"{where}.params"),
        fallbacks=tuple(_ref(f, f"{where}.fallbacks") for f in fallbacks),
    )


def _ref(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 500:
        raise invalid(f"{where} must be a model ref such as 'demo/fast'", where)
    return value.strip()


def parse_messages(value: Any, where: str) -> tuple[Message, ...]:
    if not isinstance(value, list):
        raise invalid(f"{where} must be a list of messages", where)
    out = []
    for i, m in enumerate(value):
        at = f"{where}[{i}]"
        if not isinstance(m, dict):
            raise invalid(f"{at} must be an object with 'role' and 'content'", at)
        role = m.get("role")
        if not isinstance(role, str) or (role not in ROLES and role not in PASS_THROUGH_ROLES):
            raise invalid(f"{at}.role must be one of system, user, assistant", f"{at}.role")
        text, images = _content(m.get("content"), f"{at}.content")
        if images and role != "user":
            raise invalid(f"{at}.content: images may be sent in user messages only",
                          f"{at}.content")
        out.append(Message(role, text, images))
    return tuple(out)


def _content(value: Any, where: str) -> tuple[str, tuple[ImagePart, ...]]:
    """A string, or OpenAI-style parts: text parts (joined) and ``image_url`` parts.
    https://platform.openai.com/docs/api-reference/chat/create#chat-create-messages"""
    if isinstance(value, str):
        return value, ()
    if not isinstance(value, list):
        raise invalid(f"{where} must be a string or a list of parts", where)
    texts = []
    images = []
    for i, part in enumerate(value):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind == "image_url":
            images.append(_image(part.get("image_url"), f"{where}[{i}].image_url"))
        else:
            raise invalid(f"{where}[{i}] must be a text part {{\"type\": \"text\", "
                          "\"text\": …} or an image part {\"type\": \"image_url\", "
                          "\"image_url\": {\"url\": …}}", f"{where}[{i}]")
    return "".join(texts), tuple(images)


_DETAILS = ("low", "high", "auto")


def _image(value: Any, where: str) -> ImagePart:
    """An ``https://`` link or a base64 ``data:image/…`` URL (checked: it is decoded once,
    so a model never gets data it would refuse). Its size is bounded by ``max_body``."""
    url, detail = (value, None) if isinstance(value, str) else (None, None)
    if isinstance(value, dict):
        url, detail = value.get("url"), value.get("detail")
    if detail is not None and detail not in _DETAILS:
        raise invalid(f"{where}.detail must be one of {', '.join(_DETAILS)}", f"{where}.detail")
    if not isinstance(url, str):
        raise invalid(f"{where}.url must be a string", f"{where}.url")
    if url.startswith("data:"):
        image = ImagePart(url, detail)
        media_type, data = image.inline or ("", "")
        head = url[5:].partition(",")[0]
        if not media_type.startswith("image/") or not head.endswith(";base64"):
            raise invalid(f"{where}.url must be a data URL 'data:image/<type>;base64,<data>'",
                          f"{where}.url")
        try:
            binascii.a2b_base64(data, strict_mode=True)
        except binascii.Error as exc:
            raise invalid(f"{where}.url holds data that is not valid base64",
                          f"{where}.url") from exc
        return image
    if not url.startswith("https://") or len(url) > 8192:
        raise invalid(f"{where}.url must be an https:// URL (at most 8192 characters) or "
                      "a base64 data: URL", f"{where}.url")
    return ImagePart(url, detail)


_NUMBER_RANGES = {"temperature": (0.0, 2.0), "top_p": (0.0, 1.0),
                  "presence_penalty": (-2.0, 2.0), "frequency_penalty": (-2.0, 2.0)}


def parse_params(value: Any, where: str) -> dict[str, Any]:
    """Known parameters are checked; others pass through to the provider untouched."""
    if not isinstance(value, dict):
        raise invalid(f"{where} must be an object", where)
    for key, (low, high) in _NUMBER_RANGES.items():
        if key in value:
            v = value[key]
            if isinstance(v, bool) or not isinstance(v, int | float) or not low <= v <= high:
                raise invalid(f"{where}.{key} must be a number from {low:g} to {high:g}",
                              f"{where}.{key}")
    for key in ("max_tokens", "max_completion_tokens"):
        if key in value:
            v = value[key]
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= MAX_OUTPUT_TOKENS:
                raise invalid(f"{where}.{key} must be an integer from 1 to {MAX_OUTPUT_TOKENS}",
                              f"{where}.{key}")
    if "seed" in value:
        v = value["seed"]
        if isinstance(v, bool) or not isinstance(v, int):
            raise invalid(f"{where}.seed must be an integer", f"{where}.seed")
    if "stop" in value:
        v = value["stop"]
        if not (isinstance(v, str) or (isinstance(v, list) and all(isinstance(s, str) for s in v))):
            raise invalid(f"{where}.stop must be a string or a list of strings", f"{where}.stop")
    for key in ("stream", "stream_options", "model", "messages", "n"):
        if key in value:
            raise invalid(f"{where}.{key} is set by Chorus and may not be given", f"{where}.{key}")
    return dict(value)


def parse_stop_body(data: Any, n_slots: int) -> list[int] | None:
    if data is None or data == {}:
        return None
    if not isinstance(data, dict) or set(data) - {"slots"}:
        raise invalid("the body must be {} or {\"slots\": [numbers]}")
    slots = data.get("slots")
    if slots is None:
        return None
    if not isinstance(slots, list) or not all(
        isinstance(s, int) and not isinstance(s, bool) for s in slots
    ):
        raise invalid("'slots' must be a list of slot numbers", "slots")
    for s in slots:
        if not 0 <= s < n_slots:
            raise invalid(f"slot {s} does not exist (this stream has slots 0..{n_slots - 1})",
                          "slots")
    return sorted(set(slots))
