"""The step probe: long steps filed under where their task was suspended, GC kept apart."""

from __future__ import annotations

import gc
import json
import time
from pathlib import Path

import trio
import trio.testing

from app.engine.probe import StepProbe


def busy(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


async def test_a_long_step_is_filed_under_its_suspension_points(tmp_path: Path) -> None:
    probe = StepProbe(str(tmp_path / "steps.json"), every=3600)
    trio.lowlevel.add_instrument(probe)
    try:
        async def slow_worker() -> None:
            await trio.lowlevel.checkpoint()
            busy(0.005)  # one step of 5 ms, between the two checkpoints
            await trio.lowlevel.checkpoint()

        async def quick_worker() -> None:
            for _ in range(3):
                await trio.lowlevel.checkpoint()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(slow_worker)
            nursery.start_soon(quick_worker)
    finally:
        trio.lowlevel.remove_instrument(probe)
        gc.callbacks.remove(probe._gc)
    probe.write()
    report = json.loads((tmp_path / "steps.json").read_text())
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
    probe = StepProbe(str(tmp_path / "steps.json"), every=3600)
    took: dict[str, float] = {}
    trio.lowlevel.add_instrument(probe)
    try:
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

        async with trio.open_nursery() as nursery:
            nursery.start_soon(collector)
    finally:
        trio.lowlevel.remove_instrument(probe)
        gc.callbacks.remove(probe._gc)
    probe.write()
    report = json.loads((tmp_path / "steps.json").read_text())
    assert report["gc"]["2"]["ms"] >= 0.9 * took["gc"] * 1000
    # The step's own time leaves the collection out (and the ones that fell in the loop).
    assert report["steps"]["collector"]["longest_ms"] <= (took["step"] - 0.9 * took["gc"]) * 1000
