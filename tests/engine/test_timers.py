"""The hub's timers: one task runs every stream's deadlines, exactly on time (MockClock)."""

from __future__ import annotations

import gc
import logging
import weakref

import pytest
import trio

from app.engine.timers import Timers


async def started(nursery: trio.Nursery) -> Timers:
    timers = Timers()
    await nursery.start(timers.run)
    return timers


async def test_callbacks_run_at_their_time_in_order(autojump_clock) -> None:
    ran: list[tuple[str, float]] = []
    async with trio.open_nursery() as nursery:
        timers = await started(nursery)
        for name, delay in (("c", 3.0), ("a", 1.0), ("b", 2.0), ("a2", 1.0)):
            timers.call_later(delay, lambda n=name: ran.append((n, trio.current_time())))
        await trio.sleep(10)
        nursery.cancel_scope.cancel()
    assert ran == [("a", 1.0), ("a2", 1.0), ("b", 2.0), ("c", 3.0)]


async def test_an_earlier_timer_wakes_the_sleeping_task(autojump_clock) -> None:
    """The task sleeps until its earliest deadline; a new earlier one moves that deadline."""
    ran: list[float] = []
    async with trio.open_nursery() as nursery:
        timers = await started(nursery)
        timers.call_later(100, lambda: ran.append(trio.current_time()))
        await trio.sleep(1)
        timers.call_later(1, lambda: ran.append(trio.current_time()))
        timers.call_at(0, lambda: ran.append(trio.current_time()))  # past: runs at once
        await trio.sleep(200)
        nursery.cancel_scope.cancel()
    assert ran == [1.0, 2.0, 100.0]


class Owner:
    """What a callback may hold alive (a whole stream, for a retention timer)."""

    def __init__(self) -> None:
        self.ran: list[str] = []

    def fire(self) -> None:
        self.ran.append("fired")


async def test_a_cancelled_timer_never_runs_and_frees_its_callback(autojump_clock) -> None:
    owner = Owner()
    ref, ran = weakref.ref(owner), owner.ran
    async with trio.open_nursery() as nursery:
        timers = await started(nursery)
        timer = timers.call_later(5, owner.fire)
        assert len(timers) == 1
        timer.cancel()
        timer.cancel()  # twice is harmless
        assert len(timers) == 0
        del owner
        gc.collect()
        assert ref() is None, "a cancelled timer must not keep its callback's owner alive"
        await trio.sleep(10)
        nursery.cancel_scope.cancel()
    assert ran == []


async def test_a_timer_that_ran_keeps_nothing_of_its_callback(autojump_clock) -> None:
    """The timers' task sleeps between runs; what the last callback held must not stay
    alive with it."""
    owner = Owner()
    ref, ran = weakref.ref(owner), owner.ran
    async with trio.open_nursery() as nursery:
        timers = await started(nursery)
        timers.call_later(1, owner.fire)
        del owner
        await trio.sleep(2)
        gc.collect()
        assert ran == ["fired"]
        assert ref() is None, "a timer that ran must not keep its callback's owner alive"
        nursery.cancel_scope.cancel()


async def test_cancelled_timers_do_not_pile_up(autojump_clock) -> None:
    async with trio.open_nursery() as nursery:
        timers = await started(nursery)
        keep = timers.call_later(1000, lambda: None)
        for _ in range(1000):
            timers.call_later(500, lambda: None).cancel()
        assert len(timers) == 1
        assert len(timers._heap) <= 130, "the heap is compacted once most of it is dead"
        keep.cancel()
        nursery.cancel_scope.cancel()


async def test_a_failing_callback_is_logged_and_the_rest_still_run(
    autojump_clock, caplog: pytest.LogCaptureFixture,
) -> None:
    ran: list[str] = []

    def boom() -> None:
        raise ValueError("boom")

    async with trio.open_nursery() as nursery:
        timers = await started(nursery)
        timers.call_later(1, boom)
        timers.call_later(1, lambda: ran.append("after"))
        timers.call_later(2, lambda: ran.append("later"))
        with caplog.at_level(logging.ERROR, logger="chorus.timers"):
            await trio.sleep(5)
        nursery.cancel_scope.cancel()
    assert ran == ["after", "later"]
    assert "a timer callback failed" in caplog.text


async def test_a_callback_may_schedule_another(autojump_clock) -> None:
    ran: list[float] = []

    def again() -> None:
        ran.append(trio.current_time())
        if len(ran) < 3:
            timers.call_later(2, again)

    async with trio.open_nursery() as nursery:
        timers = await started(nursery)
        timers.call_later(1, again)
        await trio.sleep(10)
        nursery.cancel_scope.cancel()
    assert ran == [1.0, 3.0, 5.0]
