"""The SSE wire format of Chorus's own events, pure: encode once, send to every subscriber.

Each event is encoded when it enters the log, so a replay or a second subscriber costs a
``bytes.join`` and nothing else. https://html.spec.whatwg.org/multipage/server-sent-events.html
"""

from __future__ import annotations

import json
import re

from .events import Delta, Event, Reasoning

PING = b": ping\n\n"

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
# What _dumps does to a str (in C): for JSON put together around a string.
encode_string = json.encoder.encode_basestring


def encode_data(event: Event) -> str:
    """The event's JSON, compact; never holds a raw newline, so it fits one ``data:`` line.

    A text event (most of what a stream logs) is put together here: the same bytes as
    the encoder gives for its ``data()``, in a third of the time."""
    if isinstance(event, Delta | Reasoning):
        if event.turn is None:
            return f'{{"slot":{event.slot},"text":{encode_string(event.text)}}}'
        return (f'{{"slot":{event.slot},"text":{encode_string(event.text)},'
                f'"turn":{event.turn}}}')
    return _dumps(event.data())


def encode_event(event_id: int, event: Event) -> bytes:
    """The whole SSE event, ``id:`` to the blank line."""
    return utf8(f"id: {event_id}\nevent: {event.type}\ndata: {encode_data(event)}\n\n")


def encode_json(obj: object) -> str:
    """Any JSON value, as compact as an event's data."""
    return _dumps(obj)


_SURROGATE = re.compile("[\ud800-\udfff]")


def utf8(text: str) -> bytes:
    """``text`` (JSON, or lines that hold JSON) in UTF-8.

    A lone surrogate, half of a character outside the BMP, has no UTF-8 form. It comes
    from an upstream whose JSON escapes non-ASCII and that split such a character
    between two chunks (``"\\ud83d"``, then ``"\\ude00"``); encoding it would raise in
    the merge task and end the stream. It goes out as the escape it came in
    (``escape_surrogates``): valid inside a JSON string, the only place it can be, and a
    client that joins the texts (a browser's strings are UTF-16) has the character back.
    Free when there is none: only a failed encode looks for them.
    """
    try:
        return text.encode()
    except UnicodeEncodeError:
        return escape_surrogates(text).encode()


def escape_surrogates(json_text: str) -> str:
    """Every lone surrogate in ``json_text`` as its JSON escape (see ``utf8``)."""
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", json_text)


def whole_characters(text: str) -> str:
    """``text`` with each surrogate pair (the halves of one character, as two texts
    joined may hold them) made one character, and a half alone made U+FFFD: what a
    UTF-16 reader would show."""
    if text.isascii() or _SURROGATE.search(text) is None:
        return text
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
