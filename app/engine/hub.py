"""The hub: every live stream of this process, in one long-lived nursery.

It creates streams (ids with 128 random bits), finds them for their owner only, stops them
all on shutdown, and forgets each one ``retention`` seconds after its ``stream.done``.
The stop signal and the log sit behind ``Stream``/``EventLog`` so a Redis backend can later
carry them between instances.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence

import trio

from .log import EventLog, MemoryEventLog
from .slots import SlotPlan
from .stream import Stream, StreamSettings


class TooManyStreams(Exception):
    """The hub already runs ``max_streams`` streams."""


class Hub:
    def __init__(
        self,
        settings: StreamSettings | None = None,
        max_streams: int = 1000,
        log_factory: Callable[[], EventLog] = MemoryEventLog,
    ) -> None:
        self.settings = settings or StreamSettings()
        self.max_streams = max_streams
        self._log_factory = log_factory
        self._streams: dict[str, Stream] = {}
        self._nursery: trio.Nursery | None = None
        self.active = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Host every stream until cancelled; ``shutdown()`` first for a clean end."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    def close(self) -> None:
        """Cancel everything the hub runs, at once (after ``shutdown`` for a clean end)."""
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    async def open(self, owner: str, plans: Sequence[SlotPlan], *, reader: bool = False) -> Stream:
        """Create a stream and start it. ``reader=True``: the caller reads it from the start."""
        if self._nursery is None:
            raise RuntimeError("the hub is not running")
        if self.active >= self.max_streams:
            raise TooManyStreams(f"{self.active} streams are running; the limit is "
                                 f"{self.max_streams}")
        stream = Stream(secrets.token_urlsafe(16), owner, plans, self._log_factory(),
                        self.settings)
        if reader:
            stream.attach()  # handed over to the caller's ``follow(attached=True)``
        self._streams[stream.id] = stream
        await self._nursery.start(self._life, stream)
        return stream

    async def _life(self, stream: Stream, *, task_status: trio.TaskStatus[None]) -> None:
        self.active += 1
        try:
            await stream.run(task_status=task_status)
        finally:
            self.active -= 1
        await trio.sleep(self.settings.retention)
        self._streams.pop(stream.id, None)

    def get(self, stream_id: str, owner: str) -> Stream | None:
        """The stream, if it exists and belongs to ``owner``; otherwise ``None`` (a 404)."""
        stream = self._streams.get(stream_id)
        if stream is None or not secrets.compare_digest(stream.owner, owner):
            return None
        return stream

    def streams(self) -> list[Stream]:
        return list(self._streams.values())

    async def shutdown(self) -> None:
        """Stop every live slot with reason ``shutdown`` and wait for the streams to end.

        Slots end within moments of a stop (their scopes are cancelled); callers that must
        exit within a bound wrap this in ``trio.move_on_after``.
        """
        live = [s for s in self._streams.values() if not s.done.is_set()]
        for stream in live:
            stream.stop(None, "shutdown")
        for stream in live:
            await stream.done.wait()
