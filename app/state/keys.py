"""Where a stream lives in Redis: key names, entry ids, channel names. Pure.

Every key of one stream carries its id in braces (``chorus:{ID}:events``): Redis Cluster
hashes only that part, so all of a stream's keys share a slot and one pipeline or
transaction may touch them together. Event *n* of a stream is Redis Stream entry ``0-n``:
ids stay the integers from 1 that clients know, and ``XREAD`` after ``0-n`` is a resume
after ``Last-Event-ID: n``.
"""

from __future__ import annotations

import re

_STREAM_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # what ``Hub.open`` makes, and no braces

CONTROL_PATTERN = "chorus:{*}:control"  # every stream's control channel (stop, readers)


def is_stream_id(text: str) -> bool:
    """Could ``text`` be a stream id? Anything else is a 404 without asking Redis (and a
    ``}`` in it would move its keys out of the stream's Cluster slot)."""
    return _STREAM_ID.match(text) is not None


def events_key(stream_id: str) -> str:
    return f"chorus:{{{stream_id}}}:events"


def record_key(stream_id: str) -> str:
    return f"chorus:{{{stream_id}}}:meta"


def control_channel(stream_id: str) -> str:
    return f"chorus:{{{stream_id}}}:control"


def stream_of_channel(channel: str) -> str:
    """The stream id inside a control channel's name."""
    return channel[channel.index("{") + 1:channel.index("}")]


def instance_key(instance: str) -> str:
    """The instance's lease: present while the instance lives."""
    return f"chorus:instance:{instance}"


# The last id a Redis Stream can take: an ended stream's last id is set to it (XSETID), so
# any later write at an explicit id, such as a stalled instance's, is refused.
FENCE_ID = f"0-{2**64 - 1}"


def ids_taken(exc: BaseException | None) -> bool:
    """Redis refused an entry because its id is not past the stream's last: another
    instance wrote (or fenced) those ids first."""
    if isinstance(exc, BaseExceptionGroup):  # coredis may raise its failures grouped
        return any(ids_taken(inner) for inner in exc.exceptions)
    return "equal or smaller" in str(exc)


def entry_id(event_id: int) -> str:
    return f"0-{event_id}"


def event_id(entry: str | bytes) -> int:
    """The event id of a Redis Stream entry id (``b"0-17"`` → 17)."""
    text = entry.decode() if isinstance(entry, bytes) else entry
    return int(text.partition("-")[2])
