"""The step probe: long steps filed under where their task was suspended, GC kept apart."""

from __future__ import annotations

import gc
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio
import trio.testing

from app.engine.probe import GC_FIELDS, STEP_FIELDS, StepProbe, TimelineProbe, read_timeline


async def probed(path: Path, *tasks: Callable[[], Awaitable[None]]) -> dict[str, Any]:
    """Run ``tasks`` at once under a step probe; its report."""
    probe = StepProbe(str(path), every=3600)
    trio.lowlevel.add_instrument(probe)
    try:
        async with trio.open_nursery() as nursery:
            for task in tasks:
                nursery.start_soon(task)
    finally:
        trio.lowlevel.remove_instrument(probe)
        probe.gc.close()
    probe.write()
    report: dict[str, Any] = json.loads(path.read_text())  # noqa: ASYNC240 - a test's small file
    return report


def busy(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


async def test_a_long_step_is_filed_under_its_suspension_points(tmp_path: Path) -> None:
    async def slow_worker() -> None:
        await trio.lowlevel.checkpoint()
        busy(0.005)  # one step of 5 ms, between the two checkpoints
        await trio.lowlevel.checkpoint()

    async def quick_worker() -> None:
        for _ in range(3):
            await trio.lowlevel.checkpoint()

    report = await probed(tmp_path / "steps.json", slow_worker, quick_worker)
    assert report["steps"]["slow_worker"]["longest_ms"] >= 5
    assert report["steps"]["quick_worker"]["ms_in_long_steps"] == 0
    [(where, long)] = [(k, v) for k, v in report["long_steps"].items()
                       if k.startswith("slow_worker |")]
    assert long["steps"] == 1
    assert long["ms"] >= 5
    before, after = where.split(" | ", 1)[1].split(" ==> ")
    assert "slow_worker" in before
    assert "slow_worker" in after


async def test_a_collection_counts_apart_from_the_step_it_fell_in(tmp_path: Path) -> None:
    took: dict[str, float] = {}

    async def collector() -> None:
        await trio.lowlevel.checkpoint()
        step_started = time.perf_counter()
        garbage = []
        for _ in range(100_000):  # cycles, so the collection has work to do
            node: list[object] = []
            node.append(node)
            garbage.append(node)
        del garbage, node
        started = time.perf_counter()
        gc.collect()
        took["gc"] = time.perf_counter() - started
        took["step"] = time.perf_counter() - step_started
        await trio.lowlevel.checkpoint()

    report = await probed(tmp_path / "steps.json", collector)
    assert report["gc"]["2"]["ms"] >= 0.9 * took["gc"] * 1000
    # The step's own time leaves the collection out (and the ones that fell in the loop).
    assert report["steps"]["collector"]["longest_ms"] <= (took["step"] - 0.9 * took["gc"]) * 1000


async def test_the_timeline_holds_every_step_and_collection_on_the_token_clock(
        tmp_path: Path) -> None:
    prefix = str(tmp_path / "timeline")
    probe = TimelineProbe(prefix, every=3600)
    before = time.monotonic_ns()

    async def worker() -> None:
        await trio.lowlevel.checkpoint()
        busy(0.004)  # one step of 4 ms of CPU
        gc.collect()
        await trio.lowlevel.checkpoint()

    trio.lowlevel.add_instrument(probe)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(worker)
    finally:
        trio.lowlevel.remove_instrument(probe)
        probe.close()
    after = time.monotonic_ns()
    timeline = read_timeline(prefix)
    rows = timeline.steps
    steps = [rows[i:i + STEP_FIELDS] for i in range(0, len(rows), STEP_FIELDS)]
    worker_steps = [s for s in steps if timeline.names[s[2]] == "worker"]
    assert len(worker_steps) == 3  # start, the busy step, the end
    start, end, _, gc_ns, cpu_ns = max(worker_steps, key=lambda s: s[1] - s[0])
    assert before <= start < end <= after
    assert end - start >= 4_000_000
    assert cpu_ns >= 3_000_000  # busy: the thread ran, it was not waiting
    pauses = [timeline.gcs[i:i + GC_FIELDS] for i in range(0, len(timeline.gcs), GC_FIELDS)]
    full = [p for p in pauses if p[2] == 2]
    assert full
    assert start <= full[-1][0] <= full[-1][1] <= end
    assert gc_ns >= full[-1][1] - full[-1][0]
