"""Fixtures: a scriptable upstream and a real Chorus server, both on loopback."""

from __future__ import annotations

import json
import tomllib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass

import httpx
import pytest
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve
from quart_trio import QuartTrio

from app import create_app, tcp
from app.config import build_config
from app.engine import Hub
from providers.sse import SSEDecoder

from .support.upstream import FakeUpstream


@dataclass
class Server:
    url: str
    app: QuartTrio

    @property
    def hub(self) -> Hub:
        hub: Hub = self.app.extensions["chorus"].hub
        return hub

    def client(self, **headers: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, headers=headers,
                                 timeout=httpx.Timeout(10, read=30))


StartServer = Callable[..., Awaitable[Server]]


@pytest.fixture
async def upstream(nursery: trio.Nursery) -> FakeUpstream:
    up = FakeUpstream()
    await nursery.start(up.serve)
    return up


@pytest.fixture
async def start_server(nursery: trio.Nursery) -> AsyncIterator[StartServer]:
    """``await start_server(toml_text, env={...})`` runs Chorus on 127.0.0.1:<free port>.

    At the end of the test each server shuts down the way a real one does (the lifespan's
    shutdown runs), so no stream, task or upstream connection outlives its test.
    """
    tcp.install()  # Hypercorn with Chorus's connection handler, as ``chorus serve`` runs it
    running: list[tuple[trio.Event, trio.Event]] = []

    async def start(toml: str = "", env: dict[str, str] | None = None) -> Server:
        config = build_config(tomllib.loads(toml), env or {})
        app = create_app(config)
        hc = HypercornConfig()
        hc.bind = ["127.0.0.1:0"]
        hc.accesslog = None
        hc.errorlog = None
        hc.graceful_timeout = 1.0
        stop, stopped = trio.Event(), trio.Event()

        async def run(*, task_status: trio.TaskStatus[list[str]]) -> None:
            try:
                await serve(app, hc, shutdown_trigger=stop.wait,  # type: ignore[arg-type]
                            task_status=task_status)
            finally:
                stopped.set()

        binds = await nursery.start(run)
        running.append((stop, stopped))
        return Server(binds[0], app)

    yield start
    with trio.fail_after(10):
        for stop, stopped in running:
            stop.set()
            await stopped.wait()


@pytest.fixture
async def server(start_server: StartServer) -> Server:
    """Chorus with the demo provider only, and no grace after a reader leaves."""
    return await start_server("[server]\nresume_grace = 0.0\n")


async def read_events(response: httpx.Response) -> AsyncIterator[tuple[int, str, dict]]:
    """Parse Chorus's own SSE: ``(id, event, data)`` per event (pings are comments: skipped).

    Reads ``aiter_raw`` (one level of async generator, closed here) through Chorus's own
    spec-following decoder.
    """
    decoder = SSEDecoder()
    async with aclosing(response.aiter_raw()) as chunks:
        async for chunk in chunks:
            for event in decoder.feed(chunk):
                yield int(event.id or 0), event.event, json.loads(event.data)
