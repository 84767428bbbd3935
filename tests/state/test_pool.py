"""Readers coming and going never wear out the Redis connection pool, and nothing of a
stream stays behind once it has expired: no key, no follower, no mirrored log."""

from __future__ import annotations

import random
from contextlib import aclosing

import coredis
import trio

from ..conftest import read_events
from ..support.redis import RedisServer
from ..support.upstream import FakeUpstream, openai_script
from .conftest import ASK, AUTH_A, Pair, start_stream


async def test_500_readers_leaving_mid_stream_on_b_leave_the_pool_healthy(
    upstream: FakeUpstream, pair: Pair,
) -> None:
    upstream.respond = lambda seen: openai_script(["tok "] * 400, gap=0.005)
    a, b = await pair(grace=5.0, rate_limit=0.0)  # 500 requests of one key at once
    async with a.client() as ca, b.client() as cb:
        created = await start_stream(ca, "up/m1")

        async def read_a_little() -> None:
            async with cb.stream("GET", created["events_url"], headers=AUTH_A) as r, \
                    aclosing(read_events(r)) as events:
                assert r.status_code == 200
                async for _ in events:
                    break  # gone after the first event, mid-stream

        with trio.fail_after(60):
            for _ in range(10):  # 500 readers, 50 at a time
                async with trio.open_nursery() as nursery:
                    for _ in range(50):
                        nursery.start_soon(read_a_little)
        # A new stream, read on B and stopped from B, in its usual time.
        upstream.respond = lambda seen: openai_script(["tok "] * 400, gap=0.01)
        fresh = await start_stream(ca, "up/m1")
        with trio.fail_after(5):
            async with cb.stream("GET", fresh["events_url"], headers=AUTH_A) as r, \
                    aclosing(read_events(r)) as events:
                async for _, kind, _ in events:
                    if kind == "delta":
                        break
                stopped = await cb.post(fresh["stop_url"], headers=AUTH_A, json={})
                rest = [e async for e in events]
    assert stopped.status_code == 200
    assert stopped.json()["slots"][0]["state"] == "stopped"
    assert rest[-2][1] == "model.stopped"
    assert rest[-1][1] == "stream.done"
    state = b.app.extensions["chorus"].hub.shared
    assert state.reads.renewals == 0  # no failed command, on either client
    assert state.link.renewals == 0


async def test_a_soak_across_instances_leaves_nothing_behind(
    upstream: FakeUpstream, pair: Pair, redis_server: RedisServer,
) -> None:
    upstream.respond = lambda seen: openai_script(["a ", "b ", "c"], gap=0.005)
    a, b = await pair(grace=0.0, retention=1.0)
    rng = random.Random(7)
    async with a.client() as ca, b.client() as cb:
        clients = (ca, cb)
        with trio.fail_after(60):
            for _ in range(30):
                created = (await rng.choice(clients).post(
                    "/v1/streams", headers=AUTH_A,
                    json={"models": ["up/m1", "up/m2"], **ASK})).json()
                async with rng.choice(clients).stream(
                        "GET", created["events_url"], headers=AUTH_A) as r:
                    events = [e async for e in read_events(r)]
                assert events[-1][1] == "stream.done"
                # Another instance sees the end once the running one has written it (its
                # writer gathers for a few ms): within moments, never a wait.
                asker = rng.choice(clients)
                with trio.fail_after(1):
                    for _ in range(100):
                        snap = await asker.get(f"/v1/streams/{created['id']}",
                                               headers=AUTH_A)
                        if snap.json()["state"] == "done":
                            break
                        await trio.sleep(0.01)
                assert snap.json()["state"] == "done"
        await trio.sleep(2.5)  # the retention passes (and a follower's last read ends)
    redis = coredis.Redis.from_url(redis_server.url)
    async with redis:
        keys = [k async for k in redis.scan_iter(match="chorus:{*")]
    assert keys == []
    for server in (a, b):
        chorus = server.app.extensions["chorus"]
        assert chorus.hub.streams() == []
        assert chorus.hub.shared.followed == {}
        assert chorus.hub.shared.mirror.tracked == 0
