"""A job's window: the agent never sends more than is left, the server grants back what its
slot took (half a window at a time), and neither side's account drifts."""

from __future__ import annotations

from typing import Any

import pytest
import trio
from trio.testing import MockClock, wait_all_tasks_blocked

from app.agent_cli import JOB_QUEUE, OUTBOX, Running, send_events
from providers.agent.frames import FROM_AGENT, FrameError, decode
from providers.agent.window import Allowance, Window
from providers.events import ProviderEvent, TextDelta


@pytest.fixture
def clock() -> MockClock:
    return MockClock(autojump_threshold=0)


def test_the_server_charges_each_frame_and_refuses_one_over_the_window() -> None:
    window = Window(8)
    window.arrived(5)
    window.arrived(3)
    assert window.outstanding == 8
    with pytest.raises(FrameError, match="1 events with 0 left"):
        window.arrived(1)


def test_an_empty_frame_is_charged_one_event() -> None:
    window = Window(2)
    window.arrived(0)
    window.arrived(0)
    with pytest.raises(FrameError):
        window.arrived(0)


def test_taken_events_are_granted_back_once_half_a_window_is_taken() -> None:
    window = Window(8)
    window.arrived(8)
    assert window.taken(1) == 0
    assert window.taken(2) == 0
    assert window.taken(1) == 4  # half of eight: one credit frame
    assert window.outstanding == 4
    assert window.taken(4) == 4
    assert window.outstanding == 0


def test_a_window_of_one_grants_each_event() -> None:
    window = Window(1)
    window.arrived(1)
    assert window.taken(1) == 1
    window.arrived(1)  # room again


def test_the_agent_takes_no_more_than_is_left_and_credit_gives_it_back() -> None:
    allowance = Allowance(4)
    allowance.take(3)
    assert allowance.left == 1
    with pytest.raises(ValueError, match="2 events with 1 left"):
        allowance.take(2)
    allowance.grant(3)
    assert allowance.left == 4
    with pytest.raises(FrameError, match="credit of 1 events with 0 outstanding"):
        allowance.grant(1)


async def test_an_agent_out_of_window_waits_for_credit_and_no_longer(
    clock: MockClock,
) -> None:
    allowance = Allowance(2)
    allowance.take(2)
    ready_at: list[float] = []

    async def sender() -> None:
        await allowance.ready()
        ready_at.append(trio.current_time())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(sender)
        await trio.sleep(30)
        await wait_all_tasks_blocked()
        assert ready_at == []  # half a minute out of window: still waiting
        allowance.grant(1)
    assert ready_at == [30]


async def test_both_accounts_agree_through_a_stalled_and_resumed_slot(
    clock: MockClock,
) -> None:
    """The agent's own sender (``send_events``) sends a job's events as they come; the
    server's reader charges each frame the moment it arrives, as the route does, never
    waiting for the slot; the slot takes nothing for a while, then everything. The agent
    stops at exactly one window, the server never sees it overrun (``Window.arrived``
    raises if it does), and every event is granted back by the end."""
    size, total = 10, 100
    running, window = Running(trio.CancelScope(), Allowance(size)), Window(size)
    upstream, events = trio.open_memory_channel[dict[str, Any]](JOB_QUEUE)
    outbox, wire = trio.open_memory_channel[str](OUTBOX)
    # As the pool's: room for every frame a window allows, so the reader never waits.
    to_slot, arrived = trio.open_memory_channel[list[ProviderEvent]](size + 1)
    taken: list[ProviderEvent] = []
    resume = trio.Event()

    async def model() -> None:
        async with upstream:
            for i in range(total):
                await upstream.send({"text": str(i)})

    async def agent() -> None:
        async with outbox:
            await send_events("1", events, running, outbox)

    async def reader() -> None:
        async with to_slot:
            async for text in wire:
                frame = decode(text, *FROM_AGENT)
                window.arrived(len(frame["events"]))
                to_slot.send_nowait(frame["events"])

    async def slot() -> None:
        await resume.wait()
        async with arrived:
            async for carried in arrived:
                taken.extend(carried)
                grant = window.taken(len(carried))
                if grant:  # a credit frame, in order on the wire
                    running.allowance.grant(grant)

    async with trio.open_nursery() as nursery:
        for task in (model, agent, reader, slot):
            nursery.start_soon(task)
        await trio.sleep(5)
        await wait_all_tasks_blocked()
        assert running.allowance.left == 0  # the agent stopped at the window...
        assert window.outstanding == size  # ...which the server holds, all of it
        resume.set()
    assert taken == [TextDelta(str(i)) for i in range(total)]
    assert running.allowance.left + window.pending == size  # only the ungranted part is out
    assert window.outstanding == window.pending < window.threshold
