"""What both ends of an agent's WebSocket do alike: the close codes, the writer that drains
an outbox into the socket, and the heartbeat.

The server (``app.agents``) and the agent (``app.agent_cli``) speak through different
WebSocket libraries (Quart's and trio-websocket's), so each passes in its own ``send``; the
rules are the same on both sides and live here once: every frame goes out through one
bounded outbox (a single writer, so frames never interleave), each side pings every
``heartbeat`` seconds, and a peer silent for ``MISSED`` of them is taken for dead.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import trio

from .frames import dumps

POLICY = 1008  # WebSocket close code: policy violation (a wrong token)
PROTOCOL = 1002  # WebSocket close code: a frame that breaks the protocol
MISSED = 3  # heartbeats a peer may miss before its connection counts as dead
REASON_BYTES = 123  # the most a close frame's reason may hold (RFC 6455, 5.5)


async def write(outgoing: trio.MemoryReceiveChannel[str],
                send: Callable[[str], Awaitable[None]]) -> None:
    """Send the outbox's frames in order, one at a time, until it is closed."""
    async for text in outgoing:
        await send(text)


async def beat(heartbeat: float, heard: Callable[[], float],
               outbox: trio.MemorySendChannel[str]) -> None:
    """Ping every ``heartbeat`` seconds; return once the peer (last ``heard`` at a trio
    time) has been silent for ``MISSED`` of them."""
    ping = dumps({"type": "ping"})
    while True:
        await trio.sleep(heartbeat)
        if trio.current_time() - heard() > heartbeat * MISSED:
            return
        await outbox.send(ping)


def close_reason(exc: BaseException) -> str:
    """``exc``'s message, cut to fit a close frame (whole characters, in UTF-8)."""
    return str(exc).encode()[:REASON_BYTES].decode(errors="ignore")
