"""Stop, disconnect and failures against a real OpenAI-style upstream on loopback.

The upstream records when Chorus closes its connection, so "stop really stops" is measured
where it matters: at the provider.
"""

from __future__ import annotations

from contextlib import aclosing

import httpx
import pytest
import trio

from ..conftest import Server, StartServer, read_events
from ..support.upstream import FakeUpstream, Script, openai_chunk, openai_script, sse

ASK = {"messages": [{"role": "user", "content": "hello"}]}


def config(upstream: FakeUpstream, grace: float = 0.0) -> str:
    return (f"[server]\nresume_grace = {grace}\n"
            f"[providers.up]\ntype = \"openai\"\nbase_url = \"{upstream.url}/v1\"\n"
            f"api_key = \"sk-secret-upstream\"\nretries = 0\n")


def by_model(seen) -> str:
    return seen.json["model"]


@pytest.fixture
async def chorus(upstream: FakeUpstream, start_server: StartServer) -> Server:
    return await start_server(config(upstream))


async def test_the_upstream_gets_the_request_chorus_was_asked_for(
    upstream: FakeUpstream, chorus: Server,
) -> None:
    async with chorus.client() as client, client.stream(
        "POST", "/v1/streams", headers={"Accept": "text/event-stream"},
        json={"models": [{"model": "up/m1", "params": {"temperature": 0.2}}], **ASK},
    ) as r:
        events = [e async for e in read_events(r)]
    seen = upstream.seen[0]
    assert seen.path == "/v1/chat/completions"
    assert seen.headers["authorization"] == "Bearer sk-secret-upstream"
    assert seen.json["model"] == "m1"
    assert seen.json["stream"] is True
    assert seen.json["temperature"] == 0.2
    assert seen.json["messages"] == ASK["messages"]
    assert "".join(d["text"] for _, t, d in events if t == "delta") == "Hello world"
    done = next(d for _, t, d in events if t == "model.done")
    assert done["usage"] == {"input_tokens": 7, "output_tokens": 2, "estimated": False}


async def test_stop_closes_the_upstream_connection_at_once(
    upstream: FakeUpstream, chorus: Server,
) -> None:
    upstream.respond = lambda seen: openai_script(["tok "] * 300, gap=0.005)
    async with chorus.client() as client:
        created = (await client.post("/v1/streams", json={"models": ["up/a", "up/b"],
                                                          **ASK})).json()
        async with client.stream("GET", created["events_url"]) as r, \
                aclosing(read_events(r)) as events:
            async for _, kind, _data in events:
                if kind == "delta":
                    break
            await upstream.wait_for_request(2)
            asked = trio.current_time()
            r2 = await client.post(created["stop_url"], json={"slots": [0]})
            assert r2.json()["slots"][0]["state"] == "stopped"
            stopped = next(s for s in upstream.seen if s.json["model"] == "a")
            other = next(s for s in upstream.seen if s.json["model"] == "b")
            with trio.fail_after(1):
                await stopped.closed.wait()
            assert stopped.closed_at - asked < 0.1
            assert not other.closed.is_set()  # the sibling streams on
            rest = [e async for e in events]
    ends = {d["slot"]: t for _, t, d in rest if t in ("model.done", "model.stopped")}
    assert ends == {0: "model.stopped", 1: "model.done"}


@pytest.mark.parametrize("wait_for_text", [True, False], ids=["mid-answer", "still-thinking"])
async def test_a_client_disconnect_closes_every_upstream(
    upstream: FakeUpstream, chorus: Server, wait_for_text: bool,
) -> None:
    """With no grace, leaving stops the slots; also while a model has not sent a token yet
    (nothing is being written, so the disconnect must be noticed without a failed write)."""
    if wait_for_text:
        upstream.respond = lambda seen: openai_script(["tok "] * 1000, gap=0.01)
    else:
        upstream.respond = lambda seen: Script(body=[60.0])
    async with chorus.client() as client:
        async with client.stream("POST", "/v1/streams", headers={"Accept": "text/event-stream"},
                                 json={"models": ["up/a", "up/b", "up/c"], **ASK}) as r, \
                aclosing(read_events(r)) as events:
            async for _, kind, _ in events:
                if kind == ("delta" if wait_for_text else "model.start"):
                    break
            await upstream.wait_for_request(3)
            # Leaving the block closes the connection.
        left = trio.current_time()
    with trio.fail_after(2):
        for seen in upstream.seen:
            await seen.closed.wait()
    assert max(s.closed_at for s in upstream.seen) - left < 0.2
    stream = chorus.hub.streams()[0]
    with trio.fail_after(2):
        await stream.done.wait()
    assert {s.stop_reason for s in stream.slots} == {"disconnect"}


@pytest.mark.parametrize(
    ("script", "error_type"),
    [
        (Script(status=500, body=[b'{"error": {"message": "boom sk-secret-upstream"}}'],
                headers=[("content-type", "application/json")]), "upstream"),
        (Script(status=401, body=[b'{"error": {"message": "bad key"}}'],
                headers=[("content-type", "application/json")]), "auth"),
        (Script(body=[*sse(openai_chunk("par"), done=False), b"data: {\"choi"], end="drop"),
         "connection"),
        (Script(body=[*sse(openai_chunk("par"), done=False), b"data: {not json}\n\n"]),
         "protocol"),
        (Script(body=sse(openai_chunk("part"), done=False)), "protocol"),  # ends, no [DONE]
    ],
    ids=["status-500", "status-401", "dropped-mid-stream", "malformed-chunk", "truncated"],
)
async def test_an_upstream_failure_ends_only_its_slot(
    upstream: FakeUpstream, chorus: Server, script: Script, error_type: str,
) -> None:
    upstream.respond = lambda seen: script if seen.json["model"] == "bad" else openai_script(
        ["fine"] * 5, gap=0.02)
    async with chorus.client() as client, client.stream(
        "POST", "/v1/streams", headers={"Accept": "text/event-stream"},
        json={"models": ["up/bad", "up/good"], **ASK},
    ) as r:
        events = [e async for e in read_events(r)]
    error = next(d for _, t, d in events if t == "model.error")
    assert error["slot"] == 0
    assert error["error"]["type"] == error_type
    assert "sk-secret-upstream" not in error["error"]["message"]
    good = next(d for _, t, d in events if t == "model.done")
    assert good["slot"] == 1
    assert "".join(d["text"] for _, t, d in events if t == "delta" and d["slot"] == 1) == \
        "fine" * 5


async def test_connection_refused_is_a_connection_error(start_server: StartServer) -> None:
    with trio.socket.socket() as sock:  # a port nothing listens on
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = await start_server(
        f"[providers.gone]\ntype = \"openai\"\nbase_url = \"http://127.0.0.1:{port}/v1\"\n"
        f"retries = 0\n", env={"CHORUS_DEMO": "1"})
    async with server.client() as client, client.stream(
        "POST", "/v1/streams", headers={"Accept": "text/event-stream"},
        json={"models": ["gone/m", "demo/instant"], **ASK}) as r:
        events = [e async for e in read_events(r)]
    error = next(d for _, t, d in events if t == "model.error")
    assert error["error"]["type"] == "connection"
    assert next(d for _, t, d in events if t == "model.done")["slot"] == 1


async def test_http_errors_reach_no_client_with_the_upstream_key(
    upstream: FakeUpstream, chorus: Server,
) -> None:
    upstream.respond = lambda seen: Script(
        status=400, body=[b'{"error": {"message": "key sk-secret-upstream is invalid"}}'],
        headers=[("content-type", "application/json")])
    async with chorus.client() as client:
        r = await client.post("/v1/streams", headers={"Accept": "text/event-stream"},
                              json={"models": ["up/m"], **ASK})
        snapshot = (await client.get(f"/v1/streams/{r.headers['x-chorus-stream-id']}")).text
    assert "sk-secret-upstream" not in r.text
    assert "[redacted]" in r.text
    assert "sk-secret-upstream" not in snapshot


async def test_httpx_default_read_timeout_does_not_cut_slow_thinkers(
    upstream: FakeUpstream, start_server: StartServer,
) -> None:
    """A 6 s silence before the first token: longer than httpx's 5 s default read timeout."""
    upstream.respond = lambda seen: openai_script(["late"], ttft=6.0)
    server = await start_server(config(upstream))
    async with server.client() as client, client.stream(
        "POST", "/v1/streams", headers={"Accept": "text/event-stream"},
        json={"models": ["up/m"], **ASK}, timeout=httpx.Timeout(10, read=20)) as r:
        events = [e async for e in read_events(r)]
    assert [t for _, t, _ in events][-2] == "model.done"
