"""What the slowest tokens waited behind: the latency load laid over the server's timeline.

    .venv/bin/python -m bench.tail                     # this tree, 50 streams for 6 s
    .venv/bin/python -m bench.tail --rounds 3 --json /tmp/tail.json
    .venv/bin/python -m bench.tail --source /tmp/chorus-other --streams 50 --seconds 6

A percentile says how late the tail tokens were, not why. Here Chorus runs with its timeline
probe (``CHORUS_TIMELINE_PROBE``, ``app/engine/probe.py``), which records every task step
(start, end, task, the collector's time in it, the thread's CPU time) and every collection
on the clock the upstream stamps tokens with. The client keeps each token's send stamp and
receive time, so each token's wait is an interval, and what the server's one thread did in
it can be read off: steps of each task (CPU), collections, time a step was preempted (its
wall time past its CPU time: another process, or the hypervisor), and time outside any step
(waiting for readiness, the kernel, or the thread not running at all).

For the tokens at or over p99, the longest single stall in their wait is its *cause*: a
collection, a preempted step, a long step of some task, or a gap between steps. Tokens
behind a stall wait for it and then for the backlog it left, so one cause explains a run
of tail tokens. The probe costs a few microseconds a step, so lags run a little higher than
in ``python -m bench``; the comparison between causes is what this is for.
"""

from __future__ import annotations

import argparse
import bisect
import collections
import json
import os
import sys
import time
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from app.engine.probe import GC_FIELDS, STEP_FIELDS, TIMELINE_ENV, Timeline, read_timeline

from . import procs
from .client import FRONTS, Target, add_front_option
from .load import Load, collect
from .scenarios import Plan

GC = "collector"
PREEMPTED = "preempted (wall past CPU)"
OUTSIDE = "outside steps"


@dataclass(frozen=True, slots=True)
class Step:
    start: int
    end: int
    task: str
    gc: int  # ns of collections inside it
    cpu: int  # ns of the thread's CPU time, collections included

    @property
    def preempted(self) -> int:
        return max(0, self.end - self.start - self.cpu)


def steps_of(timeline: Timeline) -> list[Step]:
    rows, names = timeline.steps, timeline.names
    return [Step(rows[i], rows[i + 1], names[rows[i + 2]], rows[i + 3], rows[i + 4])
            for i in range(0, len(rows), STEP_FIELDS)]


def pauses_of(timeline: Timeline) -> list[tuple[int, int, int]]:
    rows = timeline.gcs
    return [(rows[i], rows[i + 1], rows[i + 2]) for i in range(0, len(rows), GC_FIELDS)]


def _overlap(a: int, b: int, lo: int, hi: int) -> int:
    return max(0, min(b, hi) - max(a, lo))


class Attribution:
    """Answers, for any interval, what the server's thread did in it. ``steps`` and
    ``pauses`` are sorted by start; steps do not overlap (one thread)."""

    def __init__(self, steps: list[Step], pauses: list[tuple[int, int, int]]) -> None:
        self.steps = sorted(steps, key=lambda s: s.start)
        self.pauses = sorted(pauses)
        self._starts = [s.start for s in self.steps]
        self._pause_starts = [p[0] for p in self.pauses]

    def _steps_in(self, lo: int, hi: int) -> list[Step]:
        i = max(0, bisect.bisect_right(self._starts, lo) - 1)
        out = []
        while i < len(self.steps) and self.steps[i].start < hi:
            if self.steps[i].end > lo:
                out.append(self.steps[i])
            i += 1
        return out

    def spent(self, lo: int, hi: int) -> collections.Counter[str]:
        """ns of ``[lo, hi)`` by what filled it. A step partly inside counts in proportion:
        its CPU net of collections under its task's name, its collections under ``GC``,
        the rest of its wall time under ``PREEMPTED``."""
        out: collections.Counter[str] = collections.Counter()
        covered = 0
        for s in self._steps_in(lo, hi):
            inside = _overlap(s.start, s.end, lo, hi)
            covered += inside
            share = inside / max(1, s.end - s.start)
            out[s.task] += share * max(0, s.cpu - s.gc)
            out[GC] += share * s.gc
            out[PREEMPTED] += share * s.preempted
        out[OUTSIDE] += (hi - lo) - covered
        return out

    def collecting(self, lo: int, hi: int) -> bool:
        """Whether a collection ran inside ``[lo, hi)``."""
        i = max(0, bisect.bisect_right(self._pause_starts, lo) - 1)
        return any(_overlap(a, b, lo, hi) for a, b, _ in self.pauses[i:i + 2])

    def cause(self, lo: int, hi: int) -> tuple[str, int]:
        """The longest single stall inside ``[lo, hi)``, and its ns: one step's CPU (net of
        collections; named by task), one collection, one step's preemption, or one gap
        between steps."""
        best: tuple[str, int] = (OUTSIDE, 0)
        edge = lo
        for s in self._steps_in(lo, hi):
            for what, ns in ((OUTSIDE, s.start - edge), (s.task, s.cpu - s.gc),
                             (PREEMPTED, s.preempted)):
                if ns > best[1]:
                    best = (what, ns)
            edge = max(edge, s.end)
        if hi - edge > best[1]:
            best = (OUTSIDE, hi - edge)
        i = max(0, bisect.bisect_right(self._pause_starts, lo) - 1)
        while i < len(self.pauses) and self.pauses[i][0] < hi:
            ns = _overlap(self.pauses[i][0], self.pauses[i][1], lo, hi)
            if ns > best[1]:
                best = (GC, ns)
            i += 1
        return best


def _pct(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * (len(ordered) - 1)))]


def analyse(arrivals: array, timeline: Timeline, window: tuple[int, int]) -> dict[str, Any]:
    """The figures of one run: ``arrivals`` are (stamp, receive) pairs in ns, ``window`` the
    load's start and end."""
    steps = [s for s in steps_of(timeline) if s.end > window[0] and s.start < window[1]]
    pauses = [p for p in pauses_of(timeline) if p[1] > window[0] and p[0] < window[1]]
    at = Attribution(steps, pauses)
    tokens = sorted(zip(arrivals[0::2], arrivals[1::2], strict=True), key=lambda t: t[1] - t[0])
    lags = [(r - s) / 1e6 for s, r in tokens]
    span = window[1] - window[0]
    out: dict[str, Any] = {
        "tokens": len(tokens), "seconds": round(span / 1e9, 2),
        "lag_ms": {"p50": round(_pct(lags, 0.5), 3), "p99": round(_pct(lags, 0.99), 3),
                   "max": round(lags[-1], 3)},
        "busy_pct": round(100 * sum(_overlap(s.start, s.end, *window) for s in steps) / span, 1),
        "gc_pct": round(100 * sum(_overlap(a, b, *window) for a, b, _ in pauses) / span, 2),
        "preempted_ms": round(sum(s.preempted for s in steps) / 1e6, 1),
    }
    by_gen: dict[int, list[float]] = collections.defaultdict(list)
    for a, b, gen in pauses:
        by_gen[gen].append((b - a) / 1e3)
    out["collections"] = {f"gen{g}": {"count": len(v), "mean_us": round(sum(v) / len(v)),
                                      "max_us": round(max(v))} for g, v in sorted(by_gen.items())}
    by_task: dict[str, list[float]] = collections.defaultdict(list)
    for s in steps:
        by_task[s.task].append(max(0, s.cpu - s.gc) / 1e3)
    out["steps_cpu_us"] = {
        task: {"steps": len(v), "p50": round(_pct(sorted(v), 0.5), 1),
               "p99": round(_pct(sorted(v), 0.99), 1), "max": round(max(v), 1)}
        for task, v in sorted(by_task.items(), key=lambda kv: -sum(kv[1]))}
    n = len(tokens)
    # The collector stops every task: the tokens it reaches wait for it. How many it
    # reaches, against the 1 % a p99 leaves, says whether it makes the percentile.
    out["tokens_waiting_on_gc_pct"] = round(
        100 * sum(at.collecting(s, r) for s, r in tokens) / n, 2)
    bands = {"median (p45-p55)": tokens[int(0.45 * n):int(0.55 * n)],
             "p95-p99": tokens[int(0.95 * n):int(0.99 * (n - 1))],
             "p99 and over": tokens[int(0.99 * (n - 1)):]}
    out["bands"] = {}
    for name, band in bands.items():
        if not band:
            continue
        total: collections.Counter[str] = collections.Counter()
        for s, r in band:
            total.update(at.spent(s, r))
        out["bands"][name] = {
            "tokens": len(band),
            "mean_lag_ms": round(sum(r - s for s, r in band) / len(band) / 1e6, 3),
            "mean_ms_by_what": {k: round(v / len(band) / 1e6, 3) for k, v in total.most_common()}}
    causes: collections.Counter[str] = collections.Counter()
    cause_ms: collections.Counter[str] = collections.Counter()
    for s, r in bands["p99 and over"]:
        what, ns = at.cause(s, r)
        causes[what] += 1
        cause_ms[what] += ns
    out["tail_causes"] = {k: {"tokens": v, "mean_stall_ms": round(cause_ms[k] / v / 1e6, 3)}
                          for k, v in causes.most_common()}
    return out


def measure(source: Path, streams: int, seconds: float, front: str = "streams",
            model: str = Plan.latency_model) -> dict[str, Any]:
    """One warm-up and one measured run of the latency load (answers of ``model``); the
    measured run's figures."""
    server_cores, load_cores = procs.cpus()
    os.sched_setaffinity(0, load_cores)
    workdir = procs.ROOT / "bench" / "results" / "tmp"
    workdir.mkdir(parents=True, exist_ok=True)
    prefix = str(workdir / "timeline")
    plan = Plan()
    load = Load(streams, 1, model, seconds, plan.latency_grace, stagger=1.0, arrivals=True)
    upstream = procs.upstream_proc(load_cores, workdir / "tail-upstream.log").start()
    chorus = procs.chorus_proc(upstream.port, server_cores, workdir, name="tail", source=source,
                               env={TIMELINE_ENV: prefix})
    try:
        chorus.start()
        target = Target("chorus", chorus.port, FRONTS[front])
        warm = Load(streams, 1, model, 1.0, plan.latency_grace, stagger=1.0)
        trio.run(collect, target, warm, chorus)
        start = time.monotonic_ns()
        sample = trio.run(collect, target, load, chorus)
        end = time.monotonic_ns()
        time.sleep(1.2)  # the probe writes what it holds every second
    finally:
        chorus.stop()
        upstream.stop()
    arrivals = array("q")
    for result in sample.results:
        if result.arrivals is not None:
            arrivals.extend(result.arrivals)
    figures = analyse(arrivals, read_timeline(prefix), (start, end))
    figures["steal_pct"] = round(sample.ticks.steal_pct, 2)
    return figures


def render(figures: dict[str, Any]) -> str:
    lag = figures["lag_ms"]
    lines = [f"{figures['tokens']} tokens over {figures['seconds']} s, {figures['steal_pct']} % "
             f"stolen; lag p50 {lag['p50']} ms, p99 {lag['p99']} ms, max {lag['max']} ms",
             f"thread in steps {figures['busy_pct']} % of the time, collecting "
             f"{figures['gc_pct']} %; steps preempted {figures['preempted_ms']} ms in all",
             f"tokens whose wait held a collection: {figures['tokens_waiting_on_gc_pct']} %"]
    for gen, c in figures["collections"].items():
        lines.append(f"  {gen}: {c['count']} collections, mean {c['mean_us']} us, "
                     f"max {c['max_us']} us")
    lines.append("step CPU (net of collections), us:")
    for task, c in figures["steps_cpu_us"].items():
        lines.append(f"  {task:24s} {c['steps']:7d} steps  p50 {c['p50']:8.1f}  "
                     f"p99 {c['p99']:8.1f}  max {c['max']:9.1f}")
    for band, b in figures["bands"].items():
        lines.append(f"{band}: {b['tokens']} tokens, mean lag {b['mean_lag_ms']} ms, of it (ms):")
        lines.extend(f"  {v:8.3f}  {k}" for k, v in b["mean_ms_by_what"].items() if v >= 0.001)
    lines.append("tail tokens (p99 and over) by the longest stall in their wait:")
    lines.extend(f"  {c['tokens']:5d}  {what} (mean {c['mean_stall_ms']} ms)"
                 for what, c in figures["tail_causes"].items())
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.tail",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--source", type=procs.source_tree, default=procs.ROOT,
                        help="the Chorus source tree to run (default: this one)")
    parser.add_argument("--streams", type=int, default=50, help="streams open at once")
    parser.add_argument("--seconds", type=float, default=6.0, help="length of a run")
    parser.add_argument("--rounds", type=int, default=1, help="runs, each reported")
    add_front_option(parser)
    parser.add_argument("--json", type=Path, help="also write every run's figures here")
    args = parser.parse_args(argv)
    runs = []
    for i in range(args.rounds):
        figures = measure(args.source, args.streams, args.seconds, args.front)
        runs.append(figures)
        print(f"--- run {i + 1} of {args.rounds}\n{render(figures)}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(runs, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
