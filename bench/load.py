"""Closed-loop load: N streams kept open at once, each restarted as soon as it ends.

Streams start spread over one answer's length, so their tokens interleave the way real
traffic does, rather than arriving in lock-step. The server's CPU is read from /proc
around the window, so each run also gives the CPU cost per relayed token.
"""

from __future__ import annotations

import itertools
import random
import time
from dataclasses import dataclass
from typing import Any

import trio

from .client import StreamResult, Target, run_stream
from .procs import CpuTicks, Proc, cpu_ticks
from .stats import summary

_tags = itertools.count()


@dataclass(frozen=True, slots=True)
class Load:
    streams: int  # client streams open at once
    slots: int  # models per stream (Chorus); 1 elsewhere
    model: str
    duration: float  # seconds during which new streams start
    grace: float  # seconds the last streams get to finish before they are cut
    stagger: float  # starts are spread over this many seconds


@dataclass(slots=True)
class Sample:
    """One run's raw results: runs of the same load pool into one summary (``pooled``)."""

    results: list[StreamResult]
    wall: float  # seconds
    cpu: float  # server CPU seconds
    ticks: CpuTicks  # of every core: the server's and the load's are both on a token's path


async def run_load(target: Target, load: Load, proc: Proc | None) -> dict[str, Any]:
    sample = await collect(target, load, proc)
    return summarise(sample.results, sample.wall, sample.cpu, sample.ticks)


def pooled(samples: list[Sample]) -> dict[str, Any]:
    """One summary over every run's streams (percentiles over all their tokens)."""
    return summarise([r for s in samples for r in s.results], sum(s.wall for s in samples),
                     sum(s.cpu for s in samples), sum((s.ticks for s in samples), CpuTicks()))


async def collect(target: Target, load: Load, proc: Proc | None) -> Sample:
    results: list[StreamResult] = []
    start = time.monotonic_ns()
    stop_at = start + int(load.duration * 1e9)
    hard = stop_at + int(load.grace * 1e9)
    cpu0 = proc.cpu() if proc else 0.0
    ticks0 = cpu_ticks()
    rng = random.Random(7)

    async def worker(delay: float) -> None:
        await trio.sleep(delay)
        while time.monotonic_ns() < stop_at:
            tag = f"L{next(_tags)}"
            results.append(await run_stream(target, load.model, tag, load.slots,
                                            deadline_ns=hard))

    async with trio.open_nursery() as nursery:
        for _ in range(load.streams):
            nursery.start_soon(worker, rng.uniform(0, load.stagger))
    wall = (time.monotonic_ns() - start) / 1e9
    cpu = (proc.cpu() - cpu0) if proc else 0.0
    return Sample(results, wall, cpu, cpu_ticks() - ticks0)


def summarise(results: list[StreamResult], wall: float, cpu: float,
              ticks: CpuTicks) -> dict[str, Any]:
    first: list[float] = []
    lags: list[float] = []
    tokens = 0
    for r in results:
        first += r.first_lags_us
        lags += r.lags_us
        tokens += r.tokens
    errors = [r.error for r in results if r.error]
    return {
        "streams": len(results),
        "complete": sum(r.complete for r in results),
        "errors": len(errors),
        "error_kinds": sorted(set(errors))[:5],
        "tokens": tokens,
        "wall_s": round(wall, 3),
        "server_cpu_s": round(cpu, 3),
        "cpu_us_per_token": round(cpu / tokens * 1e6, 1) if tokens else None,
        "steal_pct": ticks.steal_pct,
        "tokens_per_s": round(tokens / wall, 1) if wall else None,
        "ttft_lag_ms": summary(first, 1e-3),
        "chunk_lag_ms": summary(lags, 1e-3),
    }
