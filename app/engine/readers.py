"""A reader of a stream: its cursor into the log, and the SSE body made of it.

A reader is served from the log, in its response's own task: everything after its cursor
goes out as one write (a reader that lags catches up in few writes and holds no buffer of
its own), and when the stream's keep-alive tick finds a whole ``ping`` logged nothing, it
hands out an empty batch, a ``: ping``. Nothing here opens a nursery or a cancel scope,
so a response body may hold it.

A reader counts as attached from the moment it is made (``Stream.follow``), not from its
first read: a stream held by a response that has not begun writing yet is not forgotten
under it. ``aclose`` detaches it; so does its being dropped unclosed (should a response
never be sent, its body is never closed).
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

import trio

from .wire import PING

if TYPE_CHECKING:
    from .stream import StreamSettings
    from .watches import Watches


class Entry(Protocol):
    """What a reader needs of a log entry: its id and its SSE bytes."""

    @property
    def id(self) -> int: ...

    @property
    def wire(self) -> bytes: ...


E = TypeVar("E", bound=Entry)
E_co = TypeVar("E_co", bound=Entry, covariant=True)


class ReadableLog(Protocol[E_co]):
    """The reading half of an event log (``log.EventLog``): this process's own stream's,
    or another instance's stream followed here (``app/state``)."""

    @property
    def last_id(self) -> int: ...

    @property
    def closed(self) -> bool: ...

    async def since(self, after: int, limit: int | None = None) -> Sequence[E_co]: ...

    async def wait(self, after: int) -> None: ...


class Readable(Protocol[E_co]):
    """A stream as its readers see it: the log, the settings, the watches."""

    @property
    def log(self) -> ReadableLog[E_co]: ...

    @property
    def settings(self) -> StreamSettings: ...

    @property
    def watches(self) -> Watches: ...


class Reader(Generic[E]):
    """Batches of log entries after ``after``, then live ones, until the log closes.

    An iterator object rather than an async generator: it is made (and attached) at once,
    and its state is plain fields that ``aclose`` can settle synchronously, safe under
    cancellation.
    """

    __slots__ = ("__weakref__", "_closed", "_detach", "_fresh", "_parts", "_stream", "after",
                 "blocked_since", "is_cut")

    def __init__(self, stream: Readable[E], after: int = 0, *, attached: bool = False
                 ) -> None:
        self._stream = stream
        self.after = after
        self.blocked_since: float | None = None  # a batch handed out, not yet written
        self.is_cut = False
        self._closed = False
        self._fresh = True  # nothing handed out since the reader last waited for the log
        self._parts: Iterator[Sequence[E]] | None = None
        token = _Token(self)
        if attached:  # the stream was opened with this reader counted already
            stream.watches.adopt(token)
        else:
            stream.watches.attach(token)
        # Detach when dropped unclosed; ``aclose`` calls it first (it runs once).
        self._detach = weakref.finalize(self, stream.watches.detach, token)

    def cut(self) -> None:
        """The stall watch gave up on this reader: it no longer counts as attached, and
        ends at its next step."""
        self.is_cut = True
        self._detach()

    def __aiter__(self) -> Reader[E]:
        return self

    async def __anext__(self) -> Sequence[E]:
        self.blocked_since = None  # the previous batch has been written
        stream = self._stream
        log, settings = stream.log, stream.settings
        while True:
            if self.is_cut or self._closed:
                await self.aclose()
                raise StopAsyncIteration
            if self._parts is not None:
                part = next(self._parts, None)
                if part is not None:
                    if not self._fresh:
                        # Catching up, one write after another, none of which need wait:
                        # let the other tasks (the merge task above all) take turns.
                        await trio.lowlevel.checkpoint()
                    self._fresh = False
                    self.after = part[-1].id
                    self.blocked_since = trio.current_time()
                    return part
                self._parts = None
            batch = await log.since(self.after, settings.max_read)
            if batch:
                self._parts = _parts(batch, settings.max_write)
                continue
            if log.closed:
                self._closed = True
                continue
            await log.wait(self.after)
            self._fresh = True
            if log.last_id <= self.after and not log.closed:  # the keep-alive tick
                self.blocked_since = trio.current_time()
                return []

    async def aclose(self) -> None:
        self._closed = True
        self._detach()


class _Token:
    """What the finalizer detaches: the reader's identity for the stall watch, without
    keeping the reader itself alive."""

    __slots__ = ("_reader",)

    def __init__(self, reader: Reader[E]) -> None:
        self._reader = weakref.ref(reader)

    @property
    def blocked_since(self) -> float | None:
        reader = self._reader()
        return None if reader is None else reader.blocked_since

    def cut(self) -> None:
        reader = self._reader()
        if reader is not None:
            reader.cut()


class SSEBody(Generic[E]):
    """A reader's batches as SSE bytes: one write per batch, ``: ping`` for an empty one.

    ``aclose`` (the response ended or the client left) detaches the reader.
    """

    __slots__ = ("_reader",)

    def __init__(self, reader: Reader[E]) -> None:
        self._reader: Reader[E] = reader

    def __aiter__(self) -> SSEBody[E]:
        return self

    async def __anext__(self) -> bytes:
        batch = await self._reader.__anext__()
        return b"".join([e.wire for e in batch]) if batch else PING

    async def aclose(self) -> None:
        await self._reader.aclose()


def _parts(batch: Sequence[E], limit: int) -> Iterator[Sequence[E]]:
    """``batch`` cut into runs of at most ``limit`` wire bytes (an entry over it alone)."""
    if len(batch) == 1:
        yield batch
        return
    start, size = 0, 0
    for i, entry in enumerate(batch):
        n = len(entry.wire)
        if size and size + n > limit:
            yield batch[start:i]
            start, size = i, 0
        size += n
    yield batch[start:]
