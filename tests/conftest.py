"""Fixtures: a scriptable upstream and a real Chorus server, both on loopback."""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import aclosing
from dataclasses import dataclass

import httpx
import pytest
import trio
from quart_trio import QuartTrio

from app import cli, create_app
from app.config import build_config
from app.engine import Hub
from providers.sse import SSEDecoder

from .support.redis import RedisServer, RedisUnavailable
from .support.serving import loopback_config, start_serving
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
    running: list[tuple[trio.Event, trio.Event]] = []

    async def start(toml: str = "", env: dict[str, str] | None = None) -> Server:
        config = build_config(tomllib.loads(toml), env or {})
        app = create_app(config)
        url, stop, stopped = await start_serving(nursery, app,
                                                 loopback_config(graceful_timeout=1.0))
        running.append((stop, stopped))
        return Server(url, app)

    yield start
    with trio.fail_after(10):
        for stop, stopped in running:
            stop.set()
            await stopped.wait()


@pytest.fixture
async def server(start_server: StartServer) -> Server:
    """Chorus with the demo provider only, and no grace after a reader leaves."""
    return await start_server("[server]\nresume_grace = 0.0\n")


@pytest.fixture
def bare_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The environment of someone who set nothing for Chorus: no ``CHORUS_`` variable and
    no provider key (what the tests' ``chorus`` processes are given)."""
    for name in list(os.environ):
        if name.startswith("CHORUS_") or name.endswith("_API_KEY"):
            monkeypatch.delenv(name)


@pytest.fixture
def no_serving(monkeypatch: pytest.MonkeyPatch) -> None:
    """For ``cli.main(["serve", ...])`` run in-process to see it refuse: a serve that gets
    past its refusals fails at once, rather than serving for ever."""

    def went_on(*_: object) -> None:
        raise AssertionError("serve went on past its refusal")

    monkeypatch.setattr(cli, "configure_logging", went_on)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A real, empty ``redis-server`` on a free loopback port, ended after the test. Without
    ``redis-server`` installed the test fails (it does not skip): the Redis backend's tests
    are part of the suite."""
    try:
        server = RedisServer()
    except RedisUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield server
    finally:
        server.close()


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
