"""``type = "agent"``: the provider whose models are served by agents that dialled in.

The server's WebSocket route (``app.agents``) authenticates an agent and ``attach``es an
``AgentLink`` for it; ``stream`` then hands a job to the least loaded link that serves the
model and has a free place, the moment the slot starts (a waiting slot wakes on the
``attach``, ``detach`` or job end that frees one: no polling), and yields the events the
agent sends back. Cancelling the slot's scope closes the generator, which sends the agent a
``cancel``. A link that goes away mid-answer closes its jobs' queues: the slot ends with a
``connection`` error, retryable only while no text was sent.

Backpressure, per job (``window``): the agent sends a job at most ``WINDOW`` events that the
slot has not taken yet; each job's queue has room for all of them, so the route hands a
frame over without waiting and never stops reading the WebSocket for one slot. As the slot
takes the events the generator grants them back (``credit`` frames); a slot that takes
nothing leaves its agent out of window, and the agent stops reading that job's upstream.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field

import trio

from ..base import ChatRequest, ProviderConfig
from ..errors import TransportError
from ..events import ProviderEvent, ReasoningDelta, TextDelta
from .frames import Frame, FrameError, decode_error, dumps, encode_request
from .handshake import split_tokens
from .window import Window

WINDOW = 256  # events of one job the agent may send before its slot has taken them
OUTBOX = 256  # frames waiting to be written to one agent
CANCEL_WAIT = 1.0  # seconds a cancel may wait for room in a full outbox


class NoAgent(TransportError):
    """No connected agent serves the model: waiting would hang, retrying cannot help."""

    retryable = False


@dataclass(eq=False)
class Job:
    """One job on a link: the queue its slot reads and the account of its window."""

    queue: trio.MemorySendChannel[Frame]
    window: Window


@dataclass(eq=False)
class AgentLink:
    """One connected agent as the server sees it; the route does its I/O."""

    name: str
    models: frozenset[str]
    capacity: int
    heard: float = 0.0  # trio time of its last frame
    broken: str | None = None  # how it broke the protocol, if that is why it was dropped
    jobs: dict[str, Job] = field(default_factory=dict)

    @property
    def running(self) -> int:
        """Jobs on it now (``AgentPool._take`` adds a job as it picks the link: the place
        is taken as it is counted)."""
        return len(self.jobs)

    def __post_init__(self) -> None:
        self.outbox, self.outgoing = trio.open_memory_channel[str](OUTBOX)

    def deliver(self, frame: Frame) -> None:
        """Pass a job's frame (as ``frames.decode`` gave it) to its slot, without waiting:
        the job's window guarantees room. A frame over the window raises ``FrameError``;
        one for a job already ended (a cancel crossed it) is dropped."""
        job = self.jobs.get(frame["id"])
        if job is None:
            return
        if frame["type"] == "events":
            job.window.arrived(len(frame["events"]))
        try:
            job.queue.send_nowait(frame)
        except trio.WouldBlock:
            raise FrameError("an agent sent a job more frames than its window") from None
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    def close(self) -> None:
        """The connection is gone: every job's slot learns it from its closed queue."""
        for job in self.jobs.values():
            job.queue.close()
        self.outbox.close()


class AgentPool:
    """The provider of one ``[providers.NAME] type = "agent"`` table."""

    simulated = False

    def __init__(self, config: ProviderConfig) -> None:
        self.config = config
        self.tokens = split_tokens(config.api_key)
        self.links: list[AgentLink] = []
        self._changed = trio.Event()
        self._ids = itertools.count(1)

    @property
    def running(self) -> int:
        return sum(link.running for link in self.links)

    @property
    def capacity(self) -> int:
        return sum(link.capacity for link in self.links)

    def attach(self, link: AgentLink) -> None:
        self.links.append(link)
        self.changed()

    def detach(self, link: AgentLink) -> None:
        if link in self.links:
            self.links.remove(link)
        link.close()
        self.changed()

    def changed(self) -> None:
        """Wake the slots waiting for a place; the next change gets a new event."""
        self._changed.set()
        self._changed = trio.Event()

    async def next_change(self) -> None:
        """Until an agent comes or goes, or a job ends."""
        await self._changed.wait()

    async def list_models(self) -> list[str]:
        return sorted({model for link in self.links for model in link.models})

    async def aclose(self) -> None:
        for link in list(self.links):
            self.detach(link)

    async def _take(self, model: str, job_id: str, job: Job) -> AgentLink:
        """The least busy agent serving ``model`` that has room, its place taken by ``job``
        in the same step as the choice, so no other slot can take the same place."""
        while True:
            serving = [link for link in self.links if model in link.models]
            if not serving:
                raise NoAgent(f"no agent serving model {model!r} is connected to "
                              f"{self.config.name!r}")
            free = [link for link in serving if link.running < link.capacity]
            if free:
                link = min(free, key=lambda one: one.running / one.capacity)
                link.jobs[job_id] = job
                return link
            await self.next_change()

    async def stream(self, request: ChatRequest) -> AsyncGenerator[ProviderEvent, None]:
        job = str(next(self._ids))
        window = Window(WINDOW)
        # Every frame the window allows (one event each, at the least) and the job's end.
        queue, frames = trio.open_memory_channel[Frame](WINDOW + 1)
        link = await self._take(request.model, job, Job(queue, window))
        finished = False
        texted = False
        try:
            await _send(link, {"type": "job", "id": job, "model": request.model,
                               "window": WINDOW, "request": encode_request(request)})
            async with frames:
                async for frame in frames:
                    kind = frame.get("type")
                    if kind == "end":
                        finished = True
                        return
                    if kind == "error":
                        finished = True
                        raise decode_error(frame.get("error"), link.name)
                    carried: list[ProviderEvent] = frame["events"]
                    for event in carried:
                        texted |= isinstance(event, TextDelta | ReasoningDelta)
                        yield event
                    grant = window.taken(len(carried))
                    if grant:
                        await _send(link, {"type": "credit", "id": job, "events": grant})
            finished = True
            why = f" (it broke the protocol: {link.broken})" if link.broken else ""
            gone = TransportError(f"agent {link.name} serving {request.model!r} went away "
                                  f"mid-answer{why}")
            gone.retryable = not texted  # text was sent: a retry would repeat it
            raise gone
        finally:
            link.jobs.pop(job, None)
            self.changed()
            if not finished:
                await _cancel(link, job)


async def _send(link: AgentLink, frame: Frame) -> None:
    """Queue ``frame`` for the agent; waits while the outbox is full. On a connection
    already gone it does nothing: the job's queue is closed too, and says so to the slot."""
    try:
        await link.outbox.send(dumps(frame))
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass


async def _cancel(link: AgentLink, job: str) -> None:
    """Tell the agent to drop ``job``; from a closing generator, so shielded and brief."""
    with trio.CancelScope(shield=True), trio.move_on_after(CANCEL_WAIT):
        await _send(link, {"type": "cancel", "id": job})
