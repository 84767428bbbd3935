"""Soak: hundreds of streams at once, with random stops, disconnects, readers that never
come and failing upstreams; then nothing is left behind.

Bounded: ``STREAMS`` streams, ``AT_ONCE`` at a time, seeded so a failure replays, and the
whole test under ``LIMIT`` seconds. Afterwards every stream's log is well formed, the hub
runs nothing, and no task, socket or stream object outlives the load (beyond the idle
keep-alive connections the providers' HTTP pool keeps to the fake upstream).
"""

from __future__ import annotations

import gc
import os
import random
import resource
import weakref
from collections import Counter
from contextlib import aclosing

import httpx
import trio

from ..conftest import Server, StartServer, read_events
from ..engine.test_stream import assert_grammar
from ..support.upstream import FakeUpstream, Script, Seen, openai_chunk, openai_script, sse
from .conftest import ASK, SSE, as_events

STREAMS = 300
AT_ONCE = 60
LIMIT = 90.0
SEED = 20240611
# The fake upstream's connections (the pool's idle keep-alive ones stay open).
UPSTREAM_CONNECTION = "tests.support.upstream.FakeUpstream.serve > trio." \
    "_highlevel_serve_listeners._run_handler"

FINITE = ["demo/ttft=0.01,rate=400,tokens=40", "demo/ttft=0,rate=0,tokens=30,reasoning=5",
          "demo/ttft=0.02,rate=300,tokens=60,fail_after=20", "demo/error-500", "up/ok",
          "up/ok", "up/err500", "up/drop", "up/badjson", "up/r429"]
ENDLESS = ["demo/hang", "up/hang", "up/thinker", "demo/ttft=0,rate=100,tokens=100000"]
# The chat endpoint answers once the first token is in: these send one, then go on for ever.
CHATTY = ["up/hang", "demo/ttft=0,rate=100,tokens=100000"]


def upstream_script(seen: Seen) -> Script:
    kind = seen.json["model"]
    rng = random.Random(f"{SEED}-{len(kind)}-{seen.received_at}")
    if kind == "ok":
        return openai_script(["tok "] * rng.randint(3, 30), gap=0.003)
    if kind == "err500":
        return Script(status=500, body=[b'{"error": {"message": "boom"}}'],
                      headers=[("content-type", "application/json")])
    if kind == "r429":
        return Script(status=429, body=[b"slow down"],
                      headers=[("content-type", "text/plain"), ("retry-after", "0")])
    if kind == "drop":
        return Script(body=[*sse(openai_chunk("half"), done=False), b"data: {\"ch"], end="drop")
    if kind == "badjson":
        return Script(body=[*sse(openai_chunk("half"), done=False), b"data: {oops}\n\n"])
    if kind == "hang":
        return Script(body=[*sse(openai_chunk("first "), done=False), 60.0])
    return Script(body=[60.0])  # "thinker": nothing at all


# Long enough for a loaded machine to replay each stream in time: from a stream's end to its
# replay's answer took at most 0.46 s with the load average at 4 on 2 cores, a tenth of this.
RETENTION = 5.0
CONFIG = ("[server]\nrate_limit = 0.0\nmax_streams_per_key = 10000\nretention = {retention}\n"
          "resume_grace = 0.2\nattach_timeout = 2.0\nstall_timeout = 5.0\n"
          "[providers.up]\ntype = \"openai\"\nbase_url = \"{url}/v1\"\nretries = 1\n"
          "timeouts = {{ first_token = 10, idle = 10 }}\n"
          "[providers.demo]\ntype = \"demo\"\n")


def tasks() -> Counter[str]:
    """Every live trio task, as "parent > task" names."""
    names: Counter[str] = Counter()
    todo = [("", trio.lowlevel.current_root_task())]
    while todo:
        parent, task = todo.pop()
        names[f"{parent} > {task.name}"] += 1
        todo += [(task.name, t) for n in task.child_nurseries for t in n.child_tasks]
    return names


async def still_alive(refs: list[weakref.ref], within: float) -> list[list[str]]:
    """The referrers' types of every stream still alive after ``within`` seconds (a
    loaded machine may take a moment to finish tearing the last connections down)."""
    deadline = trio.current_time() + within
    while True:
        gc.collect()
        alive = [s for s in (ref() for ref in refs) if s is not None]
        if not alive or trio.current_time() >= deadline:
            break
        del alive
        await trio.sleep(0.1)
    return [sorted(type(r).__name__ for r in gc.get_referrers(s) if r is not alive)
            for s in alive]


async def forgotten_all(server: Server) -> None:
    """Until the hub keeps no stream: each is forgotten ``RETENTION`` after its end (a
    deadline on the server's clock; the bound here only keeps a broken run finite)."""
    with trio.fail_after(RETENTION + 20):
        while server.hub.streams():  # noqa: ASYNC110 - no event tells this
            await trio.sleep(0.05)


def open_sockets() -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
        except OSError:
            pass
    return count


class Soak:
    def __init__(self, server: Server, client: httpx.AsyncClient) -> None:
        self.server = server
        self.client = client
        self.rng = random.Random(SEED)
        self.streams: list[weakref.ref] = []
        self.scenarios: Counter[str] = Counter()
        self.outcomes: Counter[str] = Counter()

    def models(self, endless: bool) -> list[str]:
        pool = FINITE + ENDLESS if endless else FINITE
        return [self.rng.choice(pool) for _ in range(self.rng.randint(1, 4))]

    async def run(self, n: int) -> None:
        scenario = self.rng.choice(["full", "stop", "leave", "never-read", "chat", "chat-leave"])
        self.scenarios[scenario] += 1
        await getattr(self, scenario.replace("-", "_"))(self.rng.randint(1, 12))

    async def finish(self, stream_id: str) -> None:
        """Wait for the stream's end, then check its whole log, replayed over HTTP."""
        stream = self.server.hub.get(stream_id, "anonymous")
        assert stream is not None
        self.streams.append(weakref.ref(stream))
        with trio.fail_after(10):
            await stream.done.wait()
        async with self.client.stream("GET", f"/v1/streams/{stream_id}/events") as r:
            assert r.status_code == 200
            events = [e async for e in read_events(r)]
        assert_grammar(as_events(events), len(stream.slots))
        self.outcomes.update(t for _, t, _ in events if t.startswith("model.")
                             and t not in ("model.start", "model.retry"))
        self.outcomes.update(d["reason"] for _, t, d in events if t == "model.stopped")

    async def full(self, _: int) -> None:
        async with self.client.stream("POST", "/v1/streams", headers=SSE,
                                      json={"models": self.models(False), **ASK}) as r:
            events = [e async for e in read_events(r)]
        assert events[-1][1] == "stream.done"
        await self.finish(r.headers["x-chorus-stream-id"])

    async def read_some(self, r: httpx.Response, after: int) -> None:
        """Read up to event ``after``, or for a moment if the stream goes quiet first."""
        with trio.move_on_after(self.rng.uniform(0.02, 0.4)):
            async with aclosing(read_events(r)) as events:
                async for i, _, _ in events:
                    if i >= after:
                        break

    async def stop(self, after: int) -> None:
        created = (await self.client.post("/v1/streams", json={
            "models": self.models(True), **ASK})).json()
        n = len(created["slots"])
        async with self.client.stream("GET", created["events_url"]) as r:
            await self.read_some(r, after)
            chosen = sorted(self.rng.sample(range(n), self.rng.randint(1, n)))
            body = {} if len(chosen) == n else {"slots": chosen}
            stopped = (await self.client.post(created["stop_url"], json=body)).json()
            for s in stopped["slots"]:
                if s["slot"] in chosen:
                    assert s["state"] in ("done", "error", "stopped"), stopped
        # The reader leaves too: the grace then ends any slot left running.
        await self.finish(created["id"])

    async def leave(self, after: int) -> None:
        async with self.client.stream("POST", "/v1/streams", headers=SSE,
                                      json={"models": self.models(True), **ASK}) as r:
            await self.read_some(r, after)
        await self.finish(r.headers["x-chorus-stream-id"])

    async def never_read(self, _: int) -> None:
        created = (await self.client.post("/v1/streams", json={
            "models": self.models(True), **ASK})).json()
        await self.finish(created["id"])

    async def chat(self, _: int) -> None:
        r = await self.client.post("/v1/chat/completions", json={
            "model": self.rng.choice(FINITE), "n": self.rng.randint(1, 3), **ASK})
        assert r.status_code in (200, 429, 502, 504), r.text
        if r.status_code == 200:
            await self.forgotten(r.headers["x-chorus-stream-id"])

    async def chat_leave(self, after: int) -> None:
        async with self.client.stream("POST", "/v1/chat/completions", json={
                "model": self.rng.choice(CHATTY), "stream": True, **ASK}) as r:
            stream_id = r.headers.get("x-chorus-stream-id")
            running = self.server.hub.get(stream_id or "", "anonymous")
            if running is not None:  # for the check that nothing outlives the load
                self.streams.append(weakref.ref(running))
                del running
            with trio.move_on_after(self.rng.uniform(0.02, 0.4)):
                async with aclosing(r.aiter_lines()) as lines:
                    async for _ in lines:
                        after -= 1
                        if after <= 0:
                            break
        if stream_id:
            await self.forgotten(stream_id)

    async def forgotten(self, stream_id: str) -> None:
        """A chat completion's stream cannot be resumed: once it ends, nothing of it is
        kept, and asking for it is a 404."""
        with trio.fail_after(10):
            while (await self.client.get(f"/v1/streams/{stream_id}")).status_code != 404:  # noqa: ASYNC110 - no event tells this
                await trio.sleep(0.02)
        self.outcomes["forgotten"] += 1


async def test_hundreds_of_streams_leave_nothing_behind(
    nursery: trio.Nursery, start_server: StartServer,
) -> None:
    upstream = FakeUpstream(upstream_script)
    await nursery.start(upstream.serve)
    server = await start_server(CONFIG.format(url=upstream.url, retention=RETENTION))
    async with server.client() as client:  # warm up: imports, first connections
        await Soak(server, client).full(0)
    gc.collect()
    tasks_before, sockets_before = tasks(), open_sockets()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    with trio.fail_after(LIMIT):
        limiter = trio.CapacityLimiter(AT_ONCE)
        async with server.client() as client:
            client.timeout = httpx.Timeout(10, read=15)
            soak = Soak(server, client)

            async def one(n: int) -> None:
                async with limiter:
                    await soak.run(n)

            async with trio.open_nursery() as nursery:
                for n in range(STREAMS):
                    nursery.start_soon(one, n)
        assert server.hub.active == 0
        assert server.hub.running("anonymous") == 0
        await forgotten_all(server)  # every stream, after its retention

    # Every scenario and every kind of ending happened.
    assert set(soak.scenarios) == {"full", "stop", "leave", "never-read", "chat", "chat-leave"}
    assert {"model.done", "model.error", "model.stopped", "user", "disconnect",
            "forgotten"} <= set(soak.outcomes)
    assert len(soak.streams) + soak.outcomes["forgotten"] >= STREAMS * 0.8
    left = await still_alive(soak.streams, within=3.0)
    assert left == [], f"streams still referenced, by: {left}"
    after = tasks()
    pooled = after[UPSTREAM_CONNECTION] - tasks_before[UPSTREAM_CONNECTION]
    grown = {name: n - tasks_before[name] for name, n in after.items()
             if n > tasks_before[name] and name != UPSTREAM_CONNECTION}
    assert grown == {}
    # Only the provider pool's idle keep-alive connections remain: two sockets each here
    # (Chorus's end and the fake upstream's, both in this process).
    assert open_sockets() <= sockets_before + 2 * pooled
    assert pooled <= 16  # the pool's keep-alive limit (max_concurrency)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    assert grown_mb < 200
