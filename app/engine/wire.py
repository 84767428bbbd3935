"""The SSE wire format of Chorus's own events, pure: encode once, send to every subscriber.

Each event is encoded when it enters the log, so a replay or a second subscriber costs a
``bytes.join`` and nothing else. https://html.spec.whatwg.org/multipage/server-sent-events.html
"""

from __future__ import annotations

import json
from typing import Any

PING = b": ping\n\n"

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
# What _dumps does to a str (in C): for JSON put together around a string.
encode_string = json.encoder.encode_basestring
_TEXT_KEYS = {"slot", "text"}


def encode_data(data: dict[str, Any]) -> str:
    """Compact JSON; never contains a raw newline, so it fits on one ``data:`` line.

    A text event (``{"slot": n, "text": "…"}``, most of what a stream logs) is put
    together here: the same bytes as the encoder gives, in a third of its time."""
    if data.keys() == _TEXT_KEYS:
        slot, text = data["slot"], data["text"]
        if type(slot) is int and type(text) is str:
            return f'{{"slot":{slot},"text":{encode_string(text)}}}'
    return _dumps(data)


def encode_event(event_id: int, event_type: str, data_json: str) -> bytes:
    return f"id: {event_id}\nevent: {event_type}\ndata: {data_json}\n\n".encode()
