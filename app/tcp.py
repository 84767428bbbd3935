"""Hypercorn's trio connection handler, with socket writes that don't wait for the scheduler
and a keep-alive timeout that is a deadline, not a task.

For every write, Hypercorn's handler takes a ``trio.Lock`` and calls
``SocketStream.send_all``. Both yield to the scheduler even when nothing is in the way: the
lock's ``acquire`` before the bytes leave, ``send_all`` after they left. The first yield
sits between a token being ready and its bytes going out, so every relayed token waits for
one more round of every other runnable task; the second costs a round per write too. With
50 streams of one token per write, dropping them took the per-chunk lag from 0.46 to 0.39 ms
at p50 and from 1.88 to 1.69 ms at p99 (``bench/findings.md``, "third round").

``TCPServer.protocol_send`` here writes straight to the socket when no other write of the
connection is under way: one non-blocking ``send``, no yield. Whatever the kernel did not
take (the send buffer is full: a slow reader) goes Hypercorn's way, lock and all, which
waits until the socket is writable; a failed send is a closed connection, as in Hypercorn.
TLS connections always go Hypercorn's way. And a connection's objects are freed when it
ends, not left as a cycle for the garbage collector (``TCPServer.run``).

Hypercorn closes a connection that sits idle for ``keep_alive_timeout`` (or when the
server shuts down) with a task that it starts anew, behind a lock, each time the connection
goes idle: at its start and after every response. Under quart-trio that task never
fired (an idle connection stayed open, and a shutdown waited the whole graceful timeout
for it), while starting and cancelling it was about 8 % of the CPU a one-token stream costs
on a fresh connection. ``IdleTimer`` takes its place: the connection's read of the next
request carries the keep-alive deadline, moved as the connection turns idle or busy, and
``WorkerContext`` ends the reads of idle connections when the server shuts down.

``DirectBody`` lets an SSE body write its chunks through ``protocol_send`` itself once
the head is out, on HTTP/1.1: an ASGI message through Quart, Hypercorn and h11 per write
cost an eighth of a relayed token's instructions. And ``ChunkOffers`` lets the merge task
write a caught-up reader's next events itself (``offer_chunk``), so that the response's
task sleeps on instead of being woken for each: a scheduler step, a quarter of a relayed
token's instructions.

Hypercorn builds its handler and its worker context by name in ``hypercorn.trio.run``;
``install`` points those names here. If a Hypercorn release moves them, ``install`` leaves
Hypercorn as it is and Chorus serves the same, one scheduler round per write slower and
with Hypercorn's own idle task.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

import h11
import trio
from hypercorn.events import Closed, Event, RawData
from hypercorn.protocol.h11 import H11Protocol
from hypercorn.trio import run as hypercorn_run
from hypercorn.trio.tcp_server import MAX_RECV
from hypercorn.trio.tcp_server import TCPServer as HypercornTCPServer
from hypercorn.trio.worker_context import EventWrapper
from hypercorn.trio.worker_context import WorkerContext as HypercornWorkerContext

if TYPE_CHECKING:
    from app.engine.log import LiveBatch

log = logging.getLogger("chorus")

# The connection a task serves: set in the connection's own task, from which Hypercorn
# starts the application's, so a response's tasks find the socket their bytes go to.
connection: ContextVar[TCPServer | None] = ContextVar("chorus_connection", default=None)


class IdleTimer:
    """The keep-alive timeout of one connection, in Hypercorn's ``SingleTask`` seam.

    Hypercorn calls ``restart`` when the connection turns idle (it has opened, or a
    response has ended and the next request may come) and ``stop`` when a request
    arrives. Neither starts a task nor yields: they move ``deadline``, which the read of
    the next request carries (``TCPServer._read_data``). A connection that turns idle
    once the server is shutting down gets a deadline in the past: it closes at once.
    """

    __slots__ = ("_server", "deadline", "read_deadline", "scope")

    def __init__(self, server: TCPServer) -> None:
        self._server = server
        self.deadline = math.inf
        self.scope: trio.CancelScope | None = None  # the read under way, if any
        self.read_deadline = math.inf  # its own bound (Hypercorn's ``read_timeout``)

    async def restart(self, task_group: object, action: Callable[..., Any]) -> None:
        """The connection is idle (Hypercorn's task and action to run are not needed)."""
        server = self._server
        if server.context.terminated.is_set():
            self._move(-math.inf)
            return
        self._move(trio.current_time() + server.config.keep_alive_timeout)
        idle = _idle_set(server.context)
        if idle is not None:
            idle.add(self)

    async def stop(self) -> None:
        self.forget()
        self._move(math.inf)

    def expire(self) -> None:
        """End the connection's wait for a next request now (the server is shutting down)."""
        self._move(-math.inf)

    def forget(self) -> None:
        idle = _idle_set(self._server.context)
        if idle is not None:
            idle.discard(self)

    def _move(self, deadline: float) -> None:
        self.deadline = deadline
        if self.scope is not None:
            self.scope.deadline = min(deadline, self.read_deadline)


class _Terminated(EventWrapper):
    """The worker's "terminated" event, which also ends the waits of idle connections."""

    def __init__(self, idle: set[IdleTimer]) -> None:
        super().__init__()
        self._idle = idle

    async def set(self) -> None:
        await super().set()
        for timer in list(self._idle):
            timer.expire()


class WorkerContext(HypercornWorkerContext):
    """Hypercorn's per-worker state, plus the connections waiting idle for a request, so
    that a shutdown closes them at once instead of after the graceful timeout."""

    def __init__(self, max_requests: int | None) -> None:
        super().__init__(max_requests)
        self.idle: set[IdleTimer] = set()
        self.terminated = _Terminated(self.idle)


def _idle_set(context: object) -> set[IdleTimer] | None:
    return context.idle if isinstance(context, WorkerContext) else None


class TCPServer(HypercornTCPServer):
    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.idle_task: IdleTimer = IdleTimer(self)  # type: ignore[assignment]
        # What ``offer_chunk`` took and the socket did not: the next write sends it first.
        self.rest = b""

    async def _read_data(self) -> None:
        """Hypercorn's read loop, each read bounded by the keep-alive deadline (when the
        connection is idle) and by ``read_timeout`` (when set); either ends the connection."""
        timer = self.idle_task
        read_timeout = self.config.read_timeout or math.inf
        while True:
            timer.read_deadline = trio.current_time() + read_timeout
            with trio.CancelScope(deadline=min(timer.deadline, timer.read_deadline)) as scope:
                timer.scope = scope
                try:
                    data = await self.stream.receive_some(MAX_RECV)
                except (trio.ClosedResourceError, trio.BrokenResourceError):
                    break
                finally:
                    timer.scope = None
            if scope.cancelled_caught:
                break
            await self.protocol.handle(RawData(bytes(data)))
            if data == b"":
                break
        await self.protocol.handle(Closed())

    async def run(self) -> None:
        """Serve the connection; then let go of its protocol, so it is freed at once.

        The handler holds the protocol and the protocol holds the handler's
        ``protocol_send``: a cycle of ~34 objects per connection (h11's state, a lock, the
        socket) that only the garbage collector frees, and since a connection outlives a
        few collections, mostly a full one: a pause for every stream in flight. Once
        ``run`` returns, Hypercorn's task group has ended every task of the connection.
        """
        connection.set(self)
        try:
            await super().run()
        finally:
            self.idle_task.forget()
            self.__dict__.clear()

    def chunk_writer(self) -> Callable[[bytes], Awaitable[None]] | None:
        """A writer of the response's body straight to the socket, in h11's chunked
        framing, or ``None`` where that is not what h11 writes: not HTTP/1.1 (h11 ends a
        1.0 body by closing), no head sent yet, a HEAD request, a body of known length,
        a WebSocket, HTTP/2.

        h11 keeps no count of a chunked body, so chunks written past it leave its state
        as it is, and the end of the response (Quart's last message) goes through it.
        """
        protocol = getattr(getattr(self, "protocol", None), "protocol", None)
        if not isinstance(protocol, H11Protocol):
            return None
        conn = protocol.connection
        stream = protocol.stream
        if (type(conn) is not h11.Connection or conn.our_state is not h11.SEND_BODY
                or conn.their_http_version != b"1.1"
                or getattr(stream, "scope", {}).get("method") == "HEAD"):
            return None
        headers = (getattr(stream, "response", None) or {}).get("headers", ())
        if any(name.lower() in (b"content-length", b"transfer-encoding")
               for name, _ in headers):
            return None  # framed by the application: h11's own writer must see each byte
        return self._write_chunk

    async def _write_chunk(self, data: bytes) -> None:
        if data:  # an empty chunk would be the body's end, which is h11's to write
            await self.protocol_send(RawData(data=_chunk(data)))

    def _direct_fd(self) -> int:
        """The socket to write to straight away, or -1: TLS, a connection closed (never
        write to a number reused since) or ended (``run`` cleared it), or another write of
        the connection under way."""
        stream = self.__dict__.get("stream")
        if not isinstance(stream, trio.SocketStream) or self.send_lock.locked():
            return -1
        return stream.socket.fileno()

    def offer_chunk(self, data: bytes) -> bool:
        """Write ``data`` as one chunk now, from whichever task holds it, or refuse it
        (``False``, nothing written): when another write of the connection is under way
        or unfinished, or the socket is full or gone. If the socket takes only part of
        the chunk, the rest is kept in ``rest`` and goes out first with the next write
        (``protocol_send``); the caller sees to it that one comes (``ChunkOffers.flush``).
        """
        fd = self._direct_fd() if data else -1
        if fd < 0 or self.rest:
            return False
        framed = _chunk(data)
        try:
            sent = os.write(fd, framed)
        except OSError:  # full (nothing written), or closed: the reader's own write tells
            return False
        if sent < len(framed):
            self.rest = framed[sent:]
        return True

    async def protocol_send(self, event: Event) -> None:
        if self.rest and type(event) is RawData:
            event = RawData(data=self.rest + event.data)
            self.rest = b""
        fd = self._direct_fd()
        if type(event) is not RawData or fd < 0:
            await super().protocol_send(event)
            return
        data = event.data
        try:
            sent = os.write(fd, data)
        except BlockingIOError:
            sent = 0
        except OSError:
            await self.protocol.handle(Closed())
            return
        if sent < len(data):
            # The rest waits for room, behind the lock like any write. Shielded, as
            # Hypercorn's own send is: part of this chunk is already out, so stopping
            # halfway would corrupt the response.
            with trio.CancelScope(shield=True):
                await super().protocol_send(RawData(data=data[sent:]))


def _chunk(data: bytes) -> bytes:
    """``data`` framed as one chunk of a chunked body, as h11 frames it."""
    return b"%x\r\n%s\r\n" % (len(data), data)


class ChunkOffers:
    """Where the merge task writes a caught-up reader's next events for one response
    (a ``LiveWriter``, ``app/engine/log.py``): through ``TCPServer.offer_chunk``, as
    chunks, without waking the response's task. ``offer`` writes the events' SSE bytes
    (``/v1/streams``); a body with bytes of its own (the OpenAI front door) makes them
    and writes them with ``offer_chunk``."""

    __slots__ = ("_server",)

    def __init__(self, server: TCPServer) -> None:
        self._server = server

    def offer(self, batch: LiveBatch) -> bool:
        return self._server.offer_chunk(batch.wire)

    def offer_chunk(self, data: bytes) -> bool:
        return self._server.offer_chunk(data)

    @property
    def behind(self) -> bool:
        return bool(self._server.__dict__.get("rest"))  # none once the connection ended

    async def flush(self) -> None:
        if self.behind:
            await self._server.protocol_send(RawData(data=b""))


class DirectBody:
    """A streamed response body whose writes skip Quart, Hypercorn and h11 once the head
    is out: each piece of ``body`` goes to ``TCPServer.protocol_send`` in h11's chunk
    framing. On the way through the framework a write was an ASGI message, Hypercorn's
    event, h11's event and framing: ~46k instructions each, an eighth of a relayed
    token's (``bench/findings.md``). A body that can be written live (``write_live``: the
    engine's ``SSEBody``, the OpenAI front door's ``CompletionBody``) gets ``ChunkOffers``
    as well. Where the connection is not Chorus's HTTP/1.1 handler
    (``TCPServer.chunk_writer``), the pieces go the framework's way.
    """

    __slots__ = ("_body", "_decided")

    def __init__(self, body: AsyncIterator[bytes]) -> None:
        self._body = body
        self._decided = False

    def __aiter__(self) -> DirectBody:
        return self

    async def __anext__(self) -> bytes:
        if not self._decided:  # the first call comes once the head has been sent
            self._decided = True
            server = connection.get()
            if server is not None and (write := server.chunk_writer()) is not None:
                write_live = getattr(self._body, "write_live", None)
                if write_live is not None:
                    write_live(ChunkOffers(server))
                async for data in self._body:
                    await write(data)
                raise StopAsyncIteration
        return await self._body.__anext__()

    async def aclose(self) -> None:
        aclose = getattr(self._body, "aclose", None)
        if aclose is not None:
            await aclose()


def install() -> bool:
    """Make Hypercorn's trio worker use ``TCPServer`` and ``WorkerContext``; ``False`` if it
    could not (or, on Windows, where a socket is not a file descriptor ``os.write`` can
    take, should not)."""
    if sys.platform == "win32":
        return False
    names = {"TCPServer": (HypercornTCPServer, TCPServer),
             "WorkerContext": (HypercornWorkerContext, WorkerContext)}
    current = {name: getattr(hypercorn_run, name, None) for name in names}
    if all(current[name] is ours for name, (_, ours) in names.items()):
        return True
    if any(current[name] not in pair for name, pair in names.items()):
        log.warning("hypercorn.trio.run has no TCPServer or WorkerContext of its own: "
                    "Hypercorn's connection handler serves (one scheduler round more per write)")
        return False
    for name, (_, ours) in names.items():
        setattr(hypercorn_run, name, ours)  # Hypercorn looks these names up when it serves
    return True
