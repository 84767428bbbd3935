"""An opt-in probe: how long each stream's merge loop waited, runnable, behind other tasks.

A trio instrument, installed only when ``CHORUS_MERGE_PROBE`` names a file, so it costs
nothing otherwise. It times the merge task (the task that runs ``Stream.run``) from the
moment trio makes it runnable (an item arrived, or its checkpoint passed) to the moment it
runs again: the time it waited behind producers and response writers. The design this
replaces (threads and a queue) starved its consumer for up to 130 s under load. When a
stream's task ends, one JSON line with its figures is appended to the file.
"""

from __future__ import annotations

import gc
import json
import os
import time
from typing import Any

import trio

ENV = "CHORUS_MERGE_PROBE"
_MERGE_TASK = "Hub._life"  # the task that runs Stream.run, and with it the merge loop


class MergeProbe(trio.abc.Instrument):
    def __init__(self, path: str) -> None:
        self.path = path
        self._is_merge: dict[trio.lowlevel.Task, bool] = {}
        self._scheduled: dict[trio.lowlevel.Task, tuple[float, float]] = {}
        self._waits: dict[trio.lowlevel.Task, list[tuple[float, float]]] = {}
        self._gc_started = 0.0
        self.gc_max = 0.0  # the longest garbage collection so far (it stops every task)
        gc.callbacks.append(self._gc)

    def _gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            self.gc_max = max(self.gc_max, time.perf_counter() - self._gc_started)

    def _merge(self, task: trio.lowlevel.Task) -> bool:
        known = self._is_merge.get(task)
        if known is None:
            known = self._is_merge[task] = task.name.endswith(_MERGE_TASK)
        return known

    def task_scheduled(self, task: trio.lowlevel.Task) -> None:
        if self._merge(task):
            self._scheduled[task] = (time.perf_counter(), time.thread_time())

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        since = self._scheduled.pop(task, None)
        if since is not None:
            wall, cpu = since
            self._waits.setdefault(task, []).append(
                (time.perf_counter() - wall, time.thread_time() - cpu))

    def task_exited(self, task: trio.lowlevel.Task) -> None:
        self._is_merge.pop(task, None)
        self._scheduled.pop(task, None)
        waits = self._waits.pop(task, None)
        if not waits:
            return
        line: dict[str, float] = {"wakeups": len(waits),
                                  "gc_max_ms": round(self.gc_max * 1000, 3)}
        for i, name in ((0, "wall"), (1, "cpu")):
            ordered = sorted(w[i] for w in waits)
            line[f"{name}_max_ms"] = round(ordered[-1] * 1000, 3)
            line[f"{name}_p99_ms"] = round(ordered[int(0.99 * (len(ordered) - 1))] * 1000, 3)
            line[f"{name}_p50_ms"] = round(ordered[len(ordered) // 2] * 1000, 3)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(line) + "\n")


def install_from_env() -> None:
    """Add the probe to the running trio loop if ``CHORUS_MERGE_PROBE`` is set."""
    path = os.environ.get(ENV)
    if path:
        trio.lowlevel.add_instrument(MergeProbe(path))
