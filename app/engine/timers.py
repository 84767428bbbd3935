"""Deadlines for every stream of a hub, kept by one task.

A stream needs two timers: the reader watch (stop the slots once nobody has read the
stream for ``resume_grace``/``attach_timeout``) and the stall watch (cut off a reader stuck
in one write for ``stall_timeout``). As a task each, they cost two tasks, two cancel
scopes and their frames per stream: about 9 KB of a stream's ~72 KB with 1000 open
(``bench/findings.md``). Here they are entries in one heap, run by one task that sleeps
until the earliest: a deadline moved by setting the task's cancel scope deadline, never a
poll.

Callbacks run in the timer task, synchronously: they must be quick and must not raise
(an exception is logged and dropped, as an observer's is).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
from collections.abc import Callable

import trio

log = logging.getLogger("chorus.timers")


class Timer:
    """One pending call; ``cancel()`` it and it never runs.

    A cancelled timer drops its callback at once (so whatever the callback held, a whole
    stream, can be freed) and leaves the heap when due, or when cancelled timers make up
    most of it.
    """

    __slots__ = ("_timers", "callback", "seq", "when")

    def __init__(self, timers: Timers, when: float, seq: int,
                 callback: Callable[[], None]) -> None:
        self._timers = timers
        self.when = when
        self.seq = seq
        self.callback: Callable[[], None] | None = callback

    def __lt__(self, other: Timer) -> bool:
        return (self.when, self.seq) < (other.when, other.seq)

    def cancel(self) -> None:
        if self.callback is not None:
            self.callback = None
            self._timers._cancelled_one()


class Timers:
    def __init__(self) -> None:
        self._heap: list[Timer] = []
        self._seq = itertools.count()
        self._sleep: trio.CancelScope | None = None
        self._cancelled = 0  # cancelled timers still in the heap

    def call_at(self, when: float, callback: Callable[[], None]) -> Timer:
        """Run ``callback()`` at trio time ``when`` (at once if it is past)."""
        timer = Timer(self, when, next(self._seq), callback)
        heapq.heappush(self._heap, timer)
        if self._sleep is not None and when < self._sleep.deadline:
            self._sleep.deadline = when
        return timer

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        return self.call_at(trio.current_time() + delay, callback)

    def __len__(self) -> int:
        """Timers that will run."""
        return len(self._heap) - self._cancelled

    def _cancelled_one(self) -> None:
        self._cancelled += 1
        heap = self._heap
        if self._cancelled > 64 and self._cancelled * 2 > len(heap):
            heap[:] = [t for t in heap if t.callback is not None]
            heapq.heapify(heap)
            self._cancelled = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run due callbacks until cancelled."""
        heap = self._heap
        started = False
        while True:
            now = trio.current_time()
            while heap and heap[0].when <= now:
                timer = heapq.heappop(heap)
                callback, timer.callback = timer.callback, None
                if callback is None:
                    self._cancelled -= 1
                    continue
                try:
                    callback()
                except Exception:
                    log.exception("a timer callback failed")
                # Not kept while this task sleeps: it may hold a whole stream.
                del callback
            with trio.CancelScope(deadline=heap[0].when if heap else math.inf) as sleep:
                self._sleep = sleep
                if not started:
                    started = True
                    task_status.started()
                await trio.sleep_forever()
            self._sleep = None
