"""The in-memory event log: ids, reads from a cursor, what it costs the collector, and the
wire form of its events."""

from __future__ import annotations

import gc
import json

import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from app.engine.log import DISCARD_SLICE, LiveBatch, MemoryEventLog
from app.engine.wire import encode_data, encode_event, whole_characters


async def test_since_gives_every_entry_after_the_cursor_with_its_wire_form() -> None:
    log = MemoryEventLog()
    await log.append([("stream.start", {"stream_id": "s"}), ("delta", {"slot": 0, "text": "a"})])
    assert await log.append([("delta", {"slot": 1, "text": "b"})]) == 3
    entries = await log.since(1)
    assert [(e.id, e.type, e.data) for e in entries] == [
        (2, "delta", {"slot": 0, "text": "a"}), (3, "delta", {"slot": 1, "text": "b"})]
    assert entries[1].wire == encode_event(3, "delta", encode_data({"slot": 1, "text": "b"}))
    assert [e.id for e in await log.since(-5)] == [1, 2, 3]
    assert await log.since(3) == []
    assert await log.since(99) == []
    assert [e.id for e in await log.since(0, limit=2)] == [1, 2]
    assert [e.id for e in await log.since(2, limit=5)] == [3]


async def test_a_retained_text_event_leaves_no_object_for_the_collector() -> None:
    """The log lives for ``retention``; the collector walks every object it tracks."""
    log = MemoryEventLog()
    await log.append([("delta", {"slot": 0, "text": "warm"})])
    gc.collect()
    before = len(gc.get_objects())
    for i in range(2000):
        await log.append([("delta", {"slot": i % 3, "text": f"token {i}"})])
    gc.collect()
    assert len(gc.get_objects()) - before < 50
    assert log.last_id == 2001


async def test_wait_returns_on_append_and_on_close() -> None:
    log = MemoryEventLog()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(log.wait, 0)
        await trio.testing.wait_all_tasks_blocked()
        await log.append([("delta", {"slot": 0, "text": "x"})])
    async with trio.open_nursery() as nursery:
        nursery.start_soon(log.wait, 1)
        await trio.testing.wait_all_tasks_blocked()
        log.close()
    assert log.closed


class Socket:
    """A ``LiveWriter`` over a socket of ``room`` bytes: what it takes, it keeps in order."""

    def __init__(self, room: int = 1 << 20) -> None:
        self.room = room
        self.sent = b""
        self.rest = b""
        self.refusing = False

    def offer(self, batch: LiveBatch) -> bool:
        data = batch.wire
        if self.refusing or self.rest:
            return False
        taken = min(len(data), self.room)
        self.sent += data[:taken]
        self.rest = data[taken:]
        self.room -= taken
        return True

    @property
    def behind(self) -> bool:
        return bool(self.rest)

    async def flush(self) -> None:
        self.sent, self.rest = self.sent + self.rest, b""


def text(i: int) -> tuple[str, dict]:
    return ("delta", {"slot": 0, "text": f"t{i}"})


async def read_live(log: MemoryEventLog, socket: Socket, after: int, limit: int,
                    returned: dict[str, int], name: str = "reader") -> None:
    """A reader in ``wait_live``; where it was sent back to goes in ``returned[name]``."""
    returned[name] = await log.wait_live(after, socket, limit)


async def test_a_live_reader_takes_what_is_logged_without_being_woken() -> None:
    log = MemoryEventLog()
    log.append_nowait([text(0)])
    socket = Socket()
    returned: dict[str, int] = {}
    async with trio.open_nursery() as nursery:
        nursery.start_soon(read_live, log, socket, 1, 1000, returned)
        await trio.testing.wait_all_tasks_blocked()
        log.append_nowait([text(1)])
        log.append_nowait([text(2), text(3)])  # one append, one write
        await trio.testing.wait_all_tasks_blocked()
        log.append_nowait([])  # nothing to offer, nothing to wake it for
        assert returned == {}  # still asleep: the appender wrote for it
        assert socket.sent == b"".join(e.wire for e in await log.since(1))
        socket.refusing = True
        log.append_nowait([text(4)])  # refused: the reader wakes where the writer stopped
    assert returned == {"reader": 4}
    assert socket.sent == b"".join(e.wire for e in await log.since(1, limit=3))


async def test_a_live_reader_is_woken_for_what_it_cannot_take_at_once() -> None:
    log = MemoryEventLog()
    big, small = Socket(), Socket(room=10)
    returned: dict[str, int] = {}
    async with trio.open_nursery() as nursery:
        nursery.start_soon(read_live, log, big, 0, 50, returned, "big")
        nursery.start_soon(read_live, log, small, 0, 50, returned, "small")
        await trio.testing.wait_all_tasks_blocked()
        log.append_nowait([text(1)])  # taken by both; the small socket only in part
        await trio.testing.wait_all_tasks_blocked()
        assert returned == {"small": 1}  # it has to finish the write: woken, past the entry
        assert small.behind
        log.append_nowait([("delta", {"slot": 0, "text": "x" * 60})])  # over the limit
    assert returned == {"small": 1, "big": 1}  # offered nothing: it reads entry 2 itself
    assert big.sent == (await log.since(0))[0].wire


async def test_an_append_not_offered_wakes_the_live_readers() -> None:
    log = MemoryEventLog()
    socket = Socket()
    returned: dict[str, int] = {}
    async with trio.open_nursery() as nursery:
        nursery.start_soon(read_live, log, socket, 0, 1000, returned)
        await trio.testing.wait_all_tasks_blocked()
        log.append_nowait([text(1), text(2)], offer=False)
    assert returned == {"reader": 0}  # woken where it was, to read both itself
    assert socket.sent == b""


async def test_a_live_writer_that_fails_wakes_its_reader_and_nobody_else(caplog) -> None:
    class Broken(Socket):
        def offer(self, batch: LiveBatch) -> bool:
            raise RuntimeError("bug")

    log = MemoryEventLog()
    sound = Socket()
    returned: dict[str, int] = {}
    async with trio.open_nursery() as nursery:
        nursery.start_soon(read_live, log, Broken(), 0, 100, returned, "broken")
        nursery.start_soon(read_live, log, sound, 0, 100, returned, "sound")
        await trio.testing.wait_all_tasks_blocked()
        log.append_nowait([text(1)])  # the appender goes on
        await trio.testing.wait_all_tasks_blocked()
        assert returned == {"broken": 0}  # woken where it was, to read entry 1 itself
        assert sound.sent == (await log.since(0))[0].wire
        log.close()
    assert "a live writer failed" in caplog.text


async def test_a_live_writer_can_take_the_entries_an_append_made() -> None:
    """A writer of bytes of its own (the OpenAI front door) reads the events, not the
    wire."""
    log = MemoryEventLog()
    log.append_nowait([text(0)])
    taken: list[list] = []

    class Entries(Socket):
        def offer(self, batch: LiveBatch) -> bool:
            taken.append(batch.entries())
            return True

    async with trio.open_nursery() as nursery:
        nursery.start_soon(log.wait_live, 1, Entries(), 1000)
        await trio.testing.wait_all_tasks_blocked()
        log.append_nowait([text(1), text(2)])
        log.append_nowait([text(3)])
        log.close()
    assert taken == [await log.since(1, limit=2), await log.since(3)]
    assert [e.id for batch in taken for e in batch] == [2, 3, 4]


async def test_a_live_reader_returns_at_once_when_behind_and_on_wake_and_close() -> None:
    log = MemoryEventLog()
    log.append_nowait([text(1)])
    with trio.testing.assert_checkpoints():
        assert await log.wait_live(0, Socket(), limit=100) == 0  # entry 1 is there to read
    for end in (log.wake, log.close):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(log.wait_live, 1, Socket(), 100)
            await trio.testing.wait_all_tasks_blocked()
            end()
    assert await log.wait_live(1, Socket(), limit=100) == 1  # closed: no waiting


async def test_discard_frees_the_entries_a_slice_at_a_time() -> None:
    """Freeing a long log at once was one step of milliseconds; other tasks run between
    its slices."""
    log = MemoryEventLog()
    log.append_nowait([("delta", {"slot": 0, "text": str(i)}) for i in range(3 * DISCARD_SLICE)])
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
    assert await log.since(0) == []
    assert any(0 < n < 3 * DISCARD_SLICE for n in seen), "other tasks ran while it freed"


@given(st.integers(min_value=0, max_value=64), st.text())
def test_a_text_event_encodes_as_the_json_encoder_would(slot: int, text: str) -> None:
    data = {"slot": slot, "text": text}
    encoded = encode_data(data)
    assert encoded == json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    assert "\n" not in encoded
    assert json.loads(encoded) == data


ANY_CODE_POINT = st.text(st.characters(blacklist_categories=()))  # lone surrogates too


@given(st.lists(ANY_CODE_POINT, max_size=4))
def test_every_text_is_logged_and_reads_back_as_a_utf16_reader_joins_it(
    texts: list[str],
) -> None:
    # Half a character (a lone surrogate) has no UTF-8 form: it is logged as its JSON
    # escape, and the halves of texts joined make the character again.
    log = MemoryEventLog()
    log.append_nowait([("delta", {"slot": 0, "text": t}) for t in texts])
    wire = b"".join(log._wires).decode()  # UTF-8, or this raises
    read = [json.loads(line[6:])["text"] for line in wire.split("\n")
            if line.startswith("data: ")]
    assert utf16("".join(read)) == utf16("".join(texts))


def utf16(text: str) -> bytes:
    return text.encode("utf-16-le", "surrogatepass")


def test_whole_characters_joins_the_halves_and_marks_a_half_alone() -> None:
    assert whole_characters("a \ud83d" + "\ude00 b") == "a \U0001f600 b"
    assert whole_characters("\ude00 \ud83d") == "\ufffd \ufffd"
    assert whole_characters("plain, café") == "plain, café"
