"""In-process microbenchmarks: the CPU cost per token of Chorus's own code, without sockets.

- the OpenAI stream parser (SSE decoding, JSON, events), one event per read or ten;
- the engine (slot task -> channel -> merge -> log -> ``Stream.follow``), with a provider
  that yields one token per scheduler step (the slow-upstream case) or fifty (a full read).

Run alone: ``python -m bench.micro``. Times are CPU time (``time.process_time``), the
median of a few runs, so another process sharing the core disturbs them little.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import trio

from app.engine import Hub, Route, SlotPlan, StreamSettings
from providers import (
    ChatRequest,
    Finish,
    Message,
    ProviderConfig,
    ProviderEvent,
    TextDelta,
    Timeouts,
)
from providers.openai import OpenAIStreamParser

MODEL = "m_t20_n50_g20_s1_c4_x120"


def chunk(i: int) -> bytes:
    """One Chat Completions SSE event, as the fake upstream sends it."""
    return (
        'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,'
        f'"model":"{MODEL}","choices":[{{"index":0,"delta":{{"content":"~{i}.1234567890~ "}},'
        '"finish_reason":null}]}\n\n'
    ).encode()


def _median_us(fn: Callable[[], None], per: int, runs: int = 5) -> float:
    samples = []
    for _ in range(runs):
        started = time.process_time()
        fn()
        samples.append((time.process_time() - started) / per * 1e6)
    return round(statistics.median(samples), 2)


def parser_cost(tokens: int = 20000, per_read: int = 1) -> float:
    reads = [b"".join(chunk(i + j) for j in range(per_read)) for i in range(0, tokens, per_read)]

    def run() -> None:
        parser = OpenAIStreamParser()
        for data in reads:
            parser.feed(data)

    return _median_us(run, tokens)


class _Tokens:
    """A provider that yields ``n`` tokens, letting other tasks run every ``per_step``."""

    simulated = True

    def __init__(self, n: int, per_step: int) -> None:
        self.n = n
        self.per_step = per_step
        self.config = ProviderConfig(name="fake", type="demo")

    async def stream(self, request: ChatRequest) -> AsyncIterator[ProviderEvent]:
        for i in range(self.n):
            if i % self.per_step == 0:
                await trio.lowlevel.checkpoint()
            yield TextDelta(f"~{i}.1234567890~ ")
        yield Finish("stop")

    async def list_models(self) -> list[str]:
        return []

    async def aclose(self) -> None:
        return None


async def _engine_once(tokens: int, slots: int, per_step: int) -> tuple[float, int]:
    hub = Hub(StreamSettings(resume_grace=0))
    async with trio.open_nursery() as nursery:
        await nursery.start(hub.run)
        provider: Any = _Tokens(tokens // slots, per_step)
        request = ChatRequest("m", (Message("user", "hi"),))
        plans = [SlotPlan(i, "m", (Route("fake/m", provider, request, trio.CapacityLimiter(64),
                                         Timeouts(), 0),)) for i in range(slots)]
        started = time.process_time()
        stream = await hub.open("bench", plans, reader=True)
        writes = 0
        async for _ in stream.follow(0, attached=True):
            writes += 1
        cpu = time.process_time() - started
        hub.close()
    return cpu, writes


def engine_cost(tokens: int = 20000, slots: int = 1, per_step: int = 1) -> dict[str, Any]:
    samples, writes = [], 0
    for _ in range(5):
        cpu, writes = trio.run(_engine_once, tokens, slots, per_step)
        samples.append(cpu / tokens * 1e6)
    return {"us_per_token": round(statistics.median(samples), 2), "writes": writes,
            "tokens": tokens}


def run_all() -> dict[str, Any]:
    return {
        "parser_1_per_read_us": parser_cost(per_read=1),
        "parser_10_per_read_us": parser_cost(per_read=10),
        "engine_1_slot_1_per_step": engine_cost(slots=1, per_step=1),
        "engine_9_slots_1_per_step": engine_cost(slots=9, per_step=1),
        "engine_1_slot_50_per_step": engine_cost(slots=1, per_step=50),
    }


if __name__ == "__main__":
    for name, value in run_all().items():
        print(f"{name}: {value}")
