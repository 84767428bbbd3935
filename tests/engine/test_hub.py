"""The hub's memory: what it keeps of ended streams, for how long, and within what budget;
and readers that hold a stream before they read it. Under trio's MockClock."""

from __future__ import annotations

import gc
import weakref

import pytest
import trio
import trio.testing

from app.engine import Hub, MemoryEventLog, StreamSettings

from ..support.engine import collect, plans


async def test_a_stream_nobody_can_resume_is_forgotten_when_it_ends(autojump_clock) -> None:
    hub = Hub(StreamSettings(resume_grace=0, retention=600))
    async with trio.open_nursery() as nursery:
        await nursery.start(hub.run)
        stream = await hub.open("o", plans("fast"), reader=True, resumable=False)
        events = await collect(stream, attached=True)
        assert events[-1].type == "stream.done"  # its reader read it whole
        await trio.testing.wait_all_tasks_blocked()
        assert hub.get(stream.id, "o") is None
        assert hub.streams() == []
        assert hub.retained_bytes == 0
        hub.close()


async def test_an_ended_stream_is_freed_at_once_not_left_to_the_garbage_collector(
    autojump_clock,
) -> None:
    """No reference cycle keeps an ended stream: it goes, with its slots and its log, the
    moment the hub forgets it. Left in a cycle, every stream would wait for a full
    collection, which walks every open stream's objects and pauses all of them."""
    hub = Hub(StreamSettings(resume_grace=0, retention=600))
    gc.disable()
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(hub.run)
            for stop in (False, True):  # run to its end; stopped mid-answer
                stream = await hub.open("o", plans("fast", "hang" if stop else "fast"),
                                        reader=True, resumable=False)
                if stop:
                    await trio.testing.wait_all_tasks_blocked()
                    stream.stop(None, "user")
                assert (await collect(stream, attached=True))[-1].type == "stream.done"
                await trio.testing.wait_all_tasks_blocked()
                gone, log = weakref.ref(stream), weakref.ref(stream.log)
                del stream
                assert gone() is None, f"stopped: {stop}"
                assert log() is None
            hub.close()
    finally:
        gc.enable()


async def test_retained_logs_stay_within_their_byte_budget_oldest_forgotten_first(
    autojump_clock,
) -> None:
    hub = Hub(StreamSettings(resume_grace=0, retention=600, retained_bytes=6000))
    async with trio.open_nursery() as nursery:
        await nursery.start(hub.run)
        ids = []
        for _ in range(6):
            stream = await hub.open("o", plans("ttft=0,rate=0,tokens=20"), reader=True)
            await collect(stream, attached=True)
            ids.append(stream.id)
            assert hub.retained_bytes <= 6000
        kept = [i for i in ids if hub.get(i, "o") is not None]
        assert 0 < len(kept) < len(ids)
        assert kept == ids[-len(kept):]  # the newest are kept, the oldest forgotten
        assert hub.forgotten_early == len(ids) - len(kept)
        hub.close()


async def test_a_reader_holds_its_stream_from_the_moment_it_is_made(autojump_clock) -> None:
    """A response that has its body but has not begun writing it yet (Quart sends the head
    first) still reads the whole stream, though retention passed meanwhile."""
    hub = Hub(StreamSettings(resume_grace=0, retention=5))
    async with trio.open_nursery() as nursery:
        await nursery.start(hub.run)
        stream = await hub.open("o", plans("fast"), reader=True)
        whole = await collect(stream, attached=True)
        body = stream.follow(0)  # made, not yet iterated
        assert stream.readers == 1
        await trio.sleep(10)  # retention is over: the stream is gone for new requests
        assert hub.get(stream.id, "o") is None
        chunks = [chunk async for chunk in body]
        assert b"".join(chunks).count(b"\nevent: ") == len(whole)  # everything, not nothing
        assert stream.readers == 0
        hub.close()


async def test_a_reader_dropped_unread_lets_its_stream_go(autojump_clock) -> None:
    """Should a response never be sent, its body is never closed: dropping it detaches
    the reader, and the stream's grace runs as if the client had left."""
    hub = Hub(StreamSettings(resume_grace=1, attach_timeout=100))
    async with trio.open_nursery() as nursery:
        await nursery.start(hub.run)
        stream = await hub.open("o", plans("hang"))
        body = stream.follow(0)
        assert stream.readers == 1
        del body
        gc.collect()
        assert stream.readers == 0
        with trio.fail_after(5):
            await stream.done.wait()
        assert stream.slots[0].stop_reason == "disconnect"
        hub.close()


async def test_a_stream_whose_opener_leaves_at_once_leaves_nothing_behind(
    autojump_clock,
) -> None:
    """A client that leaves while its stream is being opened: the stream is neither
    counted nor found afterwards, and the hub goes on opening others."""
    hub = Hub(StreamSettings(resume_grace=0), max_streams=1)
    async with trio.open_nursery() as nursery:
        await nursery.start(hub.run)
        with trio.CancelScope() as gone:
            gone.cancel()
            await hub.open("o", plans("hang"), reader=True)
        assert gone.cancelled_caught
        assert (hub.active, hub.running("o"), hub.streams()) == (0, 0, [])
        stream = await hub.open("o", plans("fast"), reader=True)  # the one place is free
        assert (await collect(stream, attached=True))[-1].type == "stream.done"
        hub.close()


async def test_a_stream_that_fails_at_its_start_is_not_kept(autojump_clock) -> None:
    class Refusing(MemoryEventLog):
        async def append(self, events):
            raise RuntimeError("the log is down")

    hub = Hub(StreamSettings(resume_grace=0), log_factory=Refusing)
    async with trio.open_nursery() as nursery:
        await nursery.start(hub.run)
        with pytest.raises(RuntimeError, match="the log is down"):
            await hub.open("o", plans("fast"), reader=True)
        assert (hub.active, hub.streams()) == (0, [])
        hub.close()
