"""Any instance serves any stream: events, resume, stop, snapshot and 404, across two
Chorus instances sharing one real Redis, against a loopback upstream."""

from __future__ import annotations

from contextlib import aclosing

import coredis
import trio

from ..conftest import read_events
from ..support.upstream import FakeUpstream, openai_script
from .conftest import ASK, AUTH_A, AUTH_B, Pair, read_all, start_stream


async def test_a_stream_started_on_a_is_read_on_b_event_for_event(
    upstream: FakeUpstream, pair: Pair,
) -> None:
    upstream.respond = lambda seen: openai_script(["one ", "two ", "three"], gap=0.02)
    a, b = await pair()
    async with a.client() as ca, b.client() as cb:
        created = await start_stream(ca, "up/m1", "up/m2")
        on_b = await read_all(cb, created["events_url"])
        on_a = await read_all(ca, created["events_url"])
        snap_a = (await ca.get(f"/v1/streams/{created['id']}", headers=AUTH_A)).json()
        snap_b = (await cb.get(f"/v1/streams/{created['id']}", headers=AUTH_A)).json()
    assert on_b == on_a
    assert [i for i, _, _ in on_b] == list(range(1, len(on_b) + 1))
    assert on_b[-1][1] == "stream.done"
    texts = ["".join(d["text"] for _, t, d in on_b if t == "delta" and d["slot"] == s)
             for s in (0, 1)]
    assert texts == ["one two three"] * 2
    assert snap_b == snap_a


async def test_a_reader_on_b_resumes_on_b_with_every_event_once(
    upstream: FakeUpstream, pair: Pair,
) -> None:
    upstream.respond = lambda seen: openai_script([f"w{i} " for i in range(40)], gap=0.01)
    a, b = await pair(grace=5.0)
    async with a.client() as ca, b.client() as cb:
        created = await start_stream(ca, "up/m1")
        first = await read_all(cb, created["events_url"], until=6)
        rest = await read_all(cb, created["events_url"],
                             headers={"Last-Event-ID": str(first[-1][0])})
        whole = await read_all(ca, created["events_url"])
    assert first + rest == whole
    assert whole[-1][1] == "stream.done"


async def test_a_stop_from_b_closes_the_upstream_on_a_and_the_sibling_finishes(
    upstream: FakeUpstream, pair: Pair,
) -> None:
    upstream.respond = lambda seen: openai_script(["tok "] * 200, gap=0.01)
    a, b = await pair(grace=5.0)
    async with a.client() as ca, b.client() as cb:
        created = await start_stream(ca, {"model": "up/m1"}, {"model": "up/m2"})
        async with ca.stream("GET", created["events_url"], headers=AUTH_A) as r, \
                aclosing(read_events(r)) as events:
            async for _, kind, _data in events:
                if kind == "delta":
                    break
            await upstream.wait_for_request(2)
            stopped = next(s for s in upstream.seen if s.json["model"] == "m1")
            asked = trio.current_time()
            answer = await cb.post(created["stop_url"], headers=AUTH_A, json={"slots": [0]})
            with trio.fail_after(2):
                await stopped.closed.wait()
            closed_after = trio.current_time() - asked
            rest = [e async for e in events]
    assert answer.status_code == 200
    states = {s["slot"]: s["state"] for s in answer.json()["slots"]}
    assert states[0] == "stopped"
    assert closed_after < 1.0
    assert [d["slot"] for _, t, d in rest if t == "model.stopped"] == [0]
    assert [d["slot"] for _, t, d in rest if t == "model.done"] == [1]  # the sibling ran on
    assert rest[-1][1] == "stream.done"


async def test_another_key_gets_404_on_every_instance(
    upstream: FakeUpstream, pair: Pair,
) -> None:
    upstream.respond = lambda seen: openai_script(["x"], gap=0.0)
    a, b = await pair()
    async with a.client() as ca, b.client() as cb:
        created = await start_stream(ca, "up/m1")
        for client in (ca, cb):
            for path in ("", "/events"):
                r = await client.get(f"/v1/streams/{created['id']}{path}", headers=AUTH_B)
                assert r.status_code == 404, path
                assert r.json()["error"]["type"] == "not_found"
            r = await client.post(f"/v1/streams/{created['id']}/stop", headers=AUTH_B,
                                  json={})
            assert r.status_code == 404
        r = await cb.get("/v1/streams/no-such-stream", headers=AUTH_A)
        assert r.status_code == 404
        r = await cb.get("/v1/streams/bad}id{/events", headers=AUTH_A)
        assert r.status_code == 404


async def test_a_conversation_is_read_and_looked_at_on_b_as_on_a(
    upstream: FakeUpstream, pair: Pair,
) -> None:
    upstream.respond = lambda seen: openai_script(["fine ", "thanks"], gap=0.01)
    a, b = await pair()
    body = {"mode": "conversation", "rounds": 2,
            "participants": [{"model": "up/m1", "name": "Ada"},
                             {"model": "up/m2", "name": "Bo"}], **ASK}
    async with a.client() as ca, b.client() as cb:
        created = (await ca.post("/v1/streams", headers=AUTH_A, json=body)).json()
        on_b = await read_all(cb, created["events_url"])
        on_a = await read_all(ca, created["events_url"])
        snap_a = (await ca.get(f"/v1/streams/{created['id']}", headers=AUTH_A)).json()
        snap_b = (await cb.get(f"/v1/streams/{created['id']}", headers=AUTH_A)).json()
    assert on_b == on_a
    assert [d["turn"] for _, t, d in on_b if t == "turn.start"] == [0, 1, 2, 3]
    assert snap_b == snap_a
    assert snap_b["mode"] == "conversation"
    assert [t["name"] for t in snap_b["turns"]] == ["Ada", "Bo", "Ada", "Bo"]


async def test_metrics_show_the_shared_state_at_work(
    upstream: FakeUpstream, pair: Pair,
) -> None:
    upstream.respond = lambda seen: openai_script(["x "] * 5, gap=0.2)
    a, b = await pair()
    async with a.client() as ca, b.client() as cb:
        created = await start_stream(ca, "up/m1")
        async with cb.stream("GET", created["events_url"], headers=AUTH_A) as r, \
                aclosing(read_events(r)) as events:
            await anext(events)  # B follows A's stream from here
            on_b = (await cb.get("/metrics", headers=AUTH_A)).text
            async for _ in events:
                pass
        text = (await ca.get("/metrics", headers=AUTH_A)).text
    assert "chorus_state_followed_streams 1.0" in on_b
    assert "chorus_state_mirrored_streams 0.0" in on_b  # B runs nothing
    rounds = next(line for line in text.splitlines()
                  if line.startswith("chorus_state_write_rounds "))
    assert float(rounds.split()[1]) >= 1
    assert "chorus_state_redis_renewals 0.0" in text
    assert "chorus_state_mirrored_streams 1.0" in text


async def test_a_chat_completion_is_served_without_touching_redis(
    upstream: FakeUpstream, pair: Pair, redis_server,
) -> None:
    upstream.respond = lambda seen: openai_script(["hi ", "there"], gap=0.0)
    a, _ = await pair()
    async with a.client() as ca:
        answer = await ca.post("/v1/chat/completions", headers=AUTH_A,
                               json={"model": "up/m1", **ASK})
    assert answer.status_code == 200
    assert answer.json()["choices"][0]["message"]["content"] == "hi there"
    redis = coredis.Redis.from_url(redis_server.url)
    async with redis:
        keys = [k async for k in redis.scan_iter(match="chorus:{*")]
    assert keys == []  # nobody can resume a completion: nothing of it is shared
