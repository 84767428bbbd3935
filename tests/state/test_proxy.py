"""The deployment's proxy (``deploy/nginx.conf``, as ``docker-compose.yml`` runs it) in
front of two instances on one Redis, with plain round robin: no sticky sessions. Every
request through it may land on either instance; events still come as they are made, a
resume misses nothing, and a stop or a client leaving closes the upstream."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import trio

from ..conftest import Server, read_events
from ..support.nginx import Nginx
from ..support.upstream import FakeUpstream, openai_script
from .conftest import AUTH_A, Pair, answer_text, read_all, start_stream

Through = Callable[..., httpx.AsyncClient]


@pytest.fixture
async def nginx(tmp_path: Path) -> AsyncIterator[list[Nginx]]:
    """The proxies a test started (``through``), stopped after it with no error logged."""
    started: list[Nginx] = []
    yield started
    for proxy in started:
        proxy.stop()
        errors = proxy.errors()
        assert "[emerg]" not in errors
        assert "[crit]" not in errors


@pytest.fixture
def through(nginx: list[Nginx], tmp_path: Path) -> Through:
    """``through(a, b)``: an ``httpx`` client of nginx in front of instances a and b."""

    def start(*servers: Server) -> httpx.AsyncClient:
        proxy = Nginx([urlsplit(s.url).netloc for s in servers], tmp_path / "nginx")
        nginx.append(proxy)
        return httpx.AsyncClient(base_url=proxy.url, timeout=httpx.Timeout(10, read=30))

    return start


async def test_events_pass_the_proxy_as_they_come_and_a_resume_on_either_instance_misses_nothing(
    upstream: FakeUpstream, pair: Pair, through: Through, nginx: list[Nginx],
) -> None:
    upstream.respond = lambda seen: openai_script([f"w{i} " for i in range(30)], gap=0.05)
    a, b = await pair(grace=5.0)
    async with through(a, b) as proxy:
        created = await start_stream(proxy, "up/m1")
        first = await read_all(proxy, created["events_url"], until=6)
        # The upstream is still sending (1.5 s of words): nothing was held back to fill a
        # buffer, and the events came through a round-robin proxy, from either instance.
        assert not upstream.seen[0].closed.is_set()
        assert [kind for _, kind, _ in first[1:]] == ["model.start", *["delta"] * 4]
        rest = await read_all(proxy, created["events_url"],
                              headers={"Last-Event-ID": str(first[-1][0])})
        whole = await read_all(proxy, created["events_url"])
    assert first + rest == whole
    assert whole[-1][1] == "stream.done"
    assert answer_text(whole) == "".join(f"w{i} " for i in range(30))
    # The three reads of the events were served by both instances, not one.
    events_path = urlsplit(created["events_url"]).path
    for _ in range(100):  # nginx logs a request once it has ended on both sides (5 s)
        reads = [r for r in nginx[0].routed() if r[1] == events_path]
        if len(reads) >= 3:
            break
        await trio.sleep(0.05)
    assert len(reads) == 3
    assert {instance for _, _, instance in reads} == {urlsplit(s.url).netloc for s in (a, b)}


async def test_a_stop_and_a_client_leaving_through_the_proxy_close_the_upstream(
    upstream: FakeUpstream, pair: Pair, through: Through,
) -> None:
    upstream.respond = lambda seen: openai_script(["tok "] * 400, gap=0.02)
    a, b = await pair(grace=0.0)
    async with through(a, b) as proxy:
        stopped = await start_stream(proxy, "up/m1")
        await upstream.wait_for_request(1)
        answer = await proxy.post(stopped["stop_url"], headers=AUTH_A, json={})
        assert answer.status_code == 200
        assert [s["state"] for s in answer.json()["slots"]] == ["stopped"]
        with trio.fail_after(5):
            await upstream.seen[0].closed.wait()

        left = await start_stream(proxy, "up/m1")
        async with proxy.stream("GET", left["events_url"], headers=AUTH_A) as r, \
                aclosing(read_events(r)) as events:
            async for _, kind, _ in events:
                if kind == "delta":
                    break  # the client leaves mid-answer; nginx closes its side too
        await upstream.wait_for_request(2)
        with trio.fail_after(5):
            await upstream.seen[1].closed.wait()
