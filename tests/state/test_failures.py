"""What happens when Redis or an instance fails: documented outcomes, nothing hung.

- Redis unreachable at start-up: ``chorus serve`` says so and exits 2.
- Redis gone later: new streams get 503 ``unavailable``; a running stream finishes for its
  readers on its own instance; once Redis is back, new streams are taken again.
- Redis restarted (empty) mid-stream: the running instance writes the stream again, and a
  reader on another instance goes on with every event once.
- An instance killed mid-stream: a reader on another instance gets ``model.error``
  (``connection``) per unfinished slot and ``stream.done`` within the lease.
"""

from __future__ import annotations

import logging
import signal
from contextlib import aclosing
from typing import Any

import httpx
import pytest
import trio

from bench.procs import free_port

from ..conftest import StartServer, read_events
from ..support.redis import RedisServer
from ..support.upstream import FakeUpstream, openai_script
from .conftest import (
    ASK,
    AUTH_A,
    KEYS,
    SSE,
    Pair,
    answer_text,
    read_all,
    redis_config,
    spawn,
    start_stream,
)


async def test_serve_exits_2_when_redis_does_not_answer(tmp_path) -> None:
    path = tmp_path / "chorus.toml"
    url = f"redis://127.0.0.1:{free_port()}/0"
    path.write_text(f"[state]\nbackend = \"redis\"\nredis_url = \"{url}\"\n")
    process = await spawn(["serve", "--config", str(path), "--port", "0"])
    with trio.fail_after(20):
        await process.wait()
    assert process.stderr is not None
    err = (await process.stderr.receive_some(65536)).decode()
    assert process.returncode == 2
    assert f"Redis at {url} does not answer" in err
    assert 'backend = "memory"' in err


async def test_with_redis_gone_new_streams_get_503_and_running_ones_finish_here(
    upstream: FakeUpstream, pair: Pair, redis_server: RedisServer,
) -> None:
    upstream.respond = lambda seen: openai_script([f"w{i} " for i in range(30)], gap=0.02)
    a, _ = await pair()
    async with a.client() as ca:
        async with ca.stream("POST", "/v1/streams", headers={**AUTH_A, **SSE},
                             json={"models": ["up/m1"], **ASK}) as r, \
                aclosing(read_events(r)) as events:
            got = []
            async for event in events:
                got.append(event)
                if len(got) == 3:
                    # In a thread: both instances run on while Redis goes down.
                    await trio.to_thread.run_sync(redis_server.stop)
            with trio.fail_after(10):
                refused = await ca.post("/v1/streams", headers=AUTH_A,
                                        json={"models": ["up/m1"], **ASK})
        assert refused.status_code == 503
        assert refused.json()["error"]["type"] == "unavailable"
        assert "Redis" in refused.json()["error"]["message"]
        assert refused.headers["Retry-After"]
        # Back (empty): new streams are taken again, unprompted.
        await trio.to_thread.run_sync(redis_server.restart)
        with trio.fail_after(10):
            for _ in range(100):  # the client's own retry, as the 503 asks
                again = await ca.post("/v1/streams", headers=AUTH_A,
                                      json={"models": ["up/m1"], **ASK})
                if again.status_code == 201:
                    break
                await trio.sleep(0.2)
        assert again.status_code == 201
    assert got[-1][1] == "stream.done"
    assert answer_text(got) == "".join(f"w{i} " for i in range(30))


async def test_redis_restarted_mid_stream_a_reader_elsewhere_misses_nothing(
    upstream: FakeUpstream, pair: Pair, redis_server: RedisServer,
) -> None:
    upstream.respond = lambda seen: openai_script([f"w{i} " for i in range(60)], gap=0.02)
    a, b = await pair(grace=5.0)
    async with a.client() as ca, b.client() as cb:
        created = await start_stream(ca, "up/m1")
        on_b = []
        with trio.fail_after(30):
            async with cb.stream("GET", created["events_url"], headers=AUTH_A) as r, \
                    aclosing(read_events(r)) as events:
                async for event in events:
                    on_b.append(event)
                    if len(on_b) == 10:
                        await trio.to_thread.run_sync(redis_server.restart)
        on_a = await read_all(ca, created["events_url"])
    assert on_b == on_a
    assert on_b[-1][1] == "stream.done"


async def test_an_instance_killed_mid_stream_ends_for_readers_elsewhere_within_the_lease(
    upstream: FakeUpstream, redis_server: RedisServer, start_server: StartServer,
    chorus_process, caplog: pytest.LogCaptureFixture,
) -> None:
    """Readers on two other instances: both instances see the lease lapse and race to end
    the stream; one wins, the other takes the winner's ending as its own, no one fails."""
    upstream.respond = lambda seen: openai_script(["tok "] * 500, gap=0.02)
    lease = 2.0  # A must renew it within lease/2 while three instances share the machine
    toml = redis_config(upstream, redis_server, grace=5.0, lease=lease)
    a = await chorus_process(toml, env=KEYS)
    b = await start_server(toml, env=KEYS)
    c = await start_server(toml, env=KEYS)
    caplog.set_level(logging.INFO, logger="chorus.state")
    got: dict[str, list[tuple[int, str, dict[str, Any]]]] = {"b": [], "c": []}
    ended_after: dict[str, float] = {}
    async with httpx.AsyncClient(base_url=a.url, timeout=10) as ca, b.client() as cb, \
            c.client() as cc:
        created = await start_stream(ca, "up/m1", "up/m2")
        killed = trio.Event()
        killed_at = 0.0

        async def read(name: str, client: httpx.AsyncClient) -> None:
            nonlocal killed_at
            seen = got[name]
            async with client.stream("GET", created["events_url"], headers=AUTH_A) as r, \
                    aclosing(read_events(r)) as events:
                async for event in events:
                    seen.append(event)
                    if name == "b" and len([e for e in seen if e[1] == "delta"]) == 5:
                        a.process.kill()
                        killed_at = trio.current_time()
                        killed.set()
                assert killed.is_set(), "the stream ended before A was killed (A stalled)"
                ended_after[name] = trio.current_time() - killed_at

        with trio.fail_after(lease + 8):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(read, "b", cb)
                nursery.start_soon(read, "c", cc)
    for name, events in got.items():
        errors = [d for _, t, d in events if t == "model.error"]
        assert sorted(e["slot"] for e in errors) == [0, 1], name
        assert {e["error"]["type"] for e in errors} == {"connection"}, name
        assert events[-1][1] == "stream.done", name
        assert events[-1][2]["counts"]["error"] == 2, name
        assert [i for i, _, _ in events] == list(range(1, len(events) + 1)), name
        assert ended_after[name] < lease + 1.0  # within the lease, give or take a busy machine
    assert got["b"] == got["c"]  # one ending, written once, read alike everywhere
    ended = [r for r in caplog.records if r.getMessage() == "stream.orphan_ended"]
    assert len(ended) == 1  # only the winner says it ended the stream
    trouble = [r for r in caplog.records if r.levelno >= logging.WARNING and r not in ended]
    assert not trouble, [r.getMessage() for r in trouble]


async def test_an_instance_stalled_past_its_lease_stops_the_stream_others_ended(
    upstream: FakeUpstream, redis_server: RedisServer, start_server: StartServer,
    chorus_process,
) -> None:
    """A stalled, not dead: B ends A's stream for its reader as if A had died. When A runs
    again it writes nothing after that end (the log's last id is fenced), stops the stream
    and closes its upstreams; a later reader anywhere reads the same ended stream."""
    upstream.respond = lambda seen: openai_script(["tok "] * 500, gap=0.02)
    lease = 1.0
    toml = redis_config(upstream, redis_server, grace=5.0, lease=lease)
    a = await chorus_process(toml, env=KEYS)
    b = await start_server(toml, env=KEYS)
    async with httpx.AsyncClient(base_url=a.url, timeout=10) as ca, b.client() as cb:
        created = await start_stream(ca, "up/m1", "up/m2")
        got = []
        with trio.fail_after(lease + 8):
            async with cb.stream("GET", created["events_url"], headers=AUTH_A) as r, \
                    aclosing(read_events(r)) as events:
                async for event in events:
                    got.append(event)
                    if len([e for e in got if e[1] == "delta"]) == 5:
                        a.process.send_signal(signal.SIGSTOP)
            a.process.send_signal(signal.SIGCONT)
            assert len(upstream.seen) == 2  # one answer per slot, both asked before the stall
            for seen in upstream.seen:
                await seen.closed.wait()  # A stopped its answers when it ran again
            for _ in range(100):  # its stderr is read by another task
                if any("stream.taken_over" in line for line in a.stderr):
                    break
                await trio.sleep(0.05)
        assert any("stream.taken_over" in line for line in a.stderr)
        assert got[-1][1] == "stream.done"
        assert {d["error"]["type"] for _, t, d in got if t == "model.error"} == {"connection"}
        later = await read_all(cb, created["events_url"])
        assert later == got  # nothing written after the end
        snapshot = await cb.get(f"/v1/streams/{created['id']}", headers=AUTH_A)
        assert {s["state"] for s in snapshot.json()["slots"]} == {"error"}
