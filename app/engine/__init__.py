"""The Chorus engine: streams of slots running concurrently under trio, merged into a log.

Flow: ``Hub.open`` → ``Stream.run`` (one nursery: a ``run_slot`` task per slot, each in its
own cancel scope, writing to one bounded channel) → ``merge`` (coalesce, append to the
``EventLog``) → ``Stream.follow`` (each reader's SSE body, read from the log).
"""

from .hub import Hub, TooManyStreams
from .log import EventLog, LiveBatch, LiveWriter, LogEntry, MemoryEventLog
from .slots import Route, SlotPlan, SlotState
from .stream import Live, Stream, StreamSettings

__all__ = [
    "EventLog",
    "Hub",
    "Live",
    "LiveBatch",
    "LiveWriter",
    "LogEntry",
    "MemoryEventLog",
    "Route",
    "SlotPlan",
    "SlotState",
    "Stream",
    "StreamSettings",
    "TooManyStreams",
]
