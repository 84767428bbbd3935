"""The in-memory event log: ids, reads from a cursor, waiting, its size, and freeing it."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from app.engine.events import Delta, StreamStart
from app.engine.log import DISCARD_SLICE, MemoryEventLog
from app.engine.wire import encode_event


def text(i: int, slot: int = 0) -> Delta:
    return Delta(slot, f"t{i}")


async def test_since_gives_every_entry_after_the_cursor_with_its_wire_form() -> None:
    log = MemoryEventLog()
    await log.append([StreamStart("s", 1, ()), Delta(0, "a")])
    assert await log.append([Delta(1, "b")]) == 3
    entries = await log.since(1)
    assert [(e.id, e.event) for e in entries] == [(2, Delta(0, "a")), (3, Delta(1, "b"))]
    assert [(e.type, e.data) for e in entries] == [
        ("delta", {"slot": 0, "text": "a"}), ("delta", {"slot": 1, "text": "b"})]
    assert entries[1].wire == encode_event(3, Delta(1, "b"))
    assert [e.id for e in await log.since(-5)] == [1, 2, 3]
    assert await log.since(3) == []
    assert await log.since(99) == []
    assert [e.id for e in await log.since(0, limit=2)] == [1, 2]
    assert [e.id for e in await log.since(2, limit=5)] == [3]


async def test_size_counts_the_encoded_bytes() -> None:
    log = MemoryEventLog()
    assert log.size == 0
    await log.append([text(1), text(2)])
    assert log.size == sum(len(e.wire) for e in await log.since(0))


async def test_an_append_to_a_closed_log_is_refused() -> None:
    log = MemoryEventLog()
    log.close()
    with pytest.raises(RuntimeError, match="closed"):
        await log.append([text(1)])


async def test_wait_returns_on_append_on_wake_and_on_close() -> None:
    log = MemoryEventLog()
    for end in (lambda: log.append_nowait([text(1)]), log.wake, log.close):
        woken = trio.Event()

        async def waiter(done: trio.Event = woken) -> None:
            await log.wait(log.last_id)
            done.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(waiter)
            await trio.testing.wait_all_tasks_blocked()
            assert not woken.is_set()
            end()
        assert woken.is_set()
    assert log.closed


async def test_wait_does_not_block_when_there_is_more_or_the_log_is_closed() -> None:
    log = MemoryEventLog()
    log.append_nowait([text(1)])
    with trio.testing.assert_checkpoints():
        await log.wait(0)
    log.close()
    with trio.testing.assert_checkpoints():
        await log.wait(1)


async def test_discard_frees_the_entries_a_slice_at_a_time() -> None:
    """Freeing a long log at once was one step of milliseconds; other tasks run between
    its slices."""
    log = MemoryEventLog()
    log.append_nowait([text(i) for i in range(3 * DISCARD_SLICE)])
    log.close()
    seen: list[int] = []

    async def watch() -> None:
        while True:
            seen.append(log.last_id)
            await trio.lowlevel.checkpoint()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch)
        await trio.lowlevel.checkpoint()  # the watch has seen the whole log
        await log.discard()
        nursery.cancel_scope.cancel()
    assert log.last_id == 0
    assert log.size == 0
    assert await log.since(0) == []
    assert any(0 < n < 3 * DISCARD_SLICE for n in seen), "other tasks ran while it freed"
