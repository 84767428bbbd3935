"""Chorus's Hypercorn connection handler: writes leave at once, whole and in order."""

from __future__ import annotations

import gc
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio
import trio.testing
from hypercorn.app_wrappers import ASGIWrapper
from hypercorn.config import Config as HypercornConfig
from hypercorn.events import Closed, RawData
from hypercorn.trio import run as hypercorn_run
from hypercorn.trio.worker_context import WorkerContext

from app import tcp


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
