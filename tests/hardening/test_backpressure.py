"""Slow and stalled clients: bounded writes, nothing lost or reordered, stalled ones cut off.

A slow reader is served from the log in writes of at most ``max_write`` bytes and gets
every event in order. A client that stops reading but keeps its connection open is cut off
after ``stall_timeout``: by the engine's stall watch (its slots stop after the grace, as if
it had left) and, under ``chorus serve``, by the kernel (``TCP_USER_TIMEOUT``), which
closes the socket that Hypercorn's shielded write would otherwise hold for ever.
"""

from __future__ import annotations

import io
import json
import socket
from functools import partial
from urllib.parse import urlsplit

import h11
import pytest
import trio

from app.engine import Hub, StreamSettings
from providers.sse import SSEDecoder

from ..conftest import Server, StartServer, read_events
from ..engine.test_stream import assert_grammar
from ..support.engine import collect, plans
from ..support.upstream import FakeUpstream, Script, openai_chunk, sse
from .conftest import ASK, StartChorus, as_events

# -- the engine, under MockClock ------------------------------------------------------------


async def test_a_reader_stuck_in_a_write_is_cut_off(autojump_clock) -> None:
    hub = Hub(StreamSettings(resume_grace=1.0, stall_timeout=5.0, ping=3600.0))
    async with trio.open_nursery() as nursery:
        await nursery.start(hub.run)
        stream = await hub.open("o", plans("ttft=0,rate=10,tokens=1000"), reader=True)
        reader = stream.entries(0, attached=True)
        await reader.__anext__()  # …and never asks for more: as if stuck in its write
        stuck = trio.current_time()
        await stream.done.wait()
        assert trio.current_time() - stuck == pytest.approx(6.0, abs=0.1)  # stall + grace
        assert stream.slots[0].stop_reason == "disconnect"
        assert stream.readers == 0
        with pytest.raises(StopAsyncIteration):  # the write returned: the reader ends
            await reader.__anext__()
        assert stream.readers == 0  # and is not counted out twice
        hub.close()


async def test_a_stuck_reader_beside_a_live_one_stops_nothing(autojump_clock) -> None:
    hub = Hub(StreamSettings(resume_grace=0.0, stall_timeout=2.0, ping=3600.0))
    async with trio.open_nursery() as nursery:
        await nursery.start(hub.run)
        stream = await hub.open("o", plans("ttft=0,rate=20,tokens=200"), reader=True)
        stuck = stream.entries(0, attached=True)
        await stuck.__anext__()
        events = await collect(stream)  # 10 s of answer, read by a second reader
        assert events[-1].type == "stream.done"
        assert stream.slots[0].state == "done"
        with pytest.raises(StopAsyncIteration):
            await stuck.__anext__()
        assert stream.readers == 0
        hub.close()


async def test_a_waiting_or_slow_reader_is_never_cut(autojump_clock) -> None:
    hub = Hub(StreamSettings(resume_grace=0.0, stall_timeout=1.0, ping=3600.0))
    async with trio.open_nursery() as nursery:
        await nursery.start(hub.run)
        # Waiting for a model that thinks is not stalling: nothing is being written.
        thinking = await hub.open("o", plans("hang"), reader=True)
        nursery.start_soon(partial(collect, thinking, attached=True))
        # Slow, but every write finishes within the limit.
        slow = await hub.open("o", plans("ttft=0,rate=100,tokens=300"), reader=True)
        got = []
        async for batch in slow.entries(0, attached=True):
            got += batch
            await trio.sleep(0.9)
        assert got[-1].type == "stream.done"
        assert slow.slots[0].state == "done"
        assert thinking.readers == 1
        assert thinking.slots[0].state == "running"
        nursery.cancel_scope.cancel()


async def test_a_lagging_reader_catches_up_in_bounded_writes(autojump_clock) -> None:
    hub = Hub(StreamSettings(resume_grace=10.0, max_write=4096))
    async with trio.open_nursery() as nursery:
        await nursery.start(hub.run)
        stream = await hub.open("o", plans("ttft=0,rate=0,tokens=3000", "instant"))
        await stream.done.wait()
        batches = [b async for b in stream.entries(0)]
        whole = await stream.log.since(0)
        assert [e for b in batches for e in b] == whole  # nothing lost, nothing reordered
        assert len(batches) > 3
        for batch in batches:
            assert len(batch) == 1 or sum(len(e.wire) for e in batch) <= 4096
            assert len(batch) <= StreamSettings().max_read
        hub.close()


async def test_a_reader_catching_up_takes_turns_with_other_tasks(autojump_clock) -> None:
    """A reader far behind has many writes to make, none of which need wait for the log:
    other tasks must get turns between them, whatever its response's writes do."""
    hub = Hub(StreamSettings(resume_grace=10.0, max_write=4096, max_read=64))
    async with trio.open_nursery() as nursery:
        await nursery.start(hub.run)
        stream = await hub.open("o", plans("ttft=0,rate=0,tokens=3000"))
        await stream.done.wait()
        turns = 0

        async def another_task() -> None:
            nonlocal turns
            while True:
                turns += 1
                await trio.lowlevel.checkpoint()

        nursery.start_soon(another_task)
        seen = [turns async for _ in stream.entries(0)]
        assert len(seen) > 10
        # Both run once per scheduler round (in either order within a round): without the
        # turns, the other task would not run at all until the reader had caught up.
        assert seen[-1] - seen[0] >= (len(seen) - 1) // 2
        nursery.cancel_scope.cancel()


# -- over real sockets ----------------------------------------------------------------------

BIG = "x" * 32_000


def big_answer(n_chunks: int) -> Script:
    return Script(body=[*sse(*(openai_chunk(BIG) for _ in range(n_chunks)), done=False),
                        *sse(openai_chunk(finish="stop"))])


def provider(upstream: FakeUpstream, server: str) -> str:
    return (f"[server]\n{server}\n[providers.up]\ntype = \"openai\"\n"
            f"base_url = \"{upstream.url}/v1\"\nretries = 0\n")


async def raw_stream_request(url: str, body: dict, rcvbuf: int) -> trio.SocketStream:
    """POST /v1/streams for SSE on a socket with a small receive buffer (so the server's
    writes block soon), written by hand; the caller decides how (and whether) to read."""
    where = urlsplit(url)
    sock = trio.socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    await sock.connect((where.hostname, where.port))
    stream = trio.SocketStream(sock)
    payload = json.dumps(body).encode()
    await stream.send_all(
        b"POST /v1/streams HTTP/1.1\r\nHost: chorus\r\nAccept: text/event-stream\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
        % (len(payload), payload))
    return stream


async def read_response(stream: trio.SocketStream, pause: float = 0.0,
                        size: int = 16384) -> tuple[list[tuple[int, str, dict]], str]:
    """Read the SSE response ``size`` bytes at a time, ``pause`` seconds apart; return the
    events and how it ended: "complete", "eof" or "reset"."""
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method="POST", target="/", headers=[("Host", "x"),
                                                             ("Content-Length", "0")]))
    conn.send(h11.EndOfMessage())
    decoder = SSEDecoder()
    events: list[tuple[int, str, dict]] = []
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            try:
                data = await stream.receive_some(size)
            except trio.BrokenResourceError:
                return events, "reset"
            if not data:
                return events, "eof"
            conn.receive_data(data)
            await trio.sleep(pause)
        elif isinstance(event, h11.Data):
            events += [(int(e.id or 0), e.event, json.loads(e.data))
                       for e in decoder.feed(bytes(event.data))]
        elif isinstance(event, h11.EndOfMessage):
            return events, "complete"


async def test_a_slow_reader_gets_everything_in_order(
    upstream: FakeUpstream, start_chorus: StartChorus,
) -> None:
    # ~1.3 MB in slot 0, far more than the socket buffers hold, beside a small answer. Its
    # second word comes half a second after its first, when the reader has caught up.
    caught_up = [*sse(openai_chunk("a"), done=False), 0.5, *sse(openai_chunk("b"), done=False)]
    upstream.respond = lambda seen: (
        Script(body=[*caught_up, *big_answer(40).body]) if seen.json["model"] == "m"
        else big_answer(1))
    server = await start_chorus(provider(upstream, "stall_timeout = 2.0\nresume_grace = 0.0"))
    client = await raw_stream_request(server.url, {"models": ["up/m", "up/n"], **ASK},
                                      rcvbuf=8192)
    async with client:
        with trio.fail_after(20):
            events, ending = await read_response(client, pause=0.01)
    assert ending == "complete"
    assert_grammar(as_events(events), 2)
    text = "".join(d["text"] for _, t, d in events if t == "delta" and d["slot"] == 0)
    assert text == "ab" + BIG * 40
    registry = server.app.extensions["chorus"].metrics.registry
    assert registry.get_sample_value("chorus_readers_cut_total") == 0


async def test_a_stalled_client_is_cut_off_and_its_slots_stopped(
    upstream: FakeUpstream, start_chorus: StartChorus,
) -> None:
    upstream.respond = lambda seen: Script(body=[*big_answer(200).body[:-2], 60.0])
    server = await start_chorus(provider(upstream, "stall_timeout = 1.0\nresume_grace = 0.5"))
    client = await raw_stream_request(server.url, {"models": ["up/m"], **ASK}, rcvbuf=4096)
    async with client:
        seen = await upstream.wait_for_request()
        with trio.fail_after(5):  # stall (1 s) + grace (0.5 s), then the upstream is closed
            await seen.closed.wait()
        stream = server.hub.streams()[0]
        with trio.fail_after(2):
            await stream.done.wait()
        assert stream.slots[0].stop_reason == "disconnect"
        # The connection was closed under the client; what it had buffered is all it gets.
        with trio.fail_after(5):
            _, ending = await read_response(client)
        assert ending in ("eof", "reset")
    assert seen.closed_at - seen.received_at < 4
    # Nothing was lost: the log has it all, for a client that comes back.
    async with server.client() as again, again.stream(
            "GET", f"/v1/streams/{stream.id}/events") as r:
        replay = [e async for e in read_events(r)]
    assert_grammar(as_events(replay), 1)
    assert replay[-2][2]["reason"] == "disconnect"


async def test_the_stall_watch_alone_stops_the_slots(
    upstream: FakeUpstream, start_server: StartServer, log_lines: io.StringIO,
) -> None:
    """Without the kernel's help (a server not started by ``chorus serve``) the socket
    stays pinned until the client goes, but the upstream is still released in time."""
    upstream.respond = lambda seen: Script(body=[*big_answer(200).body[:-2], 60.0])
    server: Server = await start_server(provider(upstream,
                                                 "stall_timeout = 1.0\nresume_grace = 0.5"))
    client = await raw_stream_request(server.url, {"models": ["up/m"], **ASK}, rcvbuf=4096)
    async with client:
        seen = await upstream.wait_for_request()
        with trio.fail_after(5):
            await seen.closed.wait()
        stream = server.hub.streams()[0]
        with trio.fail_after(2):
            await stream.done.wait()
        assert stream.slots[0].stop_reason == "disconnect"
        assert stream.readers == 0
    assert server.app.extensions["chorus"].metrics.readers_cut._value.get() == 1
    assert f"event=reader.stalled stream={stream.id}" in log_lines.getvalue()
