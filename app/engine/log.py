"""The stream's append-only event log, behind a small interface with a memory backend.

Ids are integers from 1, strictly increasing per stream. The merge task is the only writer;
any number of subscribers read from a cursor (``since(n)`` gives the entries with id > n) and
``wait`` for more, or, once caught up, ``wait_live``: then what is appended meanwhile is
written to them by the appending task, and they sleep on. A Redis backend (Streams for the
log) can implement the same interface so that another instance can serve a resume.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import trio

from .wire import encode_data, encode_event

log = logging.getLogger("chorus.stream")

DISCARD_SLICE = 2048  # entries freed per step by ``discard`` (~0.25 ms)


@dataclass(frozen=True, slots=True)
class LogEntry:
    id: int
    type: str
    data: dict[str, Any]  # for in-process readers (the OpenAI front door); never mutated
    wire: bytes  # the whole SSE event, ``id:`` to blank line, encoded once


class LiveBatch:
    """What one append added, as a live reader's writer takes it: ``wire``, the events'
    SSE bytes (joined once for every reader), or ``entries()``, made only for a writer
    that turns the events into bytes of its own (the OpenAI front door)."""

    __slots__ = ("_end", "_source", "_start", "wire")

    def __init__(self, wire: bytes, source: Callable[[int, int], list[LogEntry]],
                 start: int, end: int) -> None:
        self.wire = wire
        self._source = source
        self._start = start
        self._end = end

    def entries(self) -> list[LogEntry]:
        return self._source(self._start, self._end)


class LiveWriter(Protocol):
    """Where a reader that has caught up takes its next events from the appending task
    itself (the merge task), without its own task being woken: one scheduler step less per
    event, a quarter of a relayed token's work (``bench/findings.md``). A response gives
    one when it can be written without waiting (``Stream.entries``, ``app/tcp.py``)."""

    def offer(self, batch: LiveBatch) -> bool:
        """Write ``batch`` now without waiting, or refuse it (``False``: none of it was
        written, and the reader's task will read it from the log its own way)."""
        ...

    @property
    def behind(self) -> bool:
        """Part of what ``offer`` took is not written yet (the socket took only some): the
        reader's task has to ``flush`` it before it waits again."""
        ...

    async def flush(self) -> None:
        """Write what ``offer`` took and could not write at once."""
        ...


class EventLog(Protocol):
    @property
    def last_id(self) -> int: ...

    @property
    def closed(self) -> bool: ...

    async def append(self, events: Sequence[tuple[str, dict[str, Any]]], *,
                     offer: bool = True) -> int:
        """Add events in order; return the id of the last one. ``offer=False``: readers in
        ``wait_live`` are woken to read them, not offered them."""
        ...

    async def since(self, after: int, limit: int | None = None) -> list[LogEntry]:
        """The entries with id > ``after``, in order; at most ``limit`` of them."""
        ...

    async def wait(self, after: int) -> None:
        """Return once an entry with id > ``after`` exists, the log is closed, or ``wake``
        was called (callers check which, and wait again if they want to)."""
        ...

    async def wait_live(self, after: int, writer: LiveWriter, limit: int) -> int:
        """``wait``, while every batch of entries appended meanwhile (of at most ``limit``
        wire bytes, appended with ``offer``) is offered to ``writer`` as it is appended;
        return the id of the last entry it took (``after`` if none). A backend may offer
        nothing and only wait."""
        ...

    def wake(self) -> None:
        """Make every pending ``wait`` return now: the stream's keep-alive tick, so that a
        reader need not keep a deadline of its own per wait."""
        ...

    def close(self) -> None:
        """No more appends: ``stream.done`` is in."""
        ...

    async def discard(self) -> None:
        """Free the entries: the stream is forgotten (its ``retention`` is over) and
        nobody reads it. The log is empty afterwards."""
        ...


class MemoryEventLog:
    """The in-process backend: the entries' columns in lists, and a ``trio.Event`` for the
    readers in ``wait``, made when the first of them waits and set by the next append.

    Entries are kept as columns (type, data, wire), not as one ``LogEntry`` each: the log
    lives for ``retention`` (600 s by default), and an object per entry is one more
    object for the garbage collector to walk in every collection of its generation, while
    no stream moves. A text event's data holds only a number and a string, which CPython
    does not track, so a retained text event adds three list slots and no object to walk
    (600,000 entries: a full collection takes 26 ms instead of 97, ``bench/findings.md``).
    ``since`` builds the ``LogEntry`` objects a reader asks for (so a reader asks for a
    bounded number at a time); they live as long as that read.
    """

    def __init__(self) -> None:
        self._types: list[str] = []
        self._data: list[dict[str, Any]] = []
        self._wires: list[bytes] = []
        self._changed: trio.Event | None = None  # while a reader is in ``wait``
        self._closed = False
        self._live: set[_Live] = set()  # readers in ``wait_live``
        self._range = self._entries  # one bound method for every ``LiveBatch``

    @property
    def last_id(self) -> int:
        return len(self._wires)

    @property
    def closed(self) -> bool:
        return self._closed

    async def append(self, events: Sequence[tuple[str, dict[str, Any]]], *,
                     offer: bool = True) -> int:
        return self.append_nowait(events, offer=offer)

    def append_nowait(self, events: Sequence[tuple[str, dict[str, Any]]], *,
                      offer: bool = True) -> int:
        if self._closed:
            raise RuntimeError("append to a closed event log")
        wires = self._wires
        before = len(wires)
        for event_type, data in events:
            wires.append(encode_event(len(wires) + 1, event_type, encode_data(data)))
            self._types.append(event_type)
            self._data.append(data)
        if self._live and len(wires) > before:
            if offer:
                self._offer(before)
            else:
                self._wake()  # they read it from their cursor, with what comes meanwhile
        self._wake_waiting()
        return len(wires)

    def _offer(self, before: int) -> None:
        """The entries from ``before`` on, to each live reader: one that takes them stays
        asleep at its new place; any other is woken, to go on from where it is."""
        wires = self._wires
        data = b"".join(wires[before:]) if len(wires) - before > 1 else wires[before]
        last = len(wires)
        batch = LiveBatch(data, self._range, before, last)
        for live in list(self._live):
            if live.after == before and len(data) <= live.limit and self._taken(live, batch):
                live.after = last
                if not live.writer.behind:
                    continue
            self._live.discard(live)
            live.woken.set()

    @staticmethod
    def _taken(live: _Live, batch: LiveBatch) -> bool:
        """``offer``, where a writer's bug is its reader's alone: it runs in the merge task,
        and the stream and its other readers go on."""
        try:
            return live.writer.offer(batch)
        except Exception:
            log.exception("a live writer failed; its reader writes for itself")
            return False

    async def since(self, after: int, limit: int | None = None) -> list[LogEntry]:
        start = max(after, 0)
        end = len(self._wires) if limit is None else min(len(self._wires), start + limit)
        return self._entries(start, end)

    def _entries(self, start: int, end: int) -> list[LogEntry]:
        """The entries at positions ``start`` to ``end`` (ids ``start + 1`` to ``end``)."""
        types, data, wires = self._types, self._data, self._wires
        return [LogEntry(i + 1, types[i], data[i], wires[i]) for i in range(start, end)]

    async def wait(self, after: int) -> None:
        if len(self._wires) <= after and not self._closed:
            if self._changed is None:
                self._changed = trio.Event()
            await self._changed.wait()
        else:
            await trio.lowlevel.checkpoint()

    async def wait_live(self, after: int, writer: LiveWriter, limit: int) -> int:
        if len(self._wires) > after or self._closed:
            await trio.lowlevel.checkpoint()
            return after
        live = _Live(after, writer, limit)
        self._live.add(live)
        try:
            await live.woken.wait()
        finally:
            self._live.discard(live)
        return live.after

    def wake(self) -> None:
        self._wake()

    def close(self) -> None:
        self._closed = True
        self._wake()

    async def discard(self) -> None:
        """Free the entries a slice at a time, letting other tasks run between slices.

        A long stream's log holds tens of thousands of entries; freeing them in one go
        (the last reference dropped) took one step of 2-14 ms, which every token of every
        other stream waited for (``bench/findings.md``).
        """
        columns = (self._types, self._data, self._wires)
        while self._wires:
            for column in columns:
                del column[-DISCARD_SLICE:]
            await trio.lowlevel.checkpoint()

    def _wake(self) -> None:
        for live in self._live:
            live.woken.set()
        self._live.clear()
        self._wake_waiting()

    def _wake_waiting(self) -> None:
        """End every ``wait``. No event is made per append: with every reader live (or
        none), nobody waits on one."""
        changed = self._changed
        if changed is not None:
            self._changed = None
            changed.set()


class _Live:
    """A reader in ``wait_live``: its place in the log, where its events go, and how it is
    woken when they can't go there."""

    __slots__ = ("after", "limit", "woken", "writer")

    def __init__(self, after: int, writer: LiveWriter, limit: int) -> None:
        self.after = after
        self.writer = writer
        self.limit = limit
        self.woken = trio.Event()
