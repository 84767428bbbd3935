"""The stream's append-only event log, behind a small interface with a memory backend.

Ids are integers from 1, strictly increasing per stream. The merge task is the only writer;
any number of readers read from a cursor (``since(n)`` gives the entries with id > n) and
``wait`` for more. The log knows nothing of sockets or responses: each response reads it
from its own task and writes through its framework. A Redis backend (Streams for the
entries) implements the same interface, so that another instance can serve a resume.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import trio

from .events import Delta, Event, Reasoning
from .wire import encode_event

DISCARD_SLICE = 2048  # entries freed per step by ``discard`` (~0.25 ms)


@dataclass(frozen=True, slots=True)
class LogEntry:
    id: int
    event: Event
    wire: bytes  # the whole SSE event, ``id:`` to blank line, encoded once

    @property
    def type(self) -> str:
        return self.event.type

    @property
    def data(self) -> dict[str, Any]:
        """The event's JSON object (made anew on each call: for views, not the hot path)."""
        return self.event.data()


class EventLog(Protocol):
    @property
    def last_id(self) -> int: ...

    @property
    def closed(self) -> bool: ...

    @property
    def size(self) -> int:
        """The entries' encoded bytes: what keeping this log costs, for the hub's budget."""
        ...

    async def append(self, events: Sequence[Event]) -> int:
        """Add events in order; return the id of the last one."""
        ...

    async def since(self, after: int, limit: int | None = None) -> list[LogEntry]:
        """The entries with id > ``after``, in order; at most ``limit`` of them."""
        ...

    async def wait(self, after: int) -> None:
        """Return once an entry with id > ``after`` exists, the log is closed, or ``wake``
        was called (callers check which, and wait again if they want to)."""
        ...

    def wake(self) -> None:
        """Make every pending ``wait`` return now: the stream's keep-alive tick, so that a
        reader need not keep a deadline of its own per wait."""
        ...

    def close(self) -> None:
        """No more appends: ``stream.done`` is in (or the stream broke)."""
        ...

    async def discard(self) -> None:
        """Free the entries: the stream is forgotten and nobody reads it."""
        ...


# How a text event is kept: ``(slot, text, turn, reasoning)``, a tuple of atoms. A retained
# log holds thousands of them; an event object each would be one more object for the
# garbage collector to walk in every full collection, while every stream waits (150,000
# retained deltas: a full collection of 49 ms; as tuples, which the collector stops
# tracking, of a few). Made into ``Delta``/``Reasoning`` again as they are read.
_Kept = tuple[int, str, "int | None", bool]


def _keep(event: Event) -> Event | _Kept:
    if type(event) is Delta:
        return (event.slot, event.text, event.turn, False)
    if type(event) is Reasoning:
        return (event.slot, event.text, event.turn, True)
    return event


def _event(kept: Event | _Kept) -> Event:
    if isinstance(kept, tuple):
        slot, text, turn, reasoning = kept
        return Reasoning(slot, text, turn) if reasoning else Delta(slot, text, turn)
    return kept


class Changes:
    """The next change of a log, waited for by any number of readers at once: one
    ``trio.Event``, made when the first of them waits and set by the next change (none is
    made per change while nobody waits)."""

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event: trio.Event | None = None

    async def wait(self, ready: bool) -> None:
        """Return at once (a checkpoint) if ``ready``, else at the next ``set``."""
        if ready:
            await trio.lowlevel.checkpoint()
            return
        if self._event is None:
            self._event = trio.Event()
        await self._event.wait()

    def set(self) -> None:
        event, self._event = self._event, None
        if event is not None:
            event.set()


def span(length: int, after: int, limit: int | None) -> slice:
    """Which of a log's ``length`` entries come after id ``after``, ``limit`` at most."""
    start = max(after, 0)
    return slice(start, length if limit is None else min(length, start + limit))


class MemoryEventLog:
    """The in-process backend: entries in two lists (events, SSE bytes), and the readers'
    wait for the next append (``Changes``)."""

    def __init__(self, on_change: Callable[[], None] | None = None) -> None:
        self._on_change = on_change  # told of each append and the close (the Redis mirror)
        self._events: list[Event | _Kept] = []
        self._wires: list[bytes] = []
        self._size = 0
        self._changes = Changes()
        self._closed = False

    @property
    def last_id(self) -> int:
        return len(self._wires)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def size(self) -> int:
        return self._size

    async def append(self, events: Sequence[Event]) -> int:
        return self.append_nowait(events)

    def append_nowait(self, events: Sequence[Event]) -> int:
        if self._closed:
            raise RuntimeError("append to a closed event log")
        wires = self._wires
        for event in events:
            wire = encode_event(len(wires) + 1, event)
            wires.append(wire)
            self._events.append(_keep(event))
            self._size += len(wire)
        self._changes.set()
        if self._on_change is not None:
            self._on_change()
        return len(wires)

    async def since(self, after: int, limit: int | None = None) -> list[LogEntry]:
        chosen = span(len(self._wires), after, limit)
        events, wires = self._events, self._wires
        return [LogEntry(i + 1, _event(events[i]), wires[i])
                for i in range(chosen.start, chosen.stop)]

    def wires_since(self, after: int, limit: int) -> list[bytes]:
        """The SSE bytes of entries ``after + 1`` on, at most ``limit`` of them: what a copy
        of the log elsewhere needs (the Redis mirror), with no entry object made."""
        return self._wires[span(len(self._wires), after, limit)]

    async def wait(self, after: int) -> None:
        await self._changes.wait(len(self._wires) > after or self._closed)

    def wake(self) -> None:
        self._changes.set()

    def close(self) -> None:
        self._closed = True
        self._changes.set()
        if self._on_change is not None:
            self._on_change()

    async def discard(self) -> None:
        """Free the entries a slice at a time, letting other tasks run between slices.

        A long stream's log holds tens of thousands of entries; freeing them in one go
        (the last reference dropped) took one step of 2-14 ms, which every token of every
        other stream waited for (``bench/findings.md``).
        """
        while self._wires:
            del self._events[-DISCARD_SLICE:]
            del self._wires[-DISCARD_SLICE:]
            await trio.lowlevel.checkpoint()
        self._size = 0

