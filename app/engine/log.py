"""The stream's append-only event log, behind a small interface with a memory backend.

Ids are integers from 1, strictly increasing per stream. The merge task is the only writer;
any number of subscribers read from a cursor (``since(n)`` gives the entries with id > n) and
``wait`` for more. A Redis backend (Streams for the log) can implement the same interface
so that another instance can serve a resume.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import trio

from .wire import encode_data, encode_event


@dataclass(frozen=True, slots=True)
class LogEntry:
    id: int
    type: str
    data: dict[str, Any]  # for in-process readers (the OpenAI front door); never mutated
    wire: bytes  # the whole SSE event, ``id:`` to blank line, encoded once


class EventLog(Protocol):
    @property
    def last_id(self) -> int: ...

    @property
    def closed(self) -> bool: ...

    async def append(self, events: Sequence[tuple[str, dict[str, Any]]]) -> int:
        """Add events in order; return the id of the last one."""
        ...

    async def since(self, after: int) -> list[LogEntry]: ...

    async def wait(self, after: int) -> None:
        """Return once an entry with id > ``after`` exists, the log is closed, or ``wake``
        was called (callers check which, and wait again if they want to)."""
        ...

    def wake(self) -> None:
        """Make every pending ``wait`` return now: the stream's keep-alive tick, so that a
        reader need not keep a deadline of its own per wait."""
        ...

    def close(self) -> None:
        """No more appends: ``stream.done`` is in."""
        ...


class MemoryEventLog:
    """The in-process backend: a list and a ``trio.Event`` that is swapped on every append."""

    def __init__(self) -> None:
        self._entries: list[LogEntry] = []
        self._changed = trio.Event()
        self._closed = False

    @property
    def last_id(self) -> int:
        return len(self._entries)

    @property
    def closed(self) -> bool:
        return self._closed

    async def append(self, events: Sequence[tuple[str, dict[str, Any]]]) -> int:
        return self.append_nowait(events)

    def append_nowait(self, events: Sequence[tuple[str, dict[str, Any]]]) -> int:
        if self._closed:
            raise RuntimeError("append to a closed event log")
        entries = self._entries
        for event_type, data in events:
            event_id = len(entries) + 1
            wire = encode_event(event_id, event_type, encode_data(data))
            entries.append(LogEntry(event_id, event_type, data, wire))
        self._wake()
        return len(entries)

    async def since(self, after: int) -> list[LogEntry]:
        return self._entries[max(after, 0) :]

    async def wait(self, after: int) -> None:
        if len(self._entries) <= after and not self._closed:
            await self._changed.wait()
        else:
            await trio.lowlevel.checkpoint()

    def wake(self) -> None:
        self._wake()

    def close(self) -> None:
        self._closed = True
        self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = trio.Event()
