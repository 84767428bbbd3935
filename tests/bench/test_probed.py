"""The merge loop's probe: a trio instrument handed to ``trio.run`` from outside Chorus, which
times how long a named task waited, runnable, behind the others."""

from __future__ import annotations

import json
import time
from pathlib import Path

import trio

from bench.probed import MergeWait, summarise


def test_the_summary_gives_wakeups_and_quantiles_in_milliseconds() -> None:
    waits = [(i / 1000, i / 2000) for i in range(1, 101)]  # 1..100 ms wall, half that CPU
    line = summarise(waits)
    assert line["wakeups"] == 100
    assert line["wall_max_ms"] == 100.0
    assert line["wall_p50_ms"] == 50.0
    assert line["wall_p99_ms"] == 99.0
    assert line["cpu_max_ms"] == 50.0
    assert summarise([(0.002, 0.001)]) == {
        "wakeups": 1, "wall_p50_ms": 2.0, "wall_p99_ms": 2.0, "wall_max_ms": 2.0,
        "cpu_p50_ms": 1.0, "cpu_p99_ms": 1.0, "cpu_max_ms": 1.0}


def _busy(seconds: float) -> None:
    """Work on the CPU without a checkpoint: every other runnable task waits behind it."""
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


async def merger(ready: trio.MemoryReceiveChannel[int]) -> None:
    async for _ in ready:
        pass


async def producer(send: trio.MemorySendChannel[int]) -> None:
    async with send:
        for i in range(5):
            send.send_nowait(i)  # the merger becomes runnable ...
            _busy(0.02)  # ... and waits while this step goes on
            await trio.lowlevel.checkpoint()


async def stream() -> None:
    send, receive = trio.open_memory_channel[int](10)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(merger, receive)
        nursery.start_soon(producer, send)


def test_a_watched_task_s_wait_behind_a_busy_producer_is_one_line_when_it_ends(
        tmp_path: Path) -> None:
    out = tmp_path / "waits.jsonl"
    trio.run(stream, instruments=[MergeWait(out, "merger")])
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(lines) == 1  # one watched task, one line; the producer is not watched
    line = lines[0]
    assert line["wakeups"] >= 5
    assert line["cpu_max_ms"] >= 15.0  # 20 ms of work held it
    # CPU time cannot outrun wall time, but the two clocks tick apart: allow their granularity.
    assert line["cpu_max_ms"] <= line["wall_max_ms"] + 0.5
    assert line["cpu_p50_ms"] <= line["cpu_max_ms"]


def test_no_task_of_that_name_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "waits.jsonl"
    trio.run(stream, instruments=[MergeWait(out, "Hub._life")])
    assert not out.exists()
