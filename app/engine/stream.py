"""One stream: its slots running in a nursery, the merge task, its readers and lifetime.

A stream runs in the hub's long-lived nursery, never inside a response body generator
(an async generator may not yield inside a nursery it opened). Responses only read the
log through ``follow``. A ``StreamObserver`` (metrics, logs) hears of the stream's start
and end and of each slot's retries and outcome, never of a single delta.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import trio

from .log import EventLog, LiveWriter, LogEntry
from .merge import merge
from .runner import Item, run_slot
from .slots import DONE, ERROR, STOPPED, SlotPlan, SlotState
from .timers import Timer, Timers
from .wire import PING

log = logging.getLogger("chorus.stream")


@dataclass(frozen=True, slots=True)
class StreamSettings:
    ping: float = 15.0  # a ``: ping`` comment after this much silence (at most twice it)
    attach_timeout: float = 30.0  # a 201 stream waits this long for its first reader
    resume_grace: float = 5.0  # then outlives its last reader by this much
    retention: float = 600.0  # the log is kept this long after ``stream.done``
    channel_size: int = 256  # slot items in flight before producers wait
    stall_timeout: float = 0.0  # a reader stuck this long in one write is cut off; 0 = never
    max_write: int = 64 * 1024  # bytes of events handed to one reader's write, at most
    max_read: int = 512  # log entries one reader takes from the log at a time, at most


class StreamObserver(Protocol):
    """Hears what happens to streams, for metrics and logs.

    Called synchronously from the engine's tasks at stream and slot boundaries only (never
    per delta), so it must be quick and must not raise: an exception is logged and
    ignored, and never reaches a slot.
    """

    def stream_started(self, stream: Stream) -> None: ...

    def slot_event(
        self, stream: Stream, state: SlotState, kind: str, payload: dict[str, Any]
    ) -> None:
        """``model.retry``, or the slot's one terminal event, just before it is logged."""

    def stream_ended(self, stream: Stream, counts: dict[str, int]) -> None: ...

    def reader_cut(self, stream: Stream, stalled_for: float) -> None: ...


class _Reader:
    """One reader's progress, for the stall watch: when it began waiting for its write."""

    __slots__ = ("blocked_since", "cut")

    def __init__(self) -> None:
        self.blocked_since: float | None = None
        self.cut = False


class Stream:
    def __init__(
        self,
        stream_id: str,
        owner: str,
        plans: Sequence[SlotPlan],
        event_log: EventLog,
        settings: StreamSettings,
        timers: Timers,
        observer: StreamObserver | None = None,
    ) -> None:
        self.id = stream_id
        self.owner = owner
        self.log = event_log
        self.settings = settings
        self.slots = [SlotState(plan) for plan in plans]
        self.created = time.time()
        self.started_at = trio.current_time()
        self.ended_at: float | None = None
        self.done = trio.Event()
        self.observer = observer
        self.stop_asked: dict[int, float] = {}  # slot -> when its stop was first asked
        self._readers = 0
        self._had_reader = False
        self._watched: set[_Reader] = set()
        self._timers = timers
        self._unattended: Timer | None = None  # the reader watch, while nobody reads
        self._stall_check: Timer | None = None
        self._ping_tick: Timer | None = None
        self._ping_mark = 0  # the log's last id at the previous keep-alive tick

    # -- lifetime -------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run every slot at once, merge their events into the log, end with ``stream.done``."""
        await self.log.append([("stream.start", {
            "stream_id": self.id, "created": int(self.created),
            "slots": [{"slot": s.slot, "model": s.model, "label": s.plan.label}
                      for s in self.slots],
        })])
        self._notify("stream_started", self)
        hook = self._slot_event if self.observer is not None else None
        send, receive = trio.open_memory_channel[Item](self.settings.channel_size)
        if self._readers == 0 and self._unattended is None:
            self._watch_unattended()
        if self.settings.stall_timeout > 0:
            self._stall_check = self._timers.call_later(self.settings.stall_timeout,
                                                        self._check_stalls)
        self._ping_tick = self._timers.call_later(self.settings.ping, self._keep_alive)
        started = False
        try:
            async with trio.open_nursery() as nursery:
                async with send:
                    for state in self.slots:
                        nursery.start_soon(run_slot, state, send.clone(), hook)
                task_status.started()
                started = True
                await merge(receive, self.log)
                now = trio.current_time()
                self.ended_at = now
                counts = self._counts()  # every slot has ended: its state is one of them
                await self.log.append([("stream.done", {
                    "counts": counts, "duration_ms": round((now - self.started_at) * 1000, 1),
                })])
                self._notify("stream_ended", self, counts)
                self.log.close()
                self.done.set()
        except Exception:
            if not started:
                raise  # ``Hub.open`` raises it: the request fails, nothing else
            self._broke()
        for timer in (self._unattended, self._stall_check, self._ping_tick):
            if timer is not None:
                timer.cancel()  # the watches are no longer needed

    def _counts(self) -> dict[str, int]:
        counts = {DONE: 0, ERROR: 0, STOPPED: 0}
        for state in self.slots:
            counts[state.state if state.state in counts else ERROR] += 1
        return counts

    def _broke(self) -> None:
        """End this stream after a failure of its own machinery (a model's failure is an
        event, never this): the log closes without ``stream.done``, so its readers' responses
        end, and the failure stops here; left to rise, it would end the hub's nursery and
        every stream of the server with it. Called in the ``except`` that caught it."""
        log.exception("stream %s failed and ends; the server and its other streams go on",
                      self.id)
        self.ended_at = trio.current_time()
        self._notify("stream_ended", self, self._counts())
        if not self.log.closed:
            self.log.close()
        self.done.set()

    def _slot_event(self, state: SlotState, kind: str, payload: dict[str, Any]) -> None:
        self._notify("slot_event", self, state, kind, payload)

    def _notify(self, method: str, *args: Any) -> None:
        if self.observer is None:
            return
        try:
            getattr(self.observer, method)(*args)
        except Exception:
            log.exception("stream observer failed in %s", method)

    def stop(self, slots: Iterable[int] | None = None, reason: str = "user") -> None:
        """Cancel the given slots' scopes (all when ``None``). Ended slots are left alone."""
        now = trio.current_time()
        for state in self._chosen(slots):
            if state.stop(reason):
                self.stop_asked.setdefault(state.slot, now)

    async def wait_ended(self, slots: Iterable[int] | None = None) -> None:
        """Until the given slots (all when ``None``) have their terminal event logged."""
        for state in self._chosen(slots):
            await state.ended.wait()

    def _chosen(self, slots: Iterable[int] | None) -> list[SlotState]:
        return self.slots if slots is None else [self.slots[i] for i in slots]

    # -- readers --------------------------------------------------------------------------

    def attach(self) -> None:
        self._readers += 1
        self._had_reader = True
        self._unwatch()

    def detach(self) -> None:
        self._readers -= 1
        if self._readers == 0 and not self.done.is_set():
            self._watch_unattended()

    @property
    def readers(self) -> int:
        return self._readers

    # -- the watches (callbacks of the hub's timers: no task of their own) ---------------

    def _watch_unattended(self) -> None:
        """Start the clock that stops every slot once nobody has been reading long enough.

        A stream that never had a reader waits ``attach_timeout``; after that, the clock
        starts when the last reader leaves, and a returning reader (``attach``) stops it.
        """
        s = self.settings
        self._unwatch()
        self._unattended = self._timers.call_later(
            s.resume_grace if self._had_reader else s.attach_timeout, self._on_unattended)

    def _unwatch(self) -> None:
        if self._unattended is not None:
            self._unattended.cancel()
            self._unattended = None

    def _on_unattended(self) -> None:
        self._unattended = None
        if self._readers > 0 or self.done.is_set():
            return
        log.info("stream.unattended", extra={"fields": {"stream": self.id}})
        self.stop(None, "disconnect")

    def _keep_alive(self) -> None:
        """Every ``ping`` seconds: if nothing was logged since the last tick, wake the
        waiting readers, which then send a keep-alive. One timer per stream instead of a
        deadline around every wait of every reader (those cost ~6% of the process's work
        per relayed token, ``bench/findings.md``); a silent stream is pinged after between
        ``ping`` and twice that."""
        if self.done.is_set():
            return
        last = self.log.last_id
        if last == self._ping_mark and self._readers > 0:
            self.log.wake()
        self._ping_mark = last
        self._ping_tick = self._timers.call_later(self.settings.ping, self._keep_alive)

    def _check_stalls(self) -> None:
        """Cut off every reader that has waited ``stall_timeout`` for one write to finish.

        A client that keeps its connection open but stops reading leaves its response stuck
        in the server's socket write (Hypercorn shields it and has no write timeout), so its
        generator cannot notice anything. This check can: a cut reader no longer counts as
        attached (the slots stop after ``resume_grace`` if it was the last) and its
        generator ends as soon as the write returns. Closing the socket itself is the
        kernel's job (``TCP_USER_TIMEOUT``, set by ``chorus serve``).

        It runs again at the earliest moment a reader could have stalled, and otherwise
        once per ``stall_timeout``: a deadline, not a poll of the readers' traffic.
        """
        limit = self.settings.stall_timeout
        now = trio.current_time()
        wake = now + limit
        for reader in list(self._watched):
            since = reader.blocked_since
            if since is None:
                continue
            if now - since >= limit:
                self._cut(reader, now - since)
            else:
                wake = min(wake, since + limit)
        if not self.done.is_set():
            self._stall_check = self._timers.call_at(wake, self._check_stalls)

    def _cut(self, reader: _Reader, stalled_for: float) -> None:
        reader.cut = True
        self._watched.discard(reader)
        self.detach()
        self._notify("reader_cut", self, stalled_for)

    async def entries(
        self, after: int = 0, *, attached: bool = False, live: Live | None = None
    ) -> AsyncGenerator[list[LogEntry], None]:
        """One reader's view of the log: batches of entries after ``after``, then live ones,
        until ``stream.done``. An empty batch means the stream was silent for a while (time
        for a keep-alive; see ``_keep_alive``).

        Everything already logged comes in few batches (each at most ``max_write`` bytes
        on the wire, or one entry), so a reader that lags catches up in few writes and
        needs no buffer of its own, and one write never holds more than that. A write
        does not yield to the scheduler when the socket takes it at once (``app/tcp.py``),
        so a reader catching up yields before each write after the first: other tasks
        (the merge task above all) take turns with it, as they would with a slow socket.

        Once caught up, a reader whose response can be written without waiting (``live``
        holds a ``LiveWriter``) waits with ``wait_live``: what is logged meanwhile is
        written by the merge task as it logs it, and this generator sleeps on until the
        writer refuses something, the keep-alive tick or the end.

        The reader counts as attached while this generator runs; leaving (the client
        disconnects and the response is cancelled or closed) detaches it in ``finally``.
        ``attached=True`` takes over a reader the stream was created with. A reader that
        the stall watch cut off ends at its next step.
        """
        reader = _Reader()
        if not attached:
            self.attach()
        self._watched.add(reader)
        settings = self.settings
        fresh = True  # nothing written since this reader last waited for the log
        try:
            while not reader.cut:
                batch = await self.log.since(after, settings.max_read)
                if batch:
                    for part in _parts(batch, settings.max_write):
                        if not fresh:
                            await trio.lowlevel.checkpoint()
                        fresh = False
                        after = part[-1].id
                        reader.blocked_since = trio.current_time()
                        yield part
                        reader.blocked_since = None
                        if reader.cut:
                            return
                    if self.log.last_id > after:
                        continue  # more was logged meanwhile; else wait, not ask for nothing
                if self.log.closed:
                    return
                writer = live.writer if live is not None else None
                if writer is None:
                    await self.log.wait(after)
                else:
                    after = await self.log.wait_live(after, writer, settings.max_write)
                    if writer.behind:  # the socket took only part of an offer: finish it
                        reader.blocked_since = trio.current_time()
                        await writer.flush()
                        reader.blocked_since = None
                        continue  # bytes went out: no keep-alive needed
                fresh = True
                if self.log.last_id <= after and not self.log.closed:  # the keep-alive tick
                    reader.blocked_since = trio.current_time()
                    yield []
                    reader.blocked_since = None
        finally:
            self._watched.discard(reader)
            if not reader.cut:
                self.detach()

    def follow(self, after: int = 0, *, attached: bool = False) -> SSEBody:
        """The SSE body for one reader: each batch of entries as one write, or a ping."""
        live = Live()
        return SSEBody(self.entries(after, attached=attached, live=live), live)

    # -- views ----------------------------------------------------------------------------

    async def snapshot(self) -> dict[str, object]:
        """Every slot's state, outcome and the text logged so far (read from the log, so
        nothing is kept twice and a snapshot agrees with what readers were sent)."""
        text: dict[str, list[list[str]]] = {kind: [[] for _ in self.slots]
                                           for kind in ("delta", "reasoning")}
        for entry in await self.log.since(0):
            texts = text.get(entry.type)
            if texts is not None:
                texts[entry.data["slot"]].append(entry.data["text"])
        slots = []
        for s in self.slots:
            slots.append({
                "slot": s.slot, "model": s.model, "label": s.plan.label, "state": s.state,
                "text": "".join(text["delta"][s.slot]),
                "reasoning": "".join(text["reasoning"][s.slot]),
                "finish_reason": s.finish_reason, "error": s.error,
                "stop_reason": s.stop_reason, "usage": s.usage or None,
                "timing": s.timing or None,
            })
        return {
            "id": self.id, "created": int(self.created),
            "state": "done" if self.done.is_set() else "running",
            "last_event_id": self.log.last_id, "slots": slots,
        }


class Live:
    """A reader's ``LiveWriter``, once its response has one (``write_live``)."""

    __slots__ = ("writer",)

    def __init__(self) -> None:
        self.writer: LiveWriter | None = None


class SSEBody:
    """``entries`` as SSE bytes: one write per batch, ``: ping`` for an empty one.

    An iterator object, not an async generator around ``entries``: one coroutine frame
    less per open stream, and one step less per write. ``aclose`` (the response ends or
    the client left) closes ``entries``, which detaches the reader.
    """

    __slots__ = ("_batches", "_live")

    def __init__(self, batches: AsyncGenerator[list[LogEntry], None], live: Live) -> None:
        self._batches = batches
        self._live = live

    def write_live(self, writer: LiveWriter) -> None:
        """Let the merge task write this body's events to ``writer`` (which writes their
        ``wire``) while the reader has caught up (``Stream.entries``)."""
        self._live.writer = writer

    def __aiter__(self) -> SSEBody:
        return self

    async def __anext__(self) -> bytes:
        batch = await self._batches.__anext__()
        return b"".join([e.wire for e in batch]) if batch else PING

    async def aclose(self) -> None:
        await self._batches.aclose()


def _parts(batch: list[LogEntry], limit: int) -> Iterable[list[LogEntry]]:
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
