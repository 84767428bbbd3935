"""Opt-in probes for the benchmarks: trio instruments, installed only when asked for.

``CHORUS_MERGE_PROBE=FILE``: how long each stream's merge loop waited, runnable, behind
other tasks. It times the merge task (the task that runs ``Stream.run``) from the
moment trio makes it runnable (an item arrived, or its checkpoint passed) to the moment it
runs again: the time it waited behind producers and response writers. The design this
replaces (threads and a queue) starved its consumer for up to 130 s under load. When a
stream's task ends, one JSON line with its figures is appended to the file.

``CHORUS_STEP_PROBE=FILE``: where the event loop's time goes, step by step. Every task step
is timed, the garbage collector's pauses are taken out of the step they fell in (and
counted on their own), and each step over ``LONG`` is filed under the two places its task
was suspended, before and after ("from the last upstream read to the channel send"): a
step that long delays every token that arrives meanwhile, so these are what make the tail.
``CHORUS_STEP_PROBE_LONG_MS`` sets ``LONG`` (0 files every step: a census of which steps a
stream's life is made of). The file is rewritten as JSON every two seconds.

``CHORUS_TIMELINE_PROBE=PREFIX``: every task step and every collection, on the clock the
benchmarks stamp tokens with (``time.monotonic_ns``), so that a token's wait can be laid
over what the loop was doing meanwhile (``python -m bench.tail``). A step is its start, its
end, its task's name, the collector's time inside it and the thread's CPU time: a step whose
wall time runs far past its CPU time was preempted (another process, or the hypervisor).
Appended as raw int64 rows to ``PREFIX.steps`` and ``PREFIX.gc`` every second, with the
task names in ``PREFIX.names.json`` (``read_timeline`` reads them back).
"""

from __future__ import annotations

import gc
import json
import os
import time
from array import array
from dataclasses import dataclass
from typing import Any

import trio

ENV = "CHORUS_MERGE_PROBE"
STEP_ENV = "CHORUS_STEP_PROBE"
LONG_ENV = "CHORUS_STEP_PROBE_LONG_MS"
TIMELINE_ENV = "CHORUS_TIMELINE_PROBE"
STEP_FIELDS = 5  # start_ns, end_ns, name, gc_ns, cpu_ns
GC_FIELDS = 3  # start_ns, end_ns, generation
LONG = 0.0003  # seconds: a step this long is filed under its suspension points
_MERGE_TASK = "Hub._life"  # the task that runs Stream.run, and with it the merge loop


class GcPauses:
    """The garbage collector's pauses (each stops every task), from ``gc.callbacks``."""

    def __init__(self) -> None:
        self.total = 0.0  # seconds, all collections so far
        self.longest = 0.0
        # generation -> [collections, seconds, longest]
        self.by_generation: dict[str, list[float]] = {}
        self._started = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        now = time.perf_counter()
        if phase == "start":
            self._started = now
            return
        took = now - self._started
        self.total += took
        self.longest = max(self.longest, took)
        row = self.by_generation.setdefault(str(info["generation"]), [0, 0.0, 0.0])
        row[0] += 1
        row[1] += took
        row[2] = max(row[2], took)

    def close(self) -> None:
        gc.callbacks.remove(self._callback)


class MergeProbe(trio.abc.Instrument):
    def __init__(self, path: str) -> None:
        self.path = path
        self._is_merge: dict[trio.lowlevel.Task, bool] = {}
        self._scheduled: dict[trio.lowlevel.Task, tuple[float, float]] = {}
        self._waits: dict[trio.lowlevel.Task, list[tuple[float, float]]] = {}
        self.gc = GcPauses()

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
                                  "gc_max_ms": round(self.gc.longest * 1000, 3)}
        for i, name in ((0, "wall"), (1, "cpu")):
            ordered = sorted(w[i] for w in waits)
            line[f"{name}_max_ms"] = round(ordered[-1] * 1000, 3)
            line[f"{name}_p99_ms"] = round(ordered[int(0.99 * (len(ordered) - 1))] * 1000, 3)
            line[f"{name}_p50_ms"] = round(ordered[len(ordered) // 2] * 1000, 3)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(line) + "\n")


class StepProbe(trio.abc.Instrument):
    def __init__(self, path: str, every: float = 2.0, long: float = LONG) -> None:
        self.path = path
        self.every = every
        self.long_step = long
        self._written = time.perf_counter()
        self._step_started = 0.0
        self._gc_at_step = 0.0  # GC seconds when the step began: its share is taken out
        self._where_before = ""
        self._stepping: trio.lowlevel.Task | None = None
        # task name -> [steps, seconds, seconds in steps over LONG, longest]
        self.steps: dict[str, list[float]] = {}
        # "task | suspended at ==> suspended at" -> [steps, seconds, longest]
        self.long: dict[str, list[float]] = {}
        self.gc = GcPauses()

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self._stepping = task
        self._where_before = suspended_at(task)
        self._gc_at_step = self.gc.total
        self._step_started = time.perf_counter()

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        if task is not self._stepping:
            return  # the step the probe was installed in: it has no start
        now = time.perf_counter()
        took = now - self._step_started - (self.gc.total - self._gc_at_step)
        name = task.name.rsplit(".", 1)[-1]
        row = self.steps.setdefault(name, [0, 0.0, 0.0, 0.0])
        row[0] += 1
        row[1] += took
        row[3] = max(row[3], took)
        if took > self.long_step:
            row[2] += took
            where = f"{name} | {self._where_before} ==> {suspended_at(task)}"
            long = self.long.setdefault(where, [0, 0.0, 0.0])
            long[0] += 1
            long[1] += took
            long[2] = max(long[2], took)
        if now - self._written > self.every:
            self._written = now
            self.write()

    def write(self) -> None:
        ms = 1000.0
        report = {
            "steps": {k: {"steps": int(v[0]), "ms": round(v[1] * ms, 1),
                          "ms_in_long_steps": round(v[2] * ms, 1),
                          "longest_ms": round(v[3] * ms, 3)}
                      for k, v in sorted(self.steps.items(), key=lambda kv: -kv[1][1])},
            "gc": {k: {"collections": int(v[0]), "ms": round(v[1] * ms, 1),
                       "longest_ms": round(v[2] * ms, 3)}
                   for k, v in sorted(self.gc.by_generation.items())},
            "long_steps": {k: {"steps": int(v[0]), "ms": round(v[1] * ms, 1),
                               "longest_ms": round(v[2] * ms, 3)}
                           for k, v in sorted(self.long.items(), key=lambda kv: -kv[1][1])},
        }
        with open(self.path, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=1)


class TimelineProbe(trio.abc.Instrument):
    def __init__(self, prefix: str, every: float = 1.0) -> None:
        self.prefix = prefix
        self.every_ns = int(every * 1e9)
        self.names: dict[str, int] = {}
        self._steps = array("q")
        self._gcs = array("q")
        self._gc_ns = 0  # the collector's time so far
        self._gc_started = 0
        self._at_step = (0, 0, 0)  # wall, CPU and collector's time when the step began
        self._written = time.monotonic_ns()
        for suffix in (".steps", ".gc"):
            open(prefix + suffix, "wb").close()
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        now = time.monotonic_ns()
        if phase == "start":
            self._gc_started = now
            return
        self._gc_ns += now - self._gc_started
        self._gcs.extend((self._gc_started, now, info["generation"]))

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self._at_step = (time.monotonic_ns(), time.thread_time_ns(), self._gc_ns)

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        now, cpu = time.monotonic_ns(), time.thread_time_ns()
        started, cpu_started, gc_started = self._at_step
        if not started:
            return  # the step the probe was installed in: it has no start
        name = task.name.rsplit(".", 1)[-1]
        number = self.names.get(name)
        if number is None:
            number = self.names[name] = len(self.names)
            with open(self.prefix + ".names.json", "w", encoding="utf-8") as f:
                json.dump(list(self.names), f)
        self._steps.extend((started, now, number, self._gc_ns - gc_started, cpu - cpu_started))
        if now - self._written > self.every_ns:
            self._written = now
            self.flush()

    def flush(self) -> None:
        for suffix, rows in ((".steps", self._steps), (".gc", self._gcs)):
            with open(self.prefix + suffix, "ab") as f:
                rows.tofile(f)
            del rows[:]

    def close(self) -> None:
        self.flush()
        gc.callbacks.remove(self._callback)


@dataclass
class Timeline:
    """What a ``TimelineProbe`` wrote: ``steps`` and ``gcs`` as flat int64 rows."""

    names: list[str]
    steps: array[int]  # STEP_FIELDS per step
    gcs: array[int]  # GC_FIELDS per collection


def read_timeline(prefix: str) -> Timeline:
    with open(prefix + ".names.json", encoding="utf-8") as f:
        names = json.load(f)
    rows = []
    for suffix in (".steps", ".gc"):
        data = array("q")
        with open(prefix + suffix, "rb") as f:
            data.frombytes(f.read())
        rows.append(data)
    return Timeline(names, rows[0], rows[1])


# trio's scheduler internals (its traps and checkpoints): the same at every suspension.
_TRIO_CORE = os.path.dirname(trio.lowlevel.checkpoint.__code__.co_filename)


def suspended_at(task: trio.lowlevel.Task, depth: int = 3) -> str:
    """The innermost ``depth`` frames of the task's await chain outside trio's scheduler
    internals, as ``file:function:line``. (The chain ends where an async generator is
    being iterated: its own frames are not reachable from the task.)"""
    frames: list[str] = []
    awaited: Any = task.coro
    while awaited is not None:
        frame = (getattr(awaited, "cr_frame", None) or getattr(awaited, "ag_frame", None)
                 or getattr(awaited, "gi_frame", None))
        if frame is not None and not frame.f_code.co_filename.startswith(_TRIO_CORE):
            code = frame.f_code
            frames.append(f"{code.co_filename.rsplit('/', 1)[-1]}:{code.co_name}:{frame.f_lineno}")
        awaited = (getattr(awaited, "cr_await", None) or getattr(awaited, "ag_await", None)
                   or getattr(awaited, "gi_yieldfrom", None))
    return " > ".join(frames[-depth:])


def install_from_env() -> None:
    """Add the probes named in the environment to the running trio loop."""
    path = os.environ.get(ENV)
    if path:
        trio.lowlevel.add_instrument(MergeProbe(path))
    path = os.environ.get(STEP_ENV)
    if path:
        long = os.environ.get(LONG_ENV)
        trio.lowlevel.add_instrument(
            StepProbe(path, long=LONG if long is None else float(long) / 1000))
    path = os.environ.get(TIMELINE_ENV)
    if path:
        trio.lowlevel.add_instrument(TimelineProbe(path))
