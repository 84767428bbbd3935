"""The engine's contract, run without a server under trio's MockClock (exact and fast)."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest
import trio
import trio.testing

from app.engine import Hub, Stream, StreamSettings
from app.engine.events import Delta, ModelStart, Reasoning
from app.engine.log import MemoryEventLog
from app.engine.merge import coalesce
from providers import Finish, TextDelta, Usage

from ..support.engine import (
    DEMO,
    Event,
    Scripted,
    by_slot,
    collect,
    parse,
    plans,
    route,
    run,
    text_of,
)

TERMINAL = {"model.done", "model.error", "model.stopped"}


def assert_grammar(events: list[Event], n_slots: int) -> None:
    """The stream grammar every client relies on."""
    assert [e.id for e in events] == list(range(1, len(events) + 1))
    assert events[0].type == "stream.start"
    assert [s["slot"] for s in events[0].data["slots"]] == list(range(n_slots))
    assert events[-1].type == "stream.done"
    assert sum(e.type == "stream.done" for e in events) == 1
    outcomes: Counter[str] = Counter()
    for slot in range(n_slots):
        mine = by_slot(events, slot)
        terminal = [e for e in mine if e.type in TERMINAL]
        assert len(terminal) == 1, f"slot {slot} has {len(terminal)} terminal events"
        assert mine[-1] is terminal[0], "the terminal event is the slot's last"
        starts = [e for e in mine if e.type == "model.start"]
        assert len(starts) <= 1
        texts = [e for e in mine if e.type in ("delta", "reasoning")]
        if texts:
            assert starts
            assert starts[0].id < texts[0].id
        outcomes[terminal[0].type.split(".")[1]] += 1
        assert set(terminal[0].data) >= {"slot", "usage", "timing"}
    assert events[-1].data["counts"] == {
        "done": outcomes["done"], "error": outcomes["error"], "stopped": outcomes["stopped"]}


async def test_every_slot_ends_once_and_the_stream_ends_last(autojump_clock) -> None:
    async def stop_third(stream):
        await trio.sleep(0.5)
        stream.stop([2])

    events = await run(plans("fast", "flaky", "slow", "thinker"), during=stop_third)
    assert_grammar(events, 4)
    kinds = {slot: by_slot(events, slot)[-1].type for slot in range(4)}
    assert kinds == {0: "model.done", 1: "model.error", 2: "model.stopped", 3: "model.done"}
    assert text_of(events, 3, "reasoning")
    assert text_of(events, 3)


async def test_slots_run_at_once_so_the_total_is_the_slowest(autojump_clock) -> None:
    start = trio.current_time()
    events = await run(plans("ttft=1,rate=10,tokens=10", "ttft=2,rate=10,tokens=10",
                             "ttft=3,rate=10,tokens=10"))
    # The slowest alone: 3 s to its first token, then 9 gaps of 0.1 s.
    assert trio.current_time() - start == pytest.approx(3.9)
    assert events[-1].data["duration_ms"] == pytest.approx(3900, abs=1)
    for slot, ttft in enumerate((1000, 2000, 3000)):
        assert by_slot(events, slot)[-1].data["timing"]["ttft_ms"] == pytest.approx(ttft)


async def test_slots_interleave_on_the_wire(autojump_clock) -> None:
    events = await run(plans("ttft=0.1,rate=10,tokens=8", "ttft=0.15,rate=10,tokens=8"))
    order = [e.data["slot"] for e in events if e.type == "delta"]
    switches = sum(a != b for a, b in itertools.pairwise(order))
    assert switches >= 10  # 0,1,0,1… not 0,0,…,1,1,…


async def test_stopping_one_slot_leaves_the_others_running(autojump_clock) -> None:
    async def stop_middle(stream):
        await trio.sleep(1.0)
        stream.stop([1])
        await stream.wait_ended([1])
        assert stream.slots[0].state == "running"

    events = await run(plans("ttft=0.1,rate=10,tokens=30", "ttft=0.1,rate=10,tokens=30",
                             "ttft=0.1,rate=10,tokens=30"), during=stop_middle)
    assert_grammar(events, 3)
    stopped = by_slot(events, 1)[-1]
    assert stopped.type == "model.stopped"
    assert stopped.data["reason"] == "user"
    assert stopped.at == pytest.approx(1.0)
    # Ten tokens had arrived (at 0.1 s, then every 0.1 s): the usage counts what was sent.
    assert stopped.data["usage"]["output_tokens"] > 0
    assert stopped.data["usage"]["estimated"] is True
    assert by_slot(events, 0)[-1].type == by_slot(events, 2)[-1].type == "model.done"
    assert by_slot(events, 0)[-1].data["usage"]["output_tokens"] == 30


async def test_stop_is_idempotent_and_ignores_ended_slots(autojump_clock) -> None:
    async def stop_twice(stream):
        await stream.wait_ended([0])
        stream.stop([0])  # already done: nothing changes
        stream.stop([1])
        stream.stop([1])

    events = await run(plans("ttft=0,rate=0,tokens=2", "hang"), during=stop_twice)
    assert_grammar(events, 2)
    assert by_slot(events, 0)[-1].type == "model.done"
    assert [e.type for e in by_slot(events, 1)] == ["model.start", "model.stopped"]


async def test_a_slow_slot_is_never_starved_by_fast_ones() -> None:
    """The old design's bug: a consumer starved behind busy producers. Nine slots stream as
    fast as they can; the tenth, slow one must get its first delta out while they run."""
    fast = "ttft=0,rate=0,tokens=3000"
    events = await run(plans(*[fast] * 9, "ttft=0.01,rate=0,tokens=5"))
    assert_grammar(events, 10)
    slow_first = next(e.id for e in events if e.type == "delta" and e.data["slot"] == 9)
    fast_done = [by_slot(events, s)[-1].id for s in range(9)]
    assert slow_first < min(fast_done), "the slow slot waited for the fast ones to finish"


class SlowLog(MemoryEventLog):
    """A log whose appends take time, so the slots outrun the merge task."""

    async def append(self, events):
        await trio.sleep(0.01)
        return await super().append(events)


async def test_a_lagging_merge_coalesces_text_without_losing_or_reordering_any(
    autojump_clock,
) -> None:
    hub = Hub(StreamSettings(resume_grace=0, channel_size=16), log_factory=SlowLog)
    async with trio.open_nursery() as nursery:
        await nursery.start(hub.run)
        stream = await hub.open("o", plans(*["ttft=0,rate=1000,tokens=300"] * 3), reader=True)
        events = await collect(stream, attached=True)
        hub.close()
    assert_grammar(events, 3)
    deltas = [e for e in events if e.type == "delta"]
    assert len(deltas) < 300  # 900 tokens went out in far fewer events
    # Each slot's text is whole and in order: the same as a run where nothing lagged.
    alone = await run(plans("ttft=0,rate=1000,tokens=300"))
    for slot in range(3):
        assert text_of(events, slot) == text_of(alone, 0)


def test_coalescing_joins_each_slots_consecutive_text_of_one_kind() -> None:
    batch = [Delta(0, "a"), Delta(1, "x"), Delta(0, "b"), Reasoning(0, "r"), Delta(0, "c"),
             ModelStart(2, "m"), Delta(1, "y")]
    assert coalesce(batch) == [Delta(0, "ab"), Delta(1, "xy"), Reasoning(0, "r"),
                               Delta(0, "c"), ModelStart(2, "m")]
    assert coalesce([Delta(0, "only")]) == [Delta(0, "only")]


async def test_every_reader_sees_the_same_events_under_the_same_ids(autojump_clock) -> None:
    hub = Hub(StreamSettings(resume_grace=0))
    async with trio.open_nursery() as nursery:
        await nursery.start(hub.run)
        stream = await hub.open("o", plans("fast", "thinker"), reader=True)
        results: list[list[Event]] = []

        async def late_reader():
            await trio.sleep(0.7)
            results.append(await collect(stream))

        async with trio.open_nursery() as readers:
            readers.start_soon(late_reader)
            first = await collect(stream, attached=True)
        hub.close()
    assert [(e.id, e.type, e.data) for e in first] == [(e.id, e.type, e.data) for e in results[0]]


async def test_a_stream_is_forgotten_after_retention_and_its_log_freed(autojump_clock):
    hub = Hub(StreamSettings(resume_grace=0, retention=60))
    async with trio.open_nursery() as nursery:
        await nursery.start(hub.run)
        stream = await hub.open("o", plans("fast"), reader=True)
        events = await collect(stream, attached=True)
        await trio.sleep(59)
        assert hub.get(stream.id, "o") is stream
        assert stream.log.last_id == len(events)
        await trio.sleep(2)
        assert hub.get(stream.id, "o") is None
        assert stream.log.last_id == 0
        hub.close()


def task_count() -> int:
    """Every task of this trio run, found from the root task down."""
    todo, count = [trio.lowlevel.current_root_task()], 0
    while todo:
        task = todo.pop()
        count += 1
        for nursery in task.child_nurseries:
            todo.extend(nursery.child_tasks)
    return count


async def test_a_finished_stream_is_kept_without_a_task_of_its_own(autojump_clock):
    # A busy server keeps thousands of finished streams for ``retention`` (ten minutes by
    # default): a sleeping task each would hold its frames and cancel scope all that time.
    hub = Hub(StreamSettings(resume_grace=0, retention=60))
    async with trio.open_nursery() as nursery:
        await nursery.start(hub.run)
        idle = task_count()
        streams = [await hub.open("o", plans("fast"), reader=True) for _ in range(3)]
        for stream in streams:
            await collect(stream, attached=True)
        await trio.testing.wait_all_tasks_blocked()
        assert task_count() == idle
        assert all(hub.get(s.id, "o") is s for s in streams)
        hub.close()


async def test_a_reader_still_reading_at_the_end_of_retention_keeps_the_log(autojump_clock):
    hub = Hub(StreamSettings(resume_grace=0, retention=60, max_read=2))
    async with trio.open_nursery() as nursery:
        await nursery.start(hub.run)
        stream = await hub.open("o", plans("fast"), reader=True)
        await stream.done.wait()
        body = stream.follow(0, attached=True)
        first = await body.__anext__()  # a reader that has taken one batch and no more
        await trio.sleep(61)
        assert hub.get(stream.id, "o") is None
        rest = [chunk async for chunk in body]
        assert parse(first + b"".join(rest), 0)[-1].type == "stream.done"
        assert stream.log.last_id > 0
        hub.close()


async def test_resume_after_an_id_gives_each_later_event_once(autojump_clock) -> None:
    hub = Hub(StreamSettings(resume_grace=10))
    async with trio.open_nursery() as nursery:
        await nursery.start(hub.run)
        stream = await hub.open("o", plans("fast", "slow"), reader=True)
        part: list[Event] = []
        body = stream.follow(0, attached=True)
        async for chunk in body:
            part.extend(parse(chunk, 0))
            if len(part) >= 20:
                break
        await body.aclose()  # the reader leaves…
        await trio.sleep(2)  # …comes back within the grace period
        rest = await collect(stream, part[-1].id)
        hub.close()
    whole = part + rest
    assert [e.id for e in whole] == list(range(1, len(whole) + 1))
    assert_grammar(whole, 2)
    assert {by_slot(whole, s)[-1].type for s in (0, 1)} == {"model.done"}


async def test_no_reader_for_the_grace_period_stops_every_slot(autojump_clock) -> None:
    hub = Hub(StreamSettings(resume_grace=3))
    async with trio.open_nursery() as nursery:
        await nursery.start(hub.run)
        stream = await hub.open("o", plans("slow", "hang"), reader=True)
        body = stream.follow(0, attached=True)
        await body.__anext__()
        left = trio.current_time()
        await body.aclose()
        await stream.done.wait()
        assert trio.current_time() - left == pytest.approx(3)
        events = await collect(stream)
        hub.close()
    assert_grammar(events, 2)
    for slot in (0, 1):
        last = by_slot(events, slot)[-1]
        assert (last.type, last.data["reason"]) == ("model.stopped", "disconnect")


async def test_a_stream_nobody_attaches_to_is_stopped_after_attach_timeout(autojump_clock):
    hub = Hub(StreamSettings(attach_timeout=30, resume_grace=0))
    async with trio.open_nursery() as nursery:
        await nursery.start(hub.run)
        start = trio.current_time()
        stream = await hub.open("o", plans("hang"))
        await stream.done.wait()
        assert trio.current_time() - start == pytest.approx(30)
        assert stream.slots[0].stop_reason == "disconnect"
        hub.close()


async def test_a_slot_that_raises_a_bug_errors_alone(autojump_clock) -> None:
    broken = Scripted([[TextDelta("partial"), RuntimeError("boom")]])
    events = await run(plans(route(broken, "m"), "ttft=0.5,rate=10,tokens=5"))
    assert_grammar(events, 2)
    error = by_slot(events, 0)[-1]
    assert error.type == "model.error"
    assert error.data["error"]["type"] == "internal"
    assert "boom" not in error.data["error"]["message"]
    assert by_slot(events, 1)[-1].type == "model.done"


async def test_usage_from_the_upstream_is_reported_and_not_estimated(autojump_clock) -> None:
    p = Scripted([[0.5, TextDelta("a b"), 0.5, TextDelta(" c"), Usage(11, 3), Finish("stop")]])
    events = await run(plans(route(p, "m")))
    done = events[-2].data
    assert done["usage"] == {"input_tokens": 11, "output_tokens": 3, "estimated": False}
    assert done["timing"]["ttft_ms"] == pytest.approx(500)
    assert done["timing"]["duration_ms"] == pytest.approx(1000)
    assert done["timing"]["tokens_per_s"] == pytest.approx(6.0)


async def test_snapshot_shows_state_and_text_so_far(autojump_clock) -> None:
    hub = Hub(StreamSettings(resume_grace=0))
    async with trio.open_nursery() as nursery:
        await nursery.start(hub.run)
        limiter = trio.CapacityLimiter(1)
        stream = await hub.open("o", plans(
            route(DEMO, "ttft=0,rate=10,tokens=20", limiter=limiter),
            route(DEMO, "ttft=0,rate=10,tokens=20", limiter=limiter)))
        await trio.sleep(0.55)
        snap = await stream.snapshot()
        states = {s["state"]: s for s in snap["slots"]}
        assert sorted(states) == ["queued", "running"]
        assert states["running"]["text"].split()[:2] == ["This", "is"]
        assert states["queued"]["text"] == ""
        stream.stop()
        await stream.done.wait()
        assert [s["state"] for s in (await stream.snapshot())["slots"]] == ["stopped", "stopped"]
        hub.close()


async def test_a_silent_stream_is_pinged_and_a_busy_one_is_not(autojump_clock) -> None:
    """Keep-alives come from one tick per stream: after ``ping`` to ``2 * ping`` seconds of
    silence, every reader gets an empty batch (``: ping`` on the wire); a stream that logs
    something in every tick is never pinged."""
    silent = Scripted([[10.0, TextDelta("late"), Finish("stop")]])
    busy = Scripted([[x for _ in range(20) for x in (0.5, TextDelta("t"))] + [Finish("stop")]])
    settings = StreamSettings(resume_grace=0, ping=1.0)
    for provider, expect in ((silent, True), (busy, False)):
        hub = Hub(settings)
        pings: list[float] = []
        async with trio.open_nursery() as nursery:
            await nursery.start(hub.run)
            stream = await hub.open("owner", plans(route(provider, "m")), reader=True)
            async for batch in stream.entries(0, attached=True):
                if not batch:
                    pings.append(trio.current_time() - stream.started_at)
            hub.close()
        if expect:
            assert pings, "a silent stream must be pinged"
            assert 1.0 <= pings[0] <= 2.0
            assert all(1.0 - 1e-9 <= b - a <= 2.0 for a, b in itertools.pairwise(pings))
            assert pings[-1] <= 10.0
        else:
            assert pings == []


async def test_a_stream_whose_machinery_fails_ends_alone(autojump_clock, caplog) -> None:
    # Not a model's failure (those are events) but the stream's own: here its log refuses
    # an append. The stream's reader ends without stream.done; the hub and the stream
    # beside it go on, and the hub still opens streams.
    class Fragile(MemoryEventLog):
        def append_nowait(self, events):
            if any(getattr(event, "text", None) == "boom" for event in events):
                raise RuntimeError("a bug in the log")
            return super().append_nowait(events)

    steady = Scripted([[x for i in range(6) for x in (0.5, TextDelta(f"t{i} "))]
                       + [Finish("stop")]])
    breaking = Scripted([[1.0, TextDelta("boom"), Finish("stop")]])
    hub = Hub(StreamSettings(resume_grace=0), log_factory=Fragile)
    got: dict[str, list[Event]] = {}

    async def read(name: str, stream: Stream) -> None:
        got[name] = await collect(stream, attached=True)

    async with trio.open_nursery() as nursery:
        await nursery.start(hub.run)
        broken = await hub.open("owner", plans(route(breaking, "m")), reader=True)
        fine = await hub.open("owner", plans(route(steady, "m")), reader=True)
        nursery.start_soon(read, "broken", broken)
        nursery.start_soon(read, "fine", fine)
        await fine.done.wait()
        await broken.done.wait()
        assert hub.active == 0
        got["after"] = await collect(await hub.open("owner", plans("fast"), reader=True),
                                     attached=True)
        hub.close()
    assert "stream.done" not in [e.type for e in got["broken"]]
    assert_grammar(got["fine"], 1)
    assert text_of(got["fine"], 0) == "".join(f"t{i} " for i in range(6))
    assert_grammar(got["after"], 1)
    assert "failed and ends" in caplog.text
