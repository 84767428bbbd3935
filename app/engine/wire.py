"""The SSE wire format of Chorus's own events, pure: encode once, send to every subscriber.

Each event is encoded when it enters the log, so a replay or a second subscriber costs a
``bytes.join`` and nothing else. https://html.spec.whatwg.org/multipage/server-sent-events.html
"""

from __future__ import annotations

import json
from typing import Any

PING = b": ping\n\n"

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def encode_data(data: dict[str, Any]) -> str:
    """Compact JSON; never contains a raw newline, so it fits on one ``data:`` line."""
    return _dumps(data)


def encode_event(event_id: int, event_type: str, data_json: str) -> bytes:
    return f"id: {event_id}\nevent: {event_type}\ndata: {data_json}\n\n".encode()
