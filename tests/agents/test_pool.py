"""The agent provider's pool, driven the way the route drives it: jobs go out to the least
loaded agent the moment a place is free, and a vanished agent ends its slots typed."""

from __future__ import annotations

from contextlib import aclosing

import pytest
import trio
from trio.testing import MockClock

from providers import ChatRequest, Message, ProviderConfig
from providers.agent import AgentLink, AgentPool, NoAgent
from providers.agent.frames import Frame, FrameError, loads
from providers.agent.pool import WINDOW
from providers.errors import TransportError
from providers.events import TextDelta

ASK = ChatRequest("m1", (Message("user", "hi"),))


@pytest.fixture
def clock() -> MockClock:
    return MockClock(autojump_threshold=0)


def pool() -> AgentPool:
    return AgentPool(ProviderConfig(name="lab", type="agent", api_key="t1,t2"))


def linked(capacity: int) -> tuple[AgentPool, AgentLink]:
    """A pool with one agent, box1, serving m1."""
    p = pool()
    link = AgentLink("box1", frozenset({"m1"}), capacity)
    p.attach(link)
    return p, link


async def job_of(link: AgentLink) -> Frame:
    return loads(await link.outgoing.receive())


async def collect(p: AgentPool, into: list[object]) -> None:
    try:
        async with aclosing(p.stream(ASK)) as events:
            async for event in events:
                into.append(event)
    except TransportError as exc:
        into.append(exc)


def test_the_pool_takes_its_tokens_from_the_config() -> None:
    assert pool().tokens == ("t1", "t2")


async def test_no_agent_for_the_model_fails_at_once_and_is_not_retried(
    clock: MockClock,
) -> None:
    p = pool()
    p.attach(AgentLink("box1", frozenset({"other"}), 1))
    start = trio.current_time()
    with pytest.raises(NoAgent) as caught:
        async with aclosing(p.stream(ASK)) as events:
            await events.__anext__()
    assert caught.value.type == "connection"
    assert caught.value.retryable is False
    assert caught.value.message == "no agent serving model 'm1' is connected to 'lab'"
    assert trio.current_time() == start


async def test_jobs_go_to_the_least_loaded_agent_and_wait_for_a_free_place(
    clock: MockClock,
) -> None:
    p = pool()
    small, big = AgentLink("small", frozenset({"m1"}), 1), AgentLink("big", frozenset({"m1"}), 2)
    p.attach(big)  # first: the one a first-fit pick would fill before the other
    p.attach(small)
    got: list[list[object]] = [[], [], [], []]
    async with trio.open_nursery() as nursery:
        for out in got[:2]:
            nursery.start_soon(collect, p, out)
            await trio.testing.wait_all_tasks_blocked()
        assert (small.running, big.running) == (1, 1)  # the second went to the idle one
        nursery.start_soon(collect, p, got[2])
        await trio.testing.wait_all_tasks_blocked()
        assert (small.running, big.running) == (1, 2)
        nursery.start_soon(collect, p, got[3])
        await trio.testing.wait_all_tasks_blocked()
        assert p.running == 3  # the fourth waits: every place is taken
        first = await job_of(small)
        at = trio.current_time()
        small.deliver({"type": "events", "id": first["id"], "events": [TextDelta("a")]})
        small.deliver({"type": "end", "id": first["id"]})
        fourth = await job_of(small)  # pushed the moment the place came free
        assert trio.current_time() == at
        assert fourth["model"] == "m1"
        p.detach(small)
        p.detach(big)
    done = [out for out in got if out == [TextDelta("a")]]
    gone = [out[0] for out in got if out != [TextDelta("a")]]
    assert len(done) == 1
    assert len(gone) == 3
    assert all(isinstance(e, TransportError) and e.retryable for e in gone)
    assert {str(e) for e in gone} == {"agent big serving 'm1' went away mid-answer",
                                      "agent small serving 'm1' went away mid-answer"}


async def test_a_slot_that_stops_sends_the_agent_a_cancel() -> None:
    p, link = linked(1)
    async with aclosing(p.stream(ASK)) as events:
        with trio.move_on_after(0.01):
            await events.__anext__()
    job = await job_of(link)
    assert await job_of(link) == {"type": "cancel", "id": job["id"]}
    assert link.running == 0


async def test_an_agent_gone_after_text_was_sent_is_not_retried() -> None:
    p, link = linked(1)
    got: list[object] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(collect, p, got)
        job = await job_of(link)
        link.deliver({"type": "events", "id": job["id"], "events": [TextDelta("a")]})
        await trio.testing.wait_all_tasks_blocked()
        p.detach(link)
    assert got[0] == TextDelta("a")
    assert isinstance(got[1], TransportError)
    assert got[1].retryable is False


async def test_a_slot_that_takes_nothing_never_holds_up_its_agents_reader(
    clock: MockClock,
) -> None:
    p, link = linked(2)
    got: list[object] = []
    async with trio.open_nursery() as nursery, aclosing(p.stream(ASK)) as stalled:
        nursery.start_soon(stalled.__anext__)  # the slot starts, takes one event, stalls
        job = await job_of(link)
        assert job["window"] == WINDOW
        link.deliver({"type": "events", "id": job["id"], "events": [TextDelta("a")] * WINDOW})
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(collect, p, got)  # a second job on the same agent
        other = await job_of(link)
        start = trio.current_time()
        link.deliver({"type": "events", "id": other["id"], "events": [TextDelta("b")]})
        link.deliver({"type": "end", "id": other["id"]})
        await trio.testing.wait_all_tasks_blocked()
        assert got == [TextDelta("b")]  # not behind the stalled job
        assert trio.current_time() == start
        with pytest.raises(FrameError, match="window"):  # the agent overran its window
            link.deliver({"type": "events", "id": job["id"], "events": [TextDelta("a")]})
        nursery.cancel_scope.cancel()


A_WINDOW = [TextDelta("a")] * WINDOW


async def a_window_sent(nursery: trio.Nursery, p: AgentPool, link: AgentLink,
                        got: list[object]) -> str:
    """A slot started on ``link`` (collecting into ``got``), sent a whole window of "a":
    its job's id."""
    nursery.start_soon(collect, p, got)
    job = str((await job_of(link))["id"])
    link.deliver({"type": "events", "id": job, "events": A_WINDOW})
    return job


async def test_a_slot_grants_its_window_back_as_it_takes_the_events(
    clock: MockClock,
) -> None:
    p, link = linked(1)
    got: list[object] = []
    async with trio.open_nursery() as nursery:
        job = await a_window_sent(nursery, p, link, got)
        for sent in range(3):  # three windows' worth, a window at a time
            if sent:
                link.deliver({"type": "events", "id": job, "events": A_WINDOW})
            granted = 0
            while granted < WINDOW:
                credit = await job_of(link)
                assert credit["type"] == "credit"
                assert credit["id"] == job
                granted += credit["events"]
            assert granted == WINDOW
        link.deliver({"type": "end", "id": job})
    assert got == [TextDelta("a")] * (3 * WINDOW)


async def test_an_agent_gone_before_its_credit_is_sent_ends_the_slot_as_gone(
    clock: MockClock,
) -> None:
    p, link = linked(1)
    got: list[object] = []
    async with trio.open_nursery() as nursery:
        await a_window_sent(nursery, p, link, got)
        link.outbox.close()  # the writer is gone: the credit due cannot be sent
        await trio.testing.wait_all_tasks_blocked()
        p.detach(link)
    assert got[:-1] == [TextDelta("a")] * WINDOW
    assert isinstance(got[-1], TransportError)
    assert str(got[-1]) == "agent box1 serving 'm1' went away mid-answer"
