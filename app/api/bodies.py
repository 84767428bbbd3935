"""Request bodies, checked: JSON in, typed values out, or an ``ApiError`` naming the field.

Pure functions of the parsed JSON (``app.api.decoding`` bounds its depth and numbers), so
every rule is testable without a server: fields, roles, parameters and their ranges, image
parts (``app.api.images``).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from app.catalog import UnknownModel
from app.config import GROUP_PREFIX
from providers import ImagePart, Message

from .errors import ApiError, invalid
from .images import parse_image

ROLES = frozenset({"system", "user", "assistant"})
# Roles some upstreams accept; they pass through only to providers of these types.
PASS_THROUGH_ROLES = {"developer": frozenset({"openai"}), "tool": frozenset({"openai"})}
MODES = frozenset({"parallel", "conversation"})
STREAM_FIELDS = ("models", "messages", "params", "mode")  # a /v1/streams body's own keys
# A conversation's own keys (``"mode": "conversation"``), in place of ``models``.
CONVERSATION_FIELDS = ("participants", "rounds", "turn_order", "manager", "on_error")
ON_ERROR = ("continue", "stop")

MAX_OUTPUT_TOKENS = 1_000_000  # beyond any model's output; a larger ask is a mistake


@dataclass(frozen=True, slots=True)
class Target:
    model: str
    label: str | None = None
    messages: tuple[Message, ...] | None = None
    params: dict[str, Any] = field(default_factory=dict)
    fallbacks: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ConversationBody:
    """What a conversation adds; its participants are the body's ``targets`` (the name
    as ``label``)."""

    systems: tuple[str | None, ...]  # each participant's own system prompt
    rounds: int = 1
    turn_order: tuple[int, ...] = ()
    manager: str | None = None  # the manager's model ref
    manager_system: str | None = None
    stop_on_error: bool = False


@dataclass(frozen=True, slots=True)
class StreamBody:
    targets: tuple[Target, ...]
    messages: tuple[Message, ...]
    params: dict[str, Any]
    mode: str = "parallel"
    conversation: ConversationBody | None = None


Groups = Callable[[str], Sequence[str]]  # "group:NAME" -> its refs (``Catalog.group``)


def parse_stream_body(data: Any, max_slots: int, groups: Groups | None = None, *,
                      max_rounds: int = 20) -> StreamBody:
    if not isinstance(data, dict):
        raise invalid("the body must be a JSON object")
    mode = data.get("mode", "parallel")
    if not isinstance(mode, str) or mode not in MODES:
        raise invalid(f"unknown mode {mode!r}; supported: parallel, conversation", "mode")
    if mode == "conversation":
        return parse_conversation_body(data, max_slots, max_rounds)
    for key in data:
        if key in CONVERSATION_FIELDS:
            raise invalid(f"{key!r} belongs to a conversation: add \"mode\": "
                          "\"conversation\"", key)
        if key not in STREAM_FIELDS:
            raise invalid(_unknown_field(key), key)
    models = data.get("models")
    if isinstance(models, str) and models.startswith(GROUP_PREFIX) and groups is not None:
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


def parse_conversation_body(data: dict[str, Any], max_slots: int, max_rounds: int
                            ) -> StreamBody:
    """A ``"mode": "conversation"`` body: participants who answer each other in turns."""
    fields = (*CONVERSATION_FIELDS, "messages", "params", "mode")
    for key in data:
        if key == "models":
            raise invalid("a conversation names its models in 'participants': "
                          "[{\"model\": …, \"name\": …}]", key)
        if key not in fields:
            raise invalid(f"unknown field {key!r} (a conversation has {', '.join(fields)})",
                          key)
    people = data.get("participants")
    if not isinstance(people, list) or not people:
        raise invalid("'participants' must be a non-empty list of {\"model\", \"name\"?, "
                      "\"system\"?, \"params\"?}", "participants")
    if len(people) > max_slots:
        raise ApiError(400, "too_many_slots", f"{len(people)} participants asked for; at "
                       f"most {max_slots} per stream", "participants")
    targets, systems = zip(*(_participant(p, f"participants[{i}]")
                             for i, p in enumerate(people)), strict=True)
    named = [t.label for t in targets if t.label is not None]
    for i, target in enumerate(targets):
        if target.label is not None and named.count(target.label) > 1:
            raise invalid(f"participant name {target.label!r} is given twice; each "
                          "participant needs a name of its own", f"participants[{i}].name")
    messages = parse_messages(data.get("messages"), "messages")
    if not messages:
        raise invalid("'messages' must open the conversation: at least one message",
                      "messages")
    rounds = data.get("rounds", 1)
    if isinstance(rounds, bool) or not isinstance(rounds, int) or not 1 <= rounds <= max_rounds:
        raise invalid(f"'rounds' must be an integer from 1 to {max_rounds}", "rounds")
    order = data.get("turn_order", list(range(len(targets))))
    if (not isinstance(order, list) or any(isinstance(i, bool) for i in order)
            or sorted(order) != list(range(len(targets)))):
        raise invalid("'turn_order' must list every participant's index once, e.g. "
                      f"{list(range(len(targets)))[::-1]}", "turn_order")
    manager, manager_system = _manager(data.get("manager"))
    on_error = data.get("on_error", "continue")
    if on_error not in ON_ERROR:
        raise invalid("'on_error' must be \"continue\" or \"stop\"", "on_error")
    conversation = ConversationBody(tuple(systems), rounds, tuple(order), manager,
                                    manager_system, on_error == "stop")
    return StreamBody(tuple(targets), messages, parse_params(data.get("params", {}), "params"),
                      "conversation", conversation)


def _participant(item: Any, where: str) -> tuple[Target, str | None]:
    if not isinstance(item, dict):
        raise invalid(f"{where} must be an object with 'model'", where)
    unknown = set(item) - {"model", "name", "system", "params"}
    if unknown:
        raise invalid(f"{where} has unknown field {sorted(unknown)[0]!r} (a participant has "
                      "model, name, system, params)", where)
    name = item.get("name")
    if name is not None and (not isinstance(name, str) or not name.strip() or len(name) > 200):
        raise invalid(f"{where}.name must be a non-empty string of at most 200 characters",
                      f"{where}.name")
    system = _optional_text(item.get("system"), f"{where}.system")
    target = Target(_ref(item.get("model"), f"{where}.model"),
                    None if name is None else name.strip(),
                    params=parse_params(item.get("params", {}), f"{where}.params"))
    return target, system


def _manager(value: Any) -> tuple[str | None, str | None]:
    if value is None:
        return None, None
    if not isinstance(value, dict) or set(value) - {"model", "system"}:
        raise invalid("'manager' must be {\"model\": …, \"system\"?: …}", "manager")
    return (_ref(value.get("model"), "manager.model"),
            _optional_text(value.get("system"), "manager.system"))


def _optional_text(value: Any, where: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise invalid(f"{where} must be a string", where)
    return value or None


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
            images.append(parse_image(part.get("image_url"), f"{where}[{i}].image_url"))
        else:
            raise invalid(f"{where}[{i}] must be a text part {{\"type\": \"text\", "
                          "\"text\": …} or an image part {\"type\": \"image_url\", "
                          "\"image_url\": {\"url\": …}}", f"{where}[{i}]")
    return "".join(texts), tuple(images)


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
    if not isinstance(data, dict) or set(data) - {"slots", "skip"}:
        raise invalid("the body must be {}, {\"slots\": [numbers]} or {\"skip\": true}")
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


def parse_skip(data: Any, conversation: bool) -> bool:
    """``{"skip": true}``: end a conversation's current turn; the next begins."""
    skip = data.get("skip", False) if isinstance(data, dict) else False
    if not isinstance(skip, bool):
        raise invalid("'skip' must be true or false", "skip")
    if skip and not conversation:
        raise invalid("'skip' ends a conversation's turn; this stream is not a conversation",
                      "skip")
    if skip and isinstance(data, dict) and "slots" in data:
        raise invalid("give either 'skip' or 'slots', not both", "skip")
    return skip
