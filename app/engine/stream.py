"""One stream: its slots running in a nursery, the merge task, and its end.

Rules this module enforces (with ``runner.py`` for each slot):
- A stream runs in the hub's long-lived nursery, never inside a response body (an async
  generator may not yield inside a nursery it opened). Responses only read the log
  (``follow``, ``readers.py``), each from its own task.
- Every slot starts at once, each in its own cancel scope; a stop cancels only the scopes
  it names.
- Exactly one ``stream.start``, first, and one ``stream.done``, last, once every slot has
  logged its one terminal event.
- A failure of the stream's own machinery (never a model's: those are events) ends this
  stream alone: its log closes without ``stream.done`` and the hub goes on.

A ``StreamObserver`` (metrics, logs) hears of the stream's start and end and of each
slot's retries and outcome, never of a single delta.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import trio

from .conversation import Conversation, ConversationPlan
from .events import (
    DONE,
    ERROR,
    STOPPED,
    Counts,
    Delta,
    ModelRetry,
    Participant,
    Reasoning,
    SlotEvent,
    SlotInfo,
    StreamDone,
    StreamStart,
    Terminal,
)
from .log import EventLog, LogEntry
from .merge import merge
from .readers import Reader, SSEBody
from .runner import run_slot
from .slots import SlotPlan, SlotState
from .timers import Timers
from .watches import Watches

log = logging.getLogger("chorus.stream")


@dataclass(frozen=True, slots=True)
class StreamSettings:
    ping: float = 15.0  # a ``: ping`` comment after this much silence (at most twice it)
    attach_timeout: float = 30.0  # a 201 stream waits this long for its first reader
    resume_grace: float = 5.0  # then outlives its last reader by this much
    retention: float = 600.0  # the log is kept this long after ``stream.done``
    retained_bytes: int = 256 * 1024 * 1024  # all retained logs together, at most
    channel_size: int = 256  # slot events in flight before producers wait
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

    def slot_event(self, stream: Stream, state: SlotState, event: ModelRetry | Terminal
                   ) -> None:
        """``model.retry``, or the slot's one terminal event, just before it is logged."""

    def stream_ended(self, stream: Stream, counts: Counts) -> None: ...

    def reader_cut(self, stream: Stream, stalled_for: float) -> None: ...


class SlotSummary(Protocol):
    def summary(self) -> dict[str, object]:
        """``{"slot", "model", "state"}``: what a stop answers with, per slot."""
        ...


class StreamHandle(Protocol):
    """A stream as the API serves it: this process's ``Stream``, or another instance's
    stream found through the shared state (``app/state``), which answers the same."""

    @property
    def id(self) -> str: ...

    @property
    def slots(self) -> Sequence[SlotSummary]: ...

    @property
    def conversation(self) -> object | None:
        """Not ``None`` for a conversation (its stop may ``skip``)."""
        ...

    @property
    def last_id(self) -> int:
        """The id of the last event logged so far."""
        ...

    def follow(self, after: int = 0) -> AsyncIterator[bytes]: ...

    def stop(self, slots: Iterable[int] | None = None, reason: str = "user") -> None: ...

    def skip(self) -> None: ...

    async def wait_ended(self, slots: Iterable[int] | None = None) -> None: ...

    async def wait_skipped(self) -> None: ...

    async def snapshot(self) -> dict[str, object]: ...


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
        *,
        resumable: bool = True,
        conversation: ConversationPlan | None = None,
    ) -> None:
        self.id = stream_id
        self.owner = owner
        self.log = event_log
        self.settings = settings
        self.resumable = resumable  # its log is kept ``retention`` after it ends
        self.slots = [SlotState(plan) for plan in plans]
        self.created = time.time()
        self.started_at = trio.current_time()
        self.ended_at: float | None = None
        self.done = trio.Event()
        self.observer = observer
        self.stop_asked: dict[int, float] = {}  # slot -> when its stop was first asked
        self.watches = Watches(self, settings, timers, self._reader_cut, self._unattended)
        # In conversation mode the slots are its speakers, who take turns (``conversation.py``).
        self.conversation = (None if conversation is None else
                             Conversation(conversation, self.slots, settings.channel_size))

    # -- lifetime -------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run every slot at once, merge their events into the log, end with ``stream.done``."""
        await self.log.append([self._start_event()])
        self._notify("stream_started", self)
        hook = self._slot_event if self.observer is not None else None
        self.watches.start()
        started = False
        try:
            async with trio.open_nursery() as nursery:
                if self.conversation is None:
                    send, receive = trio.open_memory_channel[SlotEvent](
                        self.settings.channel_size)
                    async with send:
                        for state in self.slots:
                            nursery.start_soon(run_slot, state, send.clone(), hook)
                task_status.started()
                started = True
                if self.conversation is None:
                    await merge(receive, self.log, self.slots)
                else:  # its turns, one after another, each with its own merge
                    await self.conversation.run(self.log, hook)
                now = trio.current_time()
                self.ended_at = now
                counts = self._counts()  # every slot has ended: its state is one of them
                await self.log.append([StreamDone(
                    counts, round((now - self.started_at) * 1000, 1),
                    None if self.conversation is None
                    else self.conversation.total_manager_usage())])
                self._notify("stream_ended", self, counts)
                self.log.close()
                self.done.set()
        except Exception:
            if not started:
                raise  # ``Hub.open`` raises it: the request fails, nothing else
            self._broke()
        finally:
            self.watches.stop()

    def _start_event(self) -> StreamStart:
        slots = tuple(SlotInfo(s.slot, s.model, s.plan.label) for s in self.slots)
        if self.conversation is None:
            return StreamStart(self.id, int(self.created), slots)
        return StreamStart(self.id, int(self.created), slots, self.conversation.plan.rounds,
                           tuple(Participant(s.slot, s.model, s.plan.label)
                                 for s in self.slots))

    def _counts(self) -> Counts:
        if self.conversation is not None:
            return self.conversation.counts()
        states = [s.state for s in self.slots]
        done, stopped = states.count(DONE), states.count(STOPPED)
        return Counts(done, len(states) - done - stopped, stopped)

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

    def _slot_event(self, state: SlotState, event: ModelRetry | Terminal) -> None:
        self._notify("slot_event", self, state, event)

    def _unattended(self) -> None:
        self.stop(None, "disconnect")

    def _reader_cut(self, stalled_for: float) -> None:
        self._notify("reader_cut", self, stalled_for)

    def _notify(self, method: str, *args: Any) -> None:
        if self.observer is None:
            return
        try:
            getattr(self.observer, method)(*args)
        except Exception:
            log.exception("stream observer failed in %s", method)

    def stop(self, slots: Iterable[int] | None = None, reason: str = "user") -> None:
        """Cancel the given slots' scopes (all when ``None``). Ended slots are left alone.
        In a conversation: all ends it, some leave those speakers out (``Conversation``)."""
        now = trio.current_time()
        if self.conversation is not None:
            self.conversation.stop(slots, reason)
            for slot in range(len(self.slots)) if slots is None else slots:
                self.stop_asked.setdefault(slot, now)
            return
        for state in self._chosen(slots):
            if state.stop(reason):
                self.stop_asked.setdefault(state.slot, now)

    def skip(self) -> None:
        """End a conversation's current turn (``model.stopped``, reason ``skip``); the next
        begins."""
        if self.conversation is not None:
            self.conversation.skip()

    async def wait_skipped(self) -> None:
        """Until the turn ``skip`` cut has ended."""
        if self.conversation is not None:
            await self.conversation.wait_stopped(False)

    async def wait_ended(self, slots: Iterable[int] | None = None) -> None:
        """Until the given slots (all when ``None``) have their terminal event logged.
        In a conversation: until the conversation, or the turn the stop cut, has ended."""
        if self.conversation is not None:
            await self.conversation.wait_stopped(slots is None)
            return
        for state in self._chosen(slots):
            await state.ended.wait()

    def _chosen(self, slots: Iterable[int] | None) -> list[SlotState]:
        return self.slots if slots is None else [self.slots[i] for i in slots]

    # -- readers --------------------------------------------------------------------------

    @property
    def last_id(self) -> int:
        return self.log.last_id

    @property
    def readers(self) -> int:
        return self.watches.readers

    def attach(self) -> None:
        """Count a reader that will read from the start (``entries(attached=True)``)."""
        self.watches.attach()

    def entries(self, after: int = 0, *, attached: bool = False) -> Reader[LogEntry]:
        """A reader's batches of entries after ``after`` (``readers.Reader``), attached
        now. ``attached=True`` takes over the reader the stream was opened with."""
        return Reader[LogEntry](self, after, attached=attached)

    def follow(self, after: int = 0, *, attached: bool = False) -> SSEBody[LogEntry]:
        """The SSE body for one reader: each batch of entries as one write, or a ping."""
        return SSEBody(self.entries(after, attached=attached))

    # -- views ----------------------------------------------------------------------------

    async def snapshot(self) -> dict[str, object]:
        """Every slot's state, outcome and the text logged so far (read from the log, so
        nothing is kept twice and a snapshot agrees with what readers were sent)."""
        text: dict[str, list[list[str]]] = {kind: [[] for _ in self.slots]
                                           for kind in ("delta", "reasoning")}
        turns = [] if self.conversation is None else self.conversation.turns
        turn_text: dict[str, list[list[str]]] = {kind: [[] for _ in turns]
                                                for kind in ("delta", "reasoning")}
        for entry in await self.log.since(0):
            event = entry.event
            if isinstance(event, Delta | Reasoning):
                text[event.type][event.slot].append(event.text)
                if event.turn is not None and event.turn < len(turns):
                    turn_text[event.type][event.turn].append(event.text)
        slots = [_state_view(s, "".join(text["delta"][s.slot]),
                             "".join(text["reasoning"][s.slot])) for s in self.slots]
        out: dict[str, object] = {
            "id": self.id, "created": int(self.created),
            "state": "done" if self.done.is_set() else "running",
            "last_event_id": self.log.last_id, "slots": slots,
        }
        if self.conversation is not None:
            out["mode"] = "conversation"
            out["turns"] = [
                {"turn": i, "name": t.plan.label,
                 **_state_view(t, "".join(turn_text["delta"][i]),
                               "".join(turn_text["reasoning"][i]))}
                for i, t in enumerate(turns)]
        return out


def _state_view(s: SlotState, text: str, reasoning: str) -> dict[str, object]:
    """A slot's (or a turn's) part of the snapshot."""
    return {
        "slot": s.slot, "model": s.model, "label": s.plan.label, "state": s.state,
        "text": text, "reasoning": reasoning, "finish_reason": s.finish_reason,
        "error": s.error.data() if s.error is not None else None,
        "stop_reason": s.stop_reason,
        "usage": s.usage.data() if s.usage is not None else None,
        "timing": s.timing.data() if s.timing is not None else None,
    }


__all__ = ["DONE", "ERROR", "STOPPED", "Stream", "StreamObserver", "StreamSettings"]
