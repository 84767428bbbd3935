"""Hypercorn's trio connection handler, with socket writes that don't wait for the scheduler.

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

Hypercorn builds its handler by name in ``hypercorn.trio.run``; ``install`` points that name
here. If a Hypercorn release moves it, ``install`` leaves Hypercorn as it is and Chorus
serves the same, one scheduler round per write slower.
"""

from __future__ import annotations

import logging
import os
import sys

import trio
from hypercorn.events import Closed, Event, RawData
from hypercorn.trio import run as hypercorn_run
from hypercorn.trio.tcp_server import TCPServer as HypercornTCPServer

log = logging.getLogger("chorus")


class TCPServer(HypercornTCPServer):
    async def run(self) -> None:
        """Serve the connection; then let go of its protocol, so it is freed at once.

        The handler holds the protocol and the protocol holds the handler's
        ``protocol_send``: a cycle of ~34 objects per connection (h11's state, a lock, the
        socket) that only the garbage collector frees, and since a connection outlives a
        few collections, mostly a full one: a pause for every stream in flight. Once
        ``run`` returns, Hypercorn's task group has ended every task of the connection.
        """
        try:
            await super().run()
        finally:
            self.__dict__.clear()

    async def protocol_send(self, event: Event) -> None:
        stream = self.stream
        # -1 once closed (never write to a number reused since), or for TLS.
        fd = stream.socket.fileno() if isinstance(stream, trio.SocketStream) else -1
        if type(event) is not RawData or fd < 0 or self.send_lock.locked():
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


def install() -> bool:
    """Make Hypercorn's trio worker use ``TCPServer``; ``False`` if it could not (or, on
    Windows, where a socket is not a file descriptor ``os.write`` can take, should not)."""
    if sys.platform == "win32":
        return False
    current = getattr(hypercorn_run, "TCPServer", None)
    if current is TCPServer:
        return True
    if current is not HypercornTCPServer:
        log.warning("hypercorn.trio.run has no TCPServer of its own: writes go Hypercorn's "
                    "way (one scheduler round more per write)")
        return False
    setattr(hypercorn_run, "TCPServer", TCPServer)  # noqa: B010 (a name Hypercorn looks up)
    return True
