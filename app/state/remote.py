"""Another instance's stream, served here: its log followed from Redis into memory.

One follower task per stream per instance, however many readers it has here: it reads
the stream's Redis Stream with ``XREAD`` (a short ``BLOCK``, explicit ids) into a
``RemoteLog``, which this instance's readers read exactly as they read a local log. The
follower is never cancelled in a command: it checks between commands whether anyone
still wants it, so the number of blocked reads is the number of followed streams, and a
reader leaving costs Redis nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio

from app.engine.log import Changes, span
from app.engine.readers import Reader, SSEBody
from app.engine.stream import StreamSettings
from app.engine.timers import Timers
from app.engine.watches import Watches

from .fold import Fold, SlotView

if TYPE_CHECKING:
    from .shared import RedisState

log = logging.getLogger("chorus.state")


@dataclass(frozen=True, slots=True)
class RemoteEntry:
    id: int
    wire: bytes


class RemoteLog:
    """The entries read so far from Redis, from id 1 on, and a wait for more."""

    def __init__(self) -> None:
        self._entries: list[RemoteEntry] = []
        self._changes = Changes()
        self._closed = False

    @property
    def last_id(self) -> int:
        return len(self._entries)

    @property
    def closed(self) -> bool:
        return self._closed

    def add(self, entries: Iterable[RemoteEntry]) -> None:
        for entry in entries:
            if entry.id == len(self._entries) + 1:  # in order, each once
                self._entries.append(entry)
        self.wake()

    def close(self) -> None:
        self._closed = True
        self.wake()

    async def since(self, after: int, limit: int | None = None) -> list[RemoteEntry]:
        return self._entries[span(len(self._entries), after, limit)]

    async def wait(self, after: int) -> None:
        await self._changes.wait(len(self._entries) > after or self._closed)

    def wake(self) -> None:
        self._changes.set()


class RemoteStream:
    """A stream another instance runs, as the API serves it here (``StreamHandle``)."""

    def __init__(self, state: RedisState, stream_id: str, owner_instance: str, fold: Fold,
                 settings: StreamSettings, timers: Timers) -> None:
        self.id = stream_id
        self.instance = owner_instance  # the instance running it
        self.fold = fold
        self.settings = settings
        self.log = RemoteLog()
        self.done = trio.Event()
        self.changed = trio.Event()  # set (and replaced) whenever the fold moves on
        self.watches = Watches(self, settings, timers, self._reader_cut, self._unattended)
        self.wanted = True  # the follower goes on while someone here reads or waits
        self.waiting = 0  # stop calls waiting for their slots to end
        self.following = False
        self._state = state

    # -- what the API asks (``StreamHandle``) ---------------------------------------------

    @property
    def slots(self) -> Sequence[SlotView]:
        return self.fold.slots

    @property
    def conversation(self) -> object | None:
        return True if self.fold.conversation else None

    @property
    def last_id(self) -> int:
        return self.log.last_id  # the fold has read the same entries (``feed``)

    def follow(self, after: int = 0) -> SSEBody[RemoteEntry]:
        self.wanted = True
        self._state.start_following(self)
        return SSEBody(Reader[RemoteEntry](self, after))

    def stop(self, slots: Iterable[int] | None = None, reason: str = "user") -> None:
        self._state.send_control(self.id, {"op": "stop", "slots": None if slots is None
                                           else list(slots)})

    def skip(self) -> None:
        self._state.send_control(self.id, {"op": "skip"})

    async def wait_ended(self, slots: Iterable[int] | None = None) -> None:
        chosen = None if slots is None else set(slots)
        turns = len(self.fold.turns)

        def ended() -> bool:
            if self.fold.done:
                return True
            if self.fold.conversation:  # a stop of some speakers ends the turn speaking
                return chosen is not None and len(self.fold.turns) > turns
            return all(s.ended for s in self.fold.slots
                       if chosen is None or s.slot in chosen)

        await self._wait_for(ended)

    async def wait_skipped(self) -> None:
        turns = len(self.fold.turns)
        turn = self.fold.turns[-1] if self.fold.turns else None
        await self._wait_for(lambda: self.fold.done or len(self.fold.turns) > turns
                             or (turn is not None and turn.ended))

    async def snapshot(self) -> dict[str, object]:
        return await self._state.snapshot(self.id)

    # -- the follower's side --------------------------------------------------------------

    def feed(self, entries: Sequence[RemoteEntry]) -> None:
        for entry in entries:
            if entry.id == self.fold.last_id + 1:
                self.fold.feed_wire(entry.id, entry.wire)
        self.log.add(entries)
        if self.fold.done:
            self.log.close()
            self.done.set()
            self.watches.stop()
        changed, self.changed = self.changed, trio.Event()
        changed.set()

    async def _wait_for(self, condition: Callable[[], bool]) -> None:
        self.waiting += 1
        self.wanted = True
        self._state.start_following(self)
        try:
            while not condition():
                await self.changed.wait()
        finally:
            self.waiting -= 1

    def _unattended(self) -> None:
        """Nobody here has read it for ``resume_grace``: stop following it."""
        if self.waiting == 0:
            self.wanted = False

    def _reader_cut(self, stalled_for: float) -> None:
        log.info("reader.cut", extra={"fields": {"stream": self.id,
                                                 "stalled_s": round(stalled_for, 1)}})
