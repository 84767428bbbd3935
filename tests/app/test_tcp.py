"""Chorus's Hypercorn connection handler: writes leave at once, whole and in order; an idle
connection is closed after the keep-alive timeout, and at once when the server shuts down."""

from __future__ import annotations

import gc
import json
import math
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing
from hypercorn.app_wrappers import ASGIWrapper
from hypercorn.config import Config as HypercornConfig
from hypercorn.events import Closed, RawData
from hypercorn.protocol.events import Body
from hypercorn.protocol.h11 import H11Protocol
from hypercorn.trio import run as hypercorn_run
from hypercorn.trio.worker_context import WorkerContext
from quart import request
from quart_trio import QuartTrio

from app import tcp
from app.engine.log import LiveBatch
from bench.client import Dechunker
from providers import ChatRequest, Message, ProviderConfig, TextDelta
from providers.demo import DemoProvider

from ..support.serving import loopback_config, start_serving


class Seen:
    """Stands in for Hypercorn's protocol, which the handler tells when the peer is gone."""

    def __init__(self) -> None:
        self.events: list[Any] = []

    async def handle(self, event: Any) -> None:
        self.events.append(event)


@asynccontextmanager
async def connected() -> AsyncIterator[tuple[tcp.TCPServer, trio.SocketStream]]:
    """A handler around the server side of a real loopback TCP connection, and the client."""
    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    port = listener.socket.getsockname()[1]
    client = await trio.open_tcp_stream("127.0.0.1", port)
    server_side = await listener.accept()
    await listener.aclose()
    server = tcp.TCPServer(None, HypercornConfig(), WorkerContext(None), {}, server_side)
    server.protocol = Seen()  # type: ignore[assignment]
    try:
        yield server, client
    finally:
        await server_side.aclose()
        await client.aclose()


async def read_exactly(stream: trio.SocketStream, n: int) -> bytes:
    got = bytearray()
    while len(got) < n:
        chunk = await stream.receive_some(1 << 16)
        assert chunk, "the connection ended early"
        got += chunk
    return bytes(got)


def test_serve_uses_this_handler() -> None:
    assert tcp.install()
    assert hypercorn_run.TCPServer is tcp.TCPServer
    assert hypercorn_run.WorkerContext is tcp.WorkerContext
    assert tcp.install()  # again: nothing changes


async def test_a_write_leaves_without_waiting_for_the_scheduler() -> None:
    async with connected() as (server, client):
        with trio.CancelScope() as scope:
            scope.cancel()  # any checkpoint inside would raise Cancelled here
            await server.protocol_send(RawData(data=b"data: hi\n\n"))
        assert not scope.cancelled_caught
        assert await read_exactly(client, 10) == b"data: hi\n\n"


async def test_what_the_socket_cannot_take_follows_in_order() -> None:
    big = bytes(range(256)) * (16 * 1024)  # 4 MiB: more than the kernel buffers hold
    async with connected() as (server, client), trio.open_nursery() as nursery:
        nursery.start_soon(server.protocol_send, RawData(data=big))
        await trio.testing.wait_all_tasks_blocked()
        assert server.send_lock.locked()  # the rest waits for room, holding the lock
        nursery.start_soon(server.protocol_send, RawData(data=b"tail"))
        assert await read_exactly(client, len(big) + 4) == big + b"tail"
        assert server.protocol.events == []  # type: ignore[attr-defined]


async def test_an_offered_chunk_leaves_at_once_from_any_task() -> None:
    async with connected() as (server, client):
        offers = tcp.ChunkOffers(server)
        assert offers.offer_chunk(b"data: hi\n\n")  # no await: the merge task calls it
        assert not offers.behind
        assert await read_exactly(client, 15) == b"a\r\ndata: hi\n\n\r\n"
        assert offers.offer(LiveBatch(b"data: log\n\n", lambda start, end: [], 0, 1))
        assert await read_exactly(client, 16) == b"b\r\ndata: log\n\n\r\n"  # its SSE bytes
        assert not offers.offer_chunk(b"")  # an empty chunk would end the body: h11's to write
        async with server.send_lock:  # another write of the connection is under way
            assert not offers.offer_chunk(b"x")
        with trio.testing.assert_no_checkpoints():
            await offers.flush()  # nothing left to write


async def test_what_an_offer_could_not_write_goes_first_with_the_next_write() -> None:
    big = bytes(range(256)) * (16 * 1024)  # 4 MiB: more than the kernel buffers hold
    framed = b"%x\r\n%s\r\n" % (len(big), big)
    async with connected() as (server, client), trio.open_nursery() as nursery:
        offers = tcp.ChunkOffers(server)
        assert offers.offer_chunk(big)  # taken: the socket has some of it, the rest is kept
        assert offers.behind
        assert not offers.offer_chunk(b"later")  # nothing may pass the rest
        nursery.start_soon(offers.flush)
        expected = framed + b"4\r\ntail\r\n"
        nursery.start_soon(server.protocol_send, RawData(data=b"4\r\ntail\r\n"))
        assert await read_exactly(client, len(expected)) == expected
        assert not offers.behind
        assert server.protocol.events == []  # type: ignore[attr-defined]


async def test_an_offer_to_a_connection_that_ended_is_refused() -> None:
    async with connected() as (server, client):
        await client.aclose()
        offers = tcp.ChunkOffers(server)
        for _ in range(50):  # the first writes may still be taken; one after the reset fails
            if not offers.offer_chunk(b"x" * 65536):
                break
            await offers.flush()
            await trio.sleep(0.01)
        else:
            raise AssertionError("every offer was taken")
        await server.stream.aclose()
        assert not offers.offer_chunk(b"late")
        server.__dict__.clear()  # as ``run`` leaves it
        assert not offers.offer_chunk(b"later")
        assert not offers.behind


async def test_a_write_to_a_closed_connection_tells_the_protocol() -> None:
    async with connected() as (server, _):
        await server.stream.aclose()
        await server.protocol_send(RawData(data=b"late"))
        assert [type(e) for e in server.protocol.events] == [Closed]  # type: ignore[attr-defined]


async def test_a_write_to_a_peer_that_left_tells_the_protocol() -> None:
    async with connected() as (server, client):
        await client.aclose()
        seen = server.protocol.events  # type: ignore[attr-defined]
        for _ in range(50):  # the first write may still be taken; one after the reset fails
            await server.protocol_send(RawData(data=b"x" * 65536))
            if seen:
                break
            await trio.sleep(0.01)
        assert [type(e) for e in seen][:1] == [Closed]


async def test_a_finished_connection_is_freed_at_once_not_by_the_collector() -> None:
    # Hypercorn's handler and its protocol refer to each other; left so, every connection
    # is a cycle that lives on until a collection finds it, old enough by then to wait for
    # a full one (bench/findings.md).
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    client = await trio.open_tcp_stream("127.0.0.1", listener.socket.getsockname()[1])
    server = tcp.TCPServer(ASGIWrapper(app), HypercornConfig(), WorkerContext(None), {},
                           await listener.accept())
    await listener.aclose()
    freed = weakref.ref(server)
    gc.disable()
    try:
        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(server.run)
                del server
                await client.send_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
                answer = b""
                while chunk := await client.receive_some(1 << 16):
                    answer += chunk
        assert answer.startswith(b"HTTP/1.1 200")
        assert answer.endswith(b"ok")
        assert freed() is None
    finally:
        gc.enable()
        await client.aclose()


# -- the keep-alive timeout ------------------------------------------------------------------

KEEP_ALIVE = 30.0  # seconds, on trio's mock clock
REQUEST = b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\nhi"


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


def answering_after(delay: float) -> QuartTrio:
    """A quart-trio app, as Chorus is one: Hypercorn's own idle timer never fired under it."""
    app = QuartTrio(__name__)

    @app.post("/")
    async def answer() -> str:
        await request.get_data()
        await trio.sleep(delay)
        return "ok"

    return app


@asynccontextmanager
async def serving(delay: float = 0.0, read_timeout: float | None = None,
                  ) -> AsyncIterator[tuple[int, trio.Event, trio.Event]]:
    """Hypercorn's trio worker with Chorus's handler: (port, shut it down, it has ended)."""
    assert tcp.install()
    config = loopback_config(keep_alive_timeout=KEEP_ALIVE, read_timeout=read_timeout,
                             graceful_timeout=1000.0)
    async with trio.open_nursery() as nursery:
        url, stop, stopped = await start_serving(nursery, answering_after(delay), config)
        yield int(url.rsplit(":", 1)[1]), stop, stopped
        stop.set()


async def ask(port: int) -> trio.SocketStream:
    """A keep-alive connection that has had one answer."""
    client = await trio.open_tcp_stream("127.0.0.1", port)
    await client.send_all(REQUEST)
    answer = b""
    while not answer.endswith(b"ok"):
        chunk = await client.receive_some(1 << 16)
        assert chunk, "closed before the answer"
        answer += chunk
    assert answer.startswith(b"HTTP/1.1 200")
    return client


async def closed_after(client: trio.SocketStream) -> float:
    """Seconds until the server closes the connection (it sends nothing before)."""
    start = trio.current_time()
    with trio.fail_after(KEEP_ALIVE * 10):
        assert await client.receive_some(1 << 16) == b""
    return trio.current_time() - start


async def test_an_idle_connection_is_closed_after_the_keep_alive_timeout(autojump_clock) -> None:
    async with serving() as (port, _, _):
        client = await ask(port)
        assert await closed_after(client) == pytest.approx(KEEP_ALIVE, abs=0.01)
        await client.aclose()


async def test_a_connection_that_never_asks_is_closed_after_the_timeout(autojump_clock) -> None:
    async with serving() as (port, _, _):
        client = await trio.open_tcp_stream("127.0.0.1", port)
        assert await closed_after(client) == pytest.approx(KEEP_ALIVE, abs=0.01)
        await client.aclose()


async def test_each_answer_gives_the_connection_a_new_idle_timeout(autojump_clock) -> None:
    async with serving() as (port, _, _):
        client = await ask(port)
        await trio.sleep(KEEP_ALIVE * 0.9)
        await client.send_all(REQUEST)  # the same connection, not yet timed out
        answer = b""
        while not answer.endswith(b"ok"):
            answer += await client.receive_some(1 << 16)
        assert await closed_after(client) == pytest.approx(KEEP_ALIVE, abs=0.01)
        await client.aclose()


async def test_an_answer_slower_than_the_timeout_is_not_cut(autojump_clock) -> None:
    async with serving(delay=KEEP_ALIVE * 3) as (port, _, _):
        start = trio.current_time()
        client = await ask(port)
        assert trio.current_time() - start == pytest.approx(KEEP_ALIVE * 3, abs=0.01)
        await client.aclose()


async def test_read_timeout_still_bounds_a_read_while_a_request_is_busy(autojump_clock) -> None:
    # The request's head has come (the connection is busy: no keep-alive deadline), its
    # body stalls: Hypercorn's ``read_timeout`` ends the wait, as in Hypercorn.
    async with serving(read_timeout=10.0) as (port, _, _):
        client = await trio.open_tcp_stream("127.0.0.1", port)
        await client.send_all(REQUEST[:-1])  # one byte of the body short
        start = trio.current_time()
        with trio.fail_after(KEEP_ALIVE * 10):
            while await client.receive_some(1 << 16):
                pass  # whatever the server says before it closes
        assert trio.current_time() - start == pytest.approx(10.0, abs=0.01)
        await client.aclose()


async def test_moving_the_keep_alive_deadline_keeps_the_reads_own_bound() -> None:
    async with connected() as (server, _):
        timer = server.idle_task
        assert server.config.keep_alive_timeout == 5
        with trio.CancelScope() as read:  # a read under way, bounded by read_timeout
            timer.scope, timer.read_deadline = read, trio.current_time() + 2
            await timer.stop()  # busy: no keep-alive deadline
            assert read.deadline == timer.read_deadline
            await timer.restart(None, print)  # idle for at most 5 s: the read's 2 s first
            assert read.deadline == timer.read_deadline
            timer.read_deadline = math.inf
            await timer.restart(None, print)
            assert read.deadline == timer.deadline < math.inf
            timer.expire()
            assert read.deadline == -math.inf


async def test_a_shutdown_closes_idle_connections_at_once(autojump_clock) -> None:
    # Hypercorn's own idle task never ran under quart-trio, and a shutdown waited for idle
    # connections until the graceful timeout (here 1000 s).
    async with serving() as (port, stop, stopped):
        client = await ask(port)
        await trio.sleep(1.0)
        start = trio.current_time()
        stop.set()
        assert await closed_after(client) < 0.01
        await stopped.wait()
        assert trio.current_time() - start < 0.01
        await client.aclose()


async def test_idle_connections_are_forgotten_when_they_end(autojump_clock, monkeypatch) -> None:
    contexts: list[tcp.WorkerContext] = []
    init = tcp.WorkerContext.__init__

    def remember(self: tcp.WorkerContext, max_requests: int | None) -> None:
        init(self, max_requests)
        contexts.append(self)

    monkeypatch.setattr(tcp.WorkerContext, "__init__", remember)
    async with serving() as (port, _, _):
        clients = [await ask(port) for _ in range(3)]
        await trio.testing.wait_all_tasks_blocked()  # the server is done with the answers
        assert len(contexts[0].idle) == 3
        await clients[0].aclose()  # the client leaves
        await closed_after(clients[1])  # the keep-alive timeout
        await clients[1].aclose()
        await trio.testing.wait_all_tasks_blocked()
        assert contexts[0].idle == set()
        await clients[2].aclose()


# -- SSE writes straight to the socket ------------------------------------------------------

DEMO = "demo/ttft=0,rate=500,tokens=20"
ASKS = {  # path: (body, what its last event holds)
    "/v1/streams": ({"models": [DEMO]}, b"stream.done"),
    "/v1/chat/completions": ({"model": DEMO, "stream": True}, b"[DONE]"),
}


async def raw_sse(port: int, version: bytes, client: trio.SocketStream | None = None,
                  path: str = "/v1/streams") -> bytes:
    """A 20-token demo stream asked for over HTTP/``version`` (on ``client``, left open,
    or a connection of its own); the whole answer as sent."""
    ask, last = ASKS[path]
    body = json.dumps({**ask, "messages": [{"role": "user", "content": "hi"}]}).encode()
    stream = client or await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(b"POST %s HTTP/%s\r\nhost: x\r\naccept: text/event-stream\r\n"
                          b"content-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                          % (path.encode(), version, len(body), body))
    answer = b""
    with trio.fail_after(10):
        while not answer.endswith(b"0\r\n\r\n" if version == b"1.1" else b"\n\n") or (
                last not in answer):
            chunk = await stream.receive_some(1 << 16)
            if not chunk:
                break
            answer += chunk
    if client is None:
        await stream.aclose()
    return answer


def unchunk(body: bytes) -> bytes:
    decoder = Dechunker()
    out = decoder.feed(body)
    assert decoder.done
    return out


@pytest.mark.parametrize("path", list(ASKS))
@pytest.mark.parametrize("version", [b"1.1", b"1.0"])
async def test_sse_writes_skip_the_framework_on_http_1_1_only(
    start_server, monkeypatch, version: bytes, path: str,
) -> None:
    # On HTTP/1.1 each event leaves as a chunk written by Chorus (app.tcp.DirectBody), not
    # as a message through Quart, Hypercorn and h11; HTTP/1.0 ends the body by closing, so
    # its writes go the framework's way. The bytes a client reads are the same.
    bodies: list[bytes] = []
    send = H11Protocol.stream_send

    async def counted(self: H11Protocol, event: Any) -> None:
        if type(event) is Body:
            bodies.append(event.data)
        await send(self, event)

    monkeypatch.setattr(H11Protocol, "stream_send", counted)
    # A caught-up reader's events are written by the merge task (app.tcp.ChunkOffers),
    # wherever chunks can be written directly: the SSE bytes of /v1/streams, the chunks
    # of the OpenAI front door.
    offered: list[bytes] = []
    offer_chunk = tcp.TCPServer.offer_chunk

    def recorded(self: tcp.TCPServer, data: bytes) -> bool:
        taken = offer_chunk(self, data)
        if taken:
            offered.append(data)
        return taken

    monkeypatch.setattr(tcp.TCPServer, "offer_chunk", recorded)
    server = await start_server("[server]\nresume_grace = 0.0\n")
    port = int(server.url.rsplit(":", 1)[1])
    answer = await raw_sse(port, version, path=path)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    if version == b"1.1":
        assert b"transfer-encoding: chunked" in head.lower()
        events = unchunk(body)
        assert bodies == []
    else:
        events = body
        assert b"".join(bodies) == events
    data = [line[6:] for line in events.split(b"\n") if line.startswith(b"data: ")]
    parsed = [json.loads(d) for d in data if d != b"[DONE]"]
    if path == "/v1/streams":
        text = "".join(e["text"] for e in parsed if "text" in e)
    else:
        text = "".join(c["delta"].get("content") or "" for e in parsed for c in e["choices"])
    assert text == await demo_answer()
    assert events.count(ASKS[path][1]) == 1
    if version == b"1.1":
        assert offered
        assert all(data in events for data in offered)
    else:
        assert offered == []


async def demo_answer() -> str:
    """The text the demo model of these tests answers, from the provider itself."""
    request = ChatRequest(DEMO.split("/", 1)[1], (Message("user", "hi"),))
    provider = DemoProvider(ProviderConfig(name="demo", type="demo"))
    return "".join([e.text async for e in provider.stream(request) if type(e) is TextDelta])


async def test_a_connection_serves_the_next_request_after_a_direct_sse_body(
    start_server,
) -> None:
    server = await start_server("[server]\nresume_grace = 0.0\n")
    port = int(server.url.rsplit(":", 1)[1])
    client = await trio.open_tcp_stream("127.0.0.1", port)
    try:
        for _ in range(2):  # h11 ended the first body and took the second request
            head, _, body = (await raw_sse(port, b"1.1", client)).partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200")
            assert unchunk(body).count(b"event: stream.done") == 1
    finally:
        await client.aclose()
