"""The Chorus engine: streams of slots running concurrently under trio, merged into a log.

Flow: ``Hub.open`` → ``Stream.run`` (one nursery: a ``run_slot`` task per slot, each in its
own cancel scope, writing typed events to one bounded channel) → ``merge`` (coalesce,
append to the ``EventLog``) → ``Stream.follow`` (each reader's SSE body, read from the log
in the response's own task).
"""

from . import events
from .conversation import ConversationPlan, Speaker
from .hub import Hub, ShuttingDown, TooManyStreams
from .log import EventLog, LogEntry, MemoryEventLog
from .manager import ManagerPlan
from .readers import Reader, SSEBody
from .slots import Route, SlotPlan, SlotState
from .stream import Stream, StreamObserver, StreamSettings

__all__ = [
    "ConversationPlan",
    "EventLog",
    "Hub",
    "LogEntry",
    "ManagerPlan",
    "MemoryEventLog",
    "Reader",
    "Route",
    "SSEBody",
    "ShuttingDown",
    "SlotPlan",
    "SlotState",
    "Speaker",
    "Stream",
    "StreamObserver",
    "StreamSettings",
    "TooManyStreams",
    "events",
]
