"""A stream's watches: who reads it, when nobody has for too long, when it has been
silent, and which reader is stuck in one write.

They are callbacks on the hub's one ``Timers`` task (``timers.py``), not tasks of their
own: two tasks fewer per stream, and no deadline per wait of a reader.
- The reader watch stops every slot (reason ``disconnect``) once nobody has read the
  stream for ``resume_grace`` (or a 201 stream got no reader within ``attach_timeout``).
- The keep-alive tick wakes the waiting readers when a whole ``ping`` logged nothing, and
  they send ``: ping``; a silent stream is pinged after between ``ping`` and twice that.
- The stall watch cuts off a reader that has waited ``stall_timeout`` for one write.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import trio

from .timers import Timer, Timers

if TYPE_CHECKING:
    from .stream import StreamSettings

log = logging.getLogger("chorus.stream")


class Watched(Protocol):
    """A reader, as the stall watch sees it: since when it has been writing, and a way to
    cut it off."""

    @property
    def blocked_since(self) -> float | None: ...

    def cut(self) -> None: ...


class WatchedLog(Protocol):
    @property
    def last_id(self) -> int: ...

    def wake(self) -> None: ...


class WatchedStream(Protocol):
    """What the watches look at: the stream's id, whether it has ended, and its log (to
    tell silence and to wake the waiting readers)."""

    @property
    def id(self) -> str: ...

    @property
    def done(self) -> trio.Event: ...

    @property
    def log(self) -> WatchedLog: ...


@dataclass(frozen=True, slots=True)
class _Owner:
    """The stream watched and what its watches call on it."""

    stream: WatchedStream
    on_cut: Callable[[float], None]
    on_unattended: Callable[[], None]


class Watches:
    """One stream's readers and timers. ``Stream`` owns one; readers ``attach`` and
    ``detach`` through it. ``on_unattended`` is what nobody reading for too long does: a
    running stream stops its slots; another instance's stream, read here, stops following
    it (``app/state``)."""

    def __init__(self, stream: WatchedStream, settings: StreamSettings, timers: Timers,
                 on_cut: Callable[[float], None], on_unattended: Callable[[], None]) -> None:
        # The stream and its callbacks, until it ends (``stop``): it holds these watches,
        # so keeping them after would make every ended stream a reference cycle, which only
        # the garbage collector frees, with all the stream holds (its slots, its log).
        self._owner: _Owner | None = _Owner(stream, on_cut, on_unattended)
        self._settings = settings
        self._timers = timers
        self.readers = 0
        self.had_reader = False
        self._watched: set[Watched] = set()
        self._unattended: Timer | None = None
        self._stall_check: Timer | None = None
        self._ping_tick: Timer | None = None
        self._ping_mark = 0  # the log's last id at the previous keep-alive tick

    def start(self) -> None:
        """The stream runs: start the reader watch (if nobody reads yet), the stall watch
        and the keep-alive tick."""
        s = self._settings
        if self.readers == 0 and self._unattended is None:
            self._watch_unattended()
        if s.stall_timeout > 0:
            self._stall_check = self._timers.call_later(s.stall_timeout, self._check_stalls)
        self._ping_tick = self._timers.call_later(s.ping, self._keep_alive)

    def stop(self) -> None:
        """The stream has ended: no watch is needed any more, nor the stream."""
        for timer in (self._unattended, self._stall_check, self._ping_tick):
            if timer is not None:
                timer.cancel()
        self._unattended = self._stall_check = self._ping_tick = None
        self._owner = None

    def _running(self) -> _Owner | None:
        """The stream and its callbacks, while it has not ended."""
        owner = self._owner
        return None if owner is None or owner.stream.done.is_set() else owner

    # -- readers --------------------------------------------------------------------------

    def attach(self, reader: Watched | None = None) -> None:
        """One more reader (``None``: one announced now, ``adopt``ed when it reads)."""
        self.readers += 1
        self.had_reader = True
        if reader is not None:
            self._watched.add(reader)
        self._unwatch()

    def adopt(self, reader: Watched) -> None:
        """The reader an ``attach()`` announced (the stream's creator reads it)."""
        self._watched.add(reader)

    def detach(self, reader: Watched | None = None) -> None:
        if reader is not None:
            self._watched.discard(reader)
        self.readers -= 1
        if self.readers == 0 and self._running() is not None:
            self._watch_unattended()

    # -- the reader watch -----------------------------------------------------------------

    def _watch_unattended(self) -> None:
        s = self._settings
        self._unwatch()
        self._unattended = self._timers.call_later(
            s.resume_grace if self.had_reader else s.attach_timeout, self._on_unattended)

    def _unwatch(self) -> None:
        if self._unattended is not None:
            self._unattended.cancel()
            self._unattended = None

    def _on_unattended(self) -> None:
        self._unattended = None
        owner = self._running()
        if self.readers > 0 or owner is None:
            return
        log.info("stream.unattended", extra={"fields": {"stream": owner.stream.id}})
        owner.on_unattended()

    # -- the keep-alive tick --------------------------------------------------------------

    def _keep_alive(self) -> None:
        """If nothing was logged since the last tick, wake the waiting readers, which then
        send a keep-alive. One timer per stream instead of a deadline around every wait of
        every reader (those cost ~6% of the process's work per relayed token)."""
        owner = self._running()
        if owner is None:
            return
        events = owner.stream.log
        last = events.last_id
        if last == self._ping_mark and self.readers > 0:
            events.wake()
        self._ping_mark = last
        self._ping_tick = self._timers.call_later(self._settings.ping, self._keep_alive)

    # -- the stall watch ------------------------------------------------------------------

    def _check_stalls(self) -> None:
        """Cut off every reader that has waited ``stall_timeout`` for one write to finish.

        A client that keeps its connection open but stops reading leaves its response stuck
        in the server's socket write (Hypercorn shields it and has no write timeout), so its
        body cannot notice anything. This check can: a cut reader no longer counts as
        attached (the slots stop after ``resume_grace`` if it was the last) and its body
        ends as soon as the write returns. Closing the socket itself is the kernel's job
        (``TCP_USER_TIMEOUT``, set by ``chorus serve``).

        It runs again at the earliest moment a reader could have stalled, and otherwise
        once per ``stall_timeout``: a deadline, not a poll of the readers' traffic.
        """
        owner = self._running()
        if owner is None:
            return
        limit = self._settings.stall_timeout
        now = trio.current_time()
        wake = now + limit
        for reader in list(self._watched):
            since = reader.blocked_since
            if since is None:
                continue
            if now - since >= limit:
                reader.cut()
                owner.on_cut(now - since)
            else:
                wake = min(wake, since + limit)
        self._stall_check = self._timers.call_at(wake, self._check_stalls)
