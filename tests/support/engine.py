"""Running the engine without a server: plans from demo names or scripted providers."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import trio

from app.engine import ConversationPlan, Hub, Route, SlotPlan, Stream, StreamSettings
from providers import ChatRequest, Message, ProviderConfig, ProviderEvent, Timeouts
from providers.demo import DemoProvider

DEMO = DemoProvider(ProviderConfig(name="demo", type="demo"))
HELLO = (Message("user", "hello"),)


def route(provider: Any, model: str, *, timeouts: Timeouts | None = None, retries: int = 2,
          limiter: trio.CapacityLimiter | None = None) -> Route:
    return Route(f"{provider.config.name}/{model}", provider, ChatRequest(model, HELLO),
                 limiter or trio.CapacityLimiter(100), timeouts or Timeouts(), retries)


def plans(*models: str | Route | Sequence[Route]) -> list[SlotPlan]:
    out = []
    for i, m in enumerate(models):
        if isinstance(m, str):
            routes: tuple[Route, ...] = (route(DEMO, m),)
        elif isinstance(m, Route):
            routes = (m,)
        else:
            routes = tuple(m)
        out.append(SlotPlan(i, routes[0].ref, routes))
    return out


@dataclass(frozen=True)
class Event:
    id: int
    type: str
    data: dict[str, Any]
    at: float


def parse(chunk: bytes, at: float) -> list[Event]:
    events = []
    for block in chunk.decode().split("\n\n"):
        if not block or block.startswith(":"):
            continue
        lines = dict(line.split(": ", 1) for line in block.split("\n"))
        events.append(Event(int(lines["id"]), lines["event"], json.loads(lines["data"]), at))
    return events


async def collect(stream: Stream, after: int = 0, *, attached: bool = False) -> list[Event]:
    out: list[Event] = []
    async for chunk in stream.follow(after, attached=attached):
        out.extend(parse(chunk, trio.current_time()))
    return out


async def run(
    slot_plans: list[SlotPlan],
    settings: StreamSettings | None = None,
    during: Callable[[Stream], Any] | None = None,
    conversation: ConversationPlan | None = None,
) -> list[Event]:
    """Open a stream with a reader from the start, read it to the end, return its events.

    ``during(stream)`` runs beside the reader (to stop slots, for example).
    """
    hub = Hub(settings or StreamSettings(resume_grace=0))
    async with trio.open_nursery() as nursery:
        await nursery.start(hub.run)
        stream = await hub.open("owner", slot_plans, reader=True, conversation=conversation)
        if during is not None:
            nursery.start_soon(during, stream)
        events = await collect(stream, attached=True)
        hub.close()
    return events


@dataclass
class Scripted:
    """A provider whose every attempt follows the next script: a list of provider events,
    exceptions to raise, and floats (seconds to sleep)."""

    attempts: list[list[Any]]
    name: str = "scripted"
    simulated: bool = True
    calls: int = 0
    config: ProviderConfig = field(init=False)

    def __post_init__(self) -> None:
        self.config = ProviderConfig(name=self.name, type="demo")

    async def stream(self, request: ChatRequest) -> AsyncIterator[ProviderEvent]:
        script = self.attempts[min(self.calls, len(self.attempts) - 1)]
        self.calls += 1
        for step in script:
            if isinstance(step, BaseException):
                raise step
            if isinstance(step, float | int):
                await trio.sleep(step)
            else:
                yield step

    async def list_models(self) -> list[str]:
        return ["m"]

    async def aclose(self) -> None:
        return None


def by_slot(events: list[Event], slot: int) -> list[Event]:
    return [e for e in events if e.data.get("slot") == slot]


def text_of(events: list[Event], slot: int, kind: str = "delta") -> str:
    return "".join(e.data["text"] for e in events if e.type == kind and e.data["slot"] == slot)
