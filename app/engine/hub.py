"""The hub: every live stream of this process, in one long-lived nursery.

It creates streams (ids with 128 random bits), finds them for their owner only, caps how
many run at once (in total and per owner), stops them all on shutdown (and refuses new ones
from then on), and forgets each one when nobody can resume it any more: a resumable
stream ``retention`` seconds after its ``stream.done`` (or sooner, oldest first, when the
retained logs together pass ``retained_bytes``), any other at once.
The stop signal and the log sit behind ``Stream``/``EventLog`` so a Redis backend can
carry them between instances.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Callable, Sequence
from functools import partial
from typing import Protocol

import trio

from .conversation import ConversationPlan
from .log import EventLog, MemoryEventLog
from .slots import SlotPlan
from .stream import Stream, StreamHandle, StreamObserver, StreamSettings
from .timers import Timer, Timers


class TooManyStreams(Exception):
    """The hub already runs ``max_streams`` streams, or the owner its ``max_per_owner``."""


class ShuttingDown(TooManyStreams):
    """The hub is shutting down: it takes no new stream.

    A subclass of ``TooManyStreams`` so that callers that only know that one still answer
    with a "try again later" rather than fail.
    """


class Unavailable(Exception):
    """The shared state (Redis) cannot take a new stream now: try again later."""


class SharedState(Protocol):
    """Where this process's streams are made known to other instances, and theirs found
    (``app/state``: Redis). Without one, streams live in this process alone."""

    def event_log(self, stream_id: str) -> EventLog:
        """The log for a new stream of this process (shared as it is written)."""
        ...

    async def register(self, stream: Stream) -> None:
        """Make ``stream`` known to every instance before it starts; ``Unavailable`` if
        that cannot be done now."""
        ...

    def forget(self, stream: Stream) -> None:
        """This process forgets ``stream`` (its shared copy expires on its own)."""
        ...

    async def find(self, stream_id: str, owner: str) -> StreamHandle | None:
        """Another instance's stream, if it exists and belongs to ``owner``."""
        ...

    async def run(self, hub: Hub, *, task_status: trio.TaskStatus[None]) -> None:
        """Its background work (writing, reading, stop signals), for the hub's lifetime."""
        ...

    async def flush(self) -> None:
        """Write out what this process logged and has not shared yet."""
        ...


class Hub:
    def __init__(
        self,
        settings: StreamSettings | None = None,
        max_streams: int = 1000,
        log_factory: Callable[[], EventLog] = MemoryEventLog,
        *,
        max_per_owner: int | None = None,
        observer: StreamObserver | None = None,
        shared: SharedState | None = None,
    ) -> None:
        self.settings = settings or StreamSettings()
        self.max_streams = max_streams
        self.max_per_owner = max_per_owner
        self.observer = observer
        self._log_factory = log_factory
        self.shared = shared
        self._streams: dict[str, Stream] = {}
        self._nursery: trio.Nursery | None = None
        self._by_owner: dict[str, int] = {}
        self._counted: set[str] = set()  # streams whose counts ``open`` took, until released
        self.active = 0
        self.closing = False
        self.timers = Timers()  # every stream's reader watch, stall check and keep-alive
        # Ended streams kept for a resume, oldest first, each with its retention timer.
        self._retained: dict[str, tuple[Stream, Timer]] = {}
        self.retained_bytes = 0  # the retained logs' sizes, summed
        self.forgotten_early = 0  # streams forgotten before their retention, for memory
        # Logs of forgotten streams, freed one after another by the hub's own task.
        self._forgotten, self._to_free = trio.open_memory_channel[EventLog](math.inf)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Host every stream until cancelled; ``shutdown()`` first for a clean end."""
        async with trio.open_nursery() as nursery:
            await nursery.start(self.timers.run)
            if self.shared is not None:
                await nursery.start(self.shared.run, self)
            self._nursery = nursery
            task_status.started()
            async for log in self._to_free:
                await log.discard()
                del log  # not held while this task waits for the next one

    def close(self) -> None:
        """Cancel everything the hub runs, at once (after ``shutdown`` for a clean end)."""
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    async def open(self, owner: str, plans: Sequence[SlotPlan], *, reader: bool = False,
                   resumable: bool = True, conversation: ConversationPlan | None = None
                   ) -> Stream:
        """Create a stream and start it. ``reader=True``: the caller reads it from the start.
        ``resumable=False``: nobody can come back to it (an OpenAI client cannot), so its
        log is not kept once it ends and its reader is done.

        The counts are taken before the first ``await``, so concurrent calls cannot
        together overshoot a limit.
        """
        if self._nursery is None:
            raise RuntimeError("the hub is not running")
        if self.closing:
            raise ShuttingDown("the server is shutting down")
        if self.active >= self.max_streams:
            raise TooManyStreams(f"{self.active} streams are running; the limit is "
                                 f"{self.max_streams}")
        mine = self._by_owner.get(owner, 0)
        if self.max_per_owner is not None and mine >= self.max_per_owner:
            raise TooManyStreams(f"this key already runs {mine} streams; the limit is "
                                 f"{self.max_per_owner} per key")
        stream_id = secrets.token_urlsafe(16)
        # A stream nobody can come back to (a chat completion) is served by this process
        # alone: sharing it would cost the shared state work that no reader could use.
        shared = self.shared if resumable else None
        event_log = (self._log_factory() if shared is None
                     else shared.event_log(stream_id))
        stream = Stream(stream_id, owner, plans, event_log, self.settings, self.timers,
                        self.observer, resumable=resumable, conversation=conversation)
        if reader:
            stream.attach()  # handed over to the caller's ``follow(attached=True)``
        self._streams[stream.id] = stream
        self.active += 1
        self._by_owner[owner] = mine + 1
        self._counted.add(stream.id)
        try:
            if shared is not None:
                await shared.register(stream)
            await self._nursery.start(self._life, stream)
        except BaseException:
            # It never started: the caller was cancelled (a client that left at once) or
            # the stream failed at its start. Nothing of it stays to be found or counted.
            self._streams.pop(stream.id, None)
            self._release(stream)
            raise
        return stream

    async def _life(self, stream: Stream, *, task_status: trio.TaskStatus[None]) -> None:
        try:
            await stream.run(task_status=task_status)
        finally:
            self._release(stream)
        if not stream.resumable:
            self._forget(stream)
            return
        # Kept for ``retention`` by a timer, not by this task asleep: with the default
        # ten minutes, a busy server holds thousands of finished streams at a time.
        timer = self.timers.call_later(self.settings.retention, partial(self._forget, stream))
        self._retained[stream.id] = (stream, timer)
        self.retained_bytes += stream.log.size
        while self.retained_bytes > self.settings.retained_bytes and self._retained:
            oldest, _ = next(iter(self._retained.values()))
            self.forgotten_early += 1
            self._forget(oldest)

    def _forget(self, stream: Stream) -> None:
        """The stream is gone (404). Its log is freed now, unless a reader still catching
        up holds it (it is then freed with that reader)."""
        self._streams.pop(stream.id, None)
        if self.shared is not None:
            self.shared.forget(stream)
        kept = self._retained.pop(stream.id, None)
        if kept is not None:
            kept[1].cancel()
            self.retained_bytes -= stream.log.size
        if stream.readers == 0:
            self._forgotten.send_nowait(stream.log)  # freed by ``run``, a slice at a time

    def _release(self, stream: Stream) -> None:
        """Give back the counts ``open`` took for ``stream``, once."""
        if stream.id not in self._counted:
            return
        self._counted.discard(stream.id)
        owner = stream.owner
        self.active -= 1
        left = self._by_owner[owner] - 1
        if left:
            self._by_owner[owner] = left
        else:
            del self._by_owner[owner]

    def running(self, owner: str) -> int:
        """How many of ``owner``'s streams are running."""
        return self._by_owner.get(owner, 0)

    def get(self, stream_id: str, owner: str) -> Stream | None:
        """The stream, if it exists and belongs to ``owner``; otherwise ``None`` (a 404)."""
        stream = self._streams.get(stream_id)
        if stream is None or not secrets.compare_digest(stream.owner, owner):
            return None
        return stream

    async def find(self, stream_id: str, owner: str) -> StreamHandle | None:
        """``get``, and with shared state also the streams other instances run."""
        stream = self.get(stream_id, owner)
        if stream is not None or self.shared is None:
            return stream
        return await self.shared.find(stream_id, owner)

    def local(self, stream_id: str) -> Stream | None:
        """This process's stream of that id, whoever owns it (for signals from other
        instances, which checked the owner already)."""
        return self._streams.get(stream_id)

    def streams(self) -> list[Stream]:
        return list(self._streams.values())

    async def shutdown(self) -> None:
        """Refuse new streams, stop every live slot with reason ``shutdown`` and wait for the
        streams to end.

        Slots end within moments of a stop (their scopes are cancelled); callers that must
        exit within a bound wrap this in ``trio.move_on_after``. Safe to call again.
        """
        self.closing = True
        live = [s for s in self._streams.values() if not s.done.is_set()]
        for stream in live:
            stream.stop(None, "shutdown")
        for stream in live:
            await stream.done.wait()
        if self.shared is not None:
            await self.shared.flush()

