"""One stream: its slots running in a nursery, the merge task, its readers and lifetime.

A stream runs in the hub's long-lived nursery, never inside a response body generator
(an async generator may not yield inside a nursery it opened). Responses only read the
log through ``follow``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Sequence
from contextlib import aclosing
from dataclasses import dataclass

import trio

from .log import EventLog, LogEntry
from .merge import merge
from .runner import Item, run_slot
from .slots import DONE, ERROR, STOPPED, SlotPlan, SlotState
from .wire import PING

log = logging.getLogger("chorus.stream")


@dataclass(frozen=True, slots=True)
class StreamSettings:
    ping: float = 15.0  # seconds of silence before a ``: ping`` comment
    attach_timeout: float = 30.0  # a 201 stream waits this long for its first reader
    resume_grace: float = 5.0  # then outlives its last reader by this much
    retention: float = 600.0  # the log is kept this long after ``stream.done``
    channel_size: int = 256  # slot items in flight before producers wait


class Stream:
    def __init__(
        self,
        stream_id: str,
        owner: str,
        plans: Sequence[SlotPlan],
        event_log: EventLog,
        settings: StreamSettings,
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
        self._readers = 0
        self._had_reader = False
        self._readers_changed = trio.Event()

    # -- lifetime -------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run every slot at once, merge their events into the log, end with ``stream.done``."""
        await self.log.append([("stream.start", {
            "stream_id": self.id, "created": int(self.created),
            "slots": [{"slot": s.slot, "model": s.model, "label": s.plan.label}
                      for s in self.slots],
        })])
        send, receive = trio.open_memory_channel[Item](self.settings.channel_size)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._watch_readers)
            async with send:
                for state in self.slots:
                    nursery.start_soon(run_slot, state, send.clone())
            task_status.started()
            await merge(receive, self.log)
            now = trio.current_time()
            self.ended_at = now
            counts = {"done": 0, "error": 0, "stopped": 0}
            names = {DONE: "done", ERROR: "error", STOPPED: "stopped"}
            for state in self.slots:
                counts[names[state.state]] += 1
            await self.log.append([("stream.done", {
                "counts": counts, "duration_ms": round((now - self.started_at) * 1000, 1),
            })])
            self.log.close()
            self.done.set()
            nursery.cancel_scope.cancel()  # the reader watch is no longer needed
        log.info("stream=%s done slots=%d done=%d error=%d stopped=%d", self.id,
                 len(self.slots), counts["done"], counts["error"], counts["stopped"])

    def stop(self, slots: Iterable[int] | None = None, reason: str = "user") -> None:
        """Cancel the given slots' scopes (all when ``None``). Ended slots are left alone."""
        chosen = self.slots if slots is None else [self.slots[i] for i in slots]
        for state in chosen:
            state.stop(reason)

    async def wait_ended(self, slots: Iterable[int] | None = None) -> None:
        """Until the given slots (all when ``None``) have their terminal event logged."""
        chosen = self.slots if slots is None else [self.slots[i] for i in slots]
        for state in chosen:
            await state.ended.wait()

    # -- readers --------------------------------------------------------------------------

    def attach(self) -> None:
        self._readers += 1
        self._had_reader = True
        self._readers_changed.set()
        self._readers_changed = trio.Event()

    def detach(self) -> None:
        self._readers -= 1
        self._readers_changed.set()
        self._readers_changed = trio.Event()

    @property
    def readers(self) -> int:
        return self._readers

    async def _watch_readers(self) -> None:
        """Stop every slot once nobody has been reading for the allowed time.

        A stream that never had a reader waits ``attach_timeout``; after that, the clock
        starts when the last reader leaves and a returning reader resets it.
        """
        while True:
            changed = self._readers_changed
            if self._readers > 0:
                await changed.wait()
                continue
            s = self.settings
            with trio.move_on_after(s.resume_grace if self._had_reader else s.attach_timeout):
                await changed.wait()
                continue
            log.info("stream=%s no reader left: stopping", self.id)
            self.stop(None, "disconnect")
            return

    async def entries(
        self, after: int = 0, *, attached: bool = False
    ) -> AsyncGenerator[list[LogEntry], None]:
        """One reader's view of the log: batches of entries after ``after``, then live ones,
        until ``stream.done``. An empty batch means ``settings.ping`` seconds passed with
        nothing new (time for a keep-alive).

        Everything already logged comes in one batch, so a reader that lags catches up in
        few writes and needs no buffer of its own. The reader counts as attached while
        this generator runs; leaving (the client disconnects and the response is
        cancelled or closed) detaches it in ``finally``. ``attached=True`` takes over a
        reader the stream was created with.
        """
        if not attached:
            self.attach()
        try:
            while True:
                batch = await self.log.since(after)
                if batch:
                    after = batch[-1].id
                    yield batch
                    continue
                if self.log.closed:
                    return
                with trio.move_on_after(self.settings.ping) as timer:
                    await self.log.wait(after)
                if timer.cancelled_caught:
                    yield []
        finally:
            self.detach()

    async def follow(self, after: int = 0, *, attached: bool = False) -> AsyncIterator[bytes]:
        """The SSE body for one reader: each batch of entries as one write, or a ping."""
        async with aclosing(self.entries(after, attached=attached)) as batches:
            async for batch in batches:
                yield b"".join([e.wire for e in batch]) if batch else PING

    # -- views ----------------------------------------------------------------------------

    def snapshot(self) -> dict[str, object]:
        slots = []
        for s in self.slots:
            slots.append({
                "slot": s.slot, "model": s.model, "label": s.plan.label, "state": s.state,
                "text": "".join(s.text), "reasoning": "".join(s.reasoning),
                "finish_reason": s.finish_reason, "error": s.error,
                "stop_reason": s.stop_reason, "usage": s.usage or None,
                "timing": s.timing or None,
            })
        return {
            "id": self.id, "created": int(self.created),
            "state": "done" if self.done.is_set() else "running",
            "last_event_id": self.log.last_id, "slots": slots,
        }
