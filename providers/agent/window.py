"""Per-job flow control between Chorus and an agent: a window of events, granted back as
the job's slot takes them.

Many jobs share one WebSocket, so the socket cannot be what holds back one job: a slot that
stops taking its events would stall every other job of that agent behind it. Instead each
job has a window (``size`` events). The agent sends a job at most what its window has left
(``Allowance``); the server charges each frame that arrives against the job's window
(``Window.arrived``: a frame over it breaks the protocol) and, as the slot takes the events,
grants them back in ``credit`` frames — once half a window has been taken, so a fast job
costs a credit frame per half window, not one per frame. A slot that takes nothing
therefore holds at most one window of its job on the server, the server's reader never
waits for it, and the agent, out of window, stops reading that job's upstream.

An events frame is charged one per event it carries (at least one, so that empty frames are
not free). ``end`` and ``error`` frames are not charged: each job has one.
"""

from __future__ import annotations

import trio

from .frames import FrameError


class Window:
    """The server's account of one job: events the agent sent and was not yet granted back.

    Pure: the caller sends the ``credit`` frames ``taken`` asks for.
    """

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("a window holds at least one event")
        self.size = size
        self.outstanding = 0  # events sent by the agent and not granted back yet
        self.pending = 0  # of those, events the slot has taken (the next grant)

    @property
    def threshold(self) -> int:
        """Taken events worth a credit frame: half a window (at least one)."""
        return max(1, self.size // 2)

    def arrived(self, events: int) -> None:
        """A frame of ``events`` arrived; ``FrameError`` if it overruns the window."""
        charge = max(1, events)
        if self.outstanding + charge > self.size:
            raise FrameError(f"an agent sent {charge} events with "
                             f"{self.size - self.outstanding} left in the job's window")
        self.outstanding += charge

    def taken(self, events: int) -> int:
        """The slot took a frame of ``events``: how many to grant back now (0: not yet)."""
        self.pending += max(1, events)
        if self.pending < self.threshold:
            return 0
        grant, self.pending = self.pending, 0
        self.outstanding -= grant
        return grant


class Allowance:
    """The agent's side of one job's window: events it may still send, and a wait for more."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("a window holds at least one event")
        self.size = size
        self.left = size
        self._granted = trio.Event()

    def take(self, events: int) -> None:
        """``events`` go out in a frame; never more than are left."""
        if not 1 <= events <= self.left:
            raise ValueError(f"{events} events with {self.left} left in the window")
        self.left -= events

    def grant(self, events: int) -> None:
        """A ``credit`` frame gave back ``events``; more than were sent is the server's
        mistake, and breaks the protocol."""
        if not 1 <= events <= self.size - self.left:
            raise FrameError(f"a credit of {events} events with "
                             f"{self.size - self.left} outstanding")
        self.left += events
        self._granted.set()
        self._granted = trio.Event()

    async def ready(self) -> None:
        """Until at least one event may be sent."""
        while not self.left:
            await self._granted.wait()
