"""A job's window: the agent never sends more than is left, the server grants back what its
slot took (half a window at a time), and neither side's account drifts."""

from __future__ import annotations

import pytest
import trio
from trio.testing import MockClock, wait_all_tasks_blocked

from providers.agent.frames import FrameError
from providers.agent.window import Allowance, Window


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
    """The agent sends as much as it may in frames of up to three events; the slot takes
    nothing for a while, then everything. The server never sees the window overrun, and
    every event sent is granted back by the end."""
    size, total = 10, 100
    allowance, window = Allowance(size), Window(size)
    to_server, arriving = trio.open_memory_channel[int](size)  # frames: sizes
    to_agent, granting = trio.open_memory_channel[int](size)  # credit frames
    taken: list[int] = []
    resume = trio.Event()

    async def agent() -> None:
        sent = 0
        async with to_server:
            while sent < total:
                await allowance.ready()
                n = min(3, allowance.left, total - sent)
                allowance.take(n)
                sent += n
                await to_server.send(n)

    async def credits() -> None:
        async with granting:
            async for grant in granting:
                allowance.grant(grant)

    async def server() -> None:
        async with to_agent, arriving:
            async for n in arriving:
                window.arrived(n)  # raises on an overrun
                await resume.wait()
                taken.append(n)
                grant = window.taken(n)
                if grant:
                    await to_agent.send(grant)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(agent)
        nursery.start_soon(credits)
        nursery.start_soon(server)
        await trio.sleep(5)
        await wait_all_tasks_blocked()
        assert allowance.left == 0  # the agent stopped at the window: 3 + 3 + 3 + 1
        assert window.outstanding == 3  # the server took one frame in, then stalled
        resume.set()
    assert sum(taken) == total
    assert allowance.left + window.pending == size  # only the last, ungranted part is out
    assert window.outstanding == window.pending < window.threshold
