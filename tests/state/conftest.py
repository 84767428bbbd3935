"""Two Chorus instances on one real ``redis-server``, and a loopback upstream."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import aclosing
from typing import Any

import httpx
import pytest

from ..conftest import Server, StartServer, read_events
from ..support.redis import RedisServer
from ..support.upstream import FakeUpstream

ASK = {"messages": [{"role": "user", "content": "hello"}]}
SSE = {"Accept": "text/event-stream"}
KEYS = {"CHORUS_API_KEYS": "key-a,key-b"}
AUTH_A = {"Authorization": "Bearer key-a"}
AUTH_B = {"Authorization": "Bearer key-b"}

Pair = Callable[..., Awaitable[tuple[Server, Server]]]


async def read_all(client: httpx.AsyncClient, url: str, headers: dict[str, str] | None = None,
                   until: int | None = None) -> list[tuple[int, str, dict[str, Any]]]:
    """A stream's events read with key A (all of them, or the first ``until``)."""
    got: list[tuple[int, str, dict[str, Any]]] = []
    async with client.stream("GET", url, headers={**AUTH_A, **(headers or {})}) as r, \
            aclosing(read_events(r)) as events:
        assert r.status_code == 200, await r.aread()
        async for event in events:
            got.append(event)
            if until is not None and len(got) >= until:
                break
    return got


def answer_text(events: list[tuple[int, str, dict[str, Any]]]) -> str:
    """The text of every ``delta`` among ``events``, joined."""
    return "".join(data["text"] for _, kind, data in events if kind == "delta")


async def start_stream(client: httpx.AsyncClient, *models: object) -> dict[str, Any]:
    """``POST /v1/streams`` (key A, the usual question) for ``models``: its 201 body."""
    made = await client.post("/v1/streams", headers=AUTH_A, json={"models": list(models),
                                                                 **ASK})
    assert made.status_code == 201, made.text
    return made.json()


def redis_config(upstream: FakeUpstream, redis: RedisServer, *, grace: float = 0.0,
                 lease: float = 10.0, retention: float = 600.0, rate_limit: float = 20.0
                 ) -> str:
    return (f"[server]\nresume_grace = {grace}\nretention = {retention}\n"
            f"rate_limit = {rate_limit}\n"
            f"[state]\nbackend = \"redis\"\nredis_url = \"{redis.url}\"\nlease = {lease}\n"
            f"[providers.up]\ntype = \"openai\"\nbase_url = \"{upstream.url}/v1\"\n"
            f"api_key = \"sk-upstream\"\nretries = 0\n")


@pytest.fixture
def pair(upstream: FakeUpstream, redis_server: RedisServer, start_server: StartServer
         ) -> Pair:
    """``await pair(**settings)``: instances A and B of one deployment (same Redis, same
    upstream, same API keys)."""

    async def start(**settings: float) -> tuple[Server, Server]:
        toml = redis_config(upstream, redis_server, **settings)
        return (await start_server(toml, env=KEYS), await start_server(toml, env=KEYS))

    return start


from ..hardening.conftest import chorus_process, spawn  # noqa: E402,F401
