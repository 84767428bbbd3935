"""Chorus's server with its merge loop timed from outside: ``python -m bench.probed``.

    .venv/bin/python -m bench.probed --config chorus.toml --port 8001 --out merge.jsonl

The server is the shipped one (``app.cli.run_server``, what ``chorus serve`` runs), started
under ``trio.run(..., instruments=[MergeWait(...)])``: trio's public hook for watching its
scheduler. So the product carries no probe, and a server started the usual way pays nothing
for one.

``MergeWait`` times each stream's merge task (the task whose name ends with ``--task``)
from the moment trio makes it runnable (an item arrived, or its checkpoint passed) to the
moment it runs: how long it waited behind producers and response writers. Wall time, and
the server thread's CPU time meanwhile (the work it waited behind, without the moments the OS
gave the core to another process). When such a task ends, one JSON line of its figures is
appended to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import trio

from app.cli import run_server
from app.config import load_config
from app.logs import configure_logging

# The task that runs a stream's merge loop, as trio names it (its function's qualified name).
MERGE_TASK = "Hub._life"


class MergeWait(trio.abc.Instrument):
    def __init__(self, out: Path, task_suffix: str = MERGE_TASK) -> None:
        self.out = out
        self.suffix = task_suffix
        self._watched: dict[trio.lowlevel.Task, bool] = {}
        self._runnable_at: dict[trio.lowlevel.Task, tuple[float, float]] = {}
        self._waits: dict[trio.lowlevel.Task, list[tuple[float, float]]] = {}

    def _is_merge(self, task: trio.lowlevel.Task) -> bool:
        known = self._watched.get(task)
        if known is None:
            known = self._watched[task] = task.name.endswith(self.suffix)
        return known

    def task_scheduled(self, task: trio.lowlevel.Task) -> None:
        if self._is_merge(task):
            self._runnable_at[task] = (time.perf_counter(), time.thread_time())

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        since = self._runnable_at.pop(task, None)
        if since is not None:
            self._waits.setdefault(task, []).append(
                (time.perf_counter() - since[0], time.thread_time() - since[1]))

    def task_exited(self, task: trio.lowlevel.Task) -> None:
        self._watched.pop(task, None)
        self._runnable_at.pop(task, None)
        waits = self._waits.pop(task, None)
        if waits:
            with self.out.open("a", encoding="utf-8") as f:
                f.write(json.dumps(summarise(waits)) + "\n")


def summarise(waits: list[tuple[float, float]]) -> dict[str, float]:
    """Wake-ups, and p50 / p99 / max of the (wall, CPU) waits, in milliseconds."""
    line: dict[str, float] = {"wakeups": len(waits)}
    for i, kind in enumerate(("wall", "cpu")):
        ordered = sorted(w[i] for w in waits)
        for name, q in (("p50", 0.5), ("p99", 0.99), ("max", 1.0)):
            line[f"{kind}_{name}_ms"] = round(ordered[int(q * (len(ordered) - 1))] * 1000, 3)
    return line


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.probed",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="Chorus's TOML config file")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True, help="where the JSON lines go")
    parser.add_argument("--task", default=MERGE_TASK,
                        help=f"how the merge task's name ends (default {MERGE_TASK})")
    args = parser.parse_args(argv)
    config = load_config(args.config)
    configure_logging(config.server.log_level)  # as ``chorus serve`` does: log lines cost CPU
    trio.run(run_server, config, "127.0.0.1", args.port,
             instruments=[MergeWait(args.out, args.task)])


if __name__ == "__main__":
    main()
