"""Graceful shutdown of a real ``chorus serve`` process on SIGTERM and SIGINT.

Live streams are told at once (``model.stopped`` with reason ``shutdown``, then
``stream.done``), their upstream connections are closed, no new connection is accepted,
and the process exits 0: at once when no client holds a connection, else once the busy
ones are done or Hypercorn's ``graceful_timeout`` (1 s, which idle keep-alive connections
wait out) has passed.
"""

from __future__ import annotations

import signal

import httpx
import pytest
import trio

from app.cli import GRACEFUL_TIMEOUT

from ..conftest import read_events
from ..support.upstream import FakeUpstream, Script, openai_chunk, sse
from .conftest import ASK, SSE

GRACEFUL = GRACEFUL_TIMEOUT  # Hypercorn's graceful_timeout in ``chorus serve``
EXIT_WITHIN = GRACEFUL + 2.0  # stopping the streams (bounded by SHUTDOWN_WAIT) takes moments


async def test_shutdown_tells_every_stream_and_exits_0(
    chorus_process, upstream: FakeUpstream,
) -> None:
    upstream.respond = lambda seen: Script(body=[*sse(openai_chunk("thinking…"), done=False),
                                                 60.0])
    child = await chorus_process(
        f"[server]\nresume_grace = 30.0\n"
        f"[providers.up]\ntype = \"openai\"\nbase_url = \"{upstream.url}/v1\"\n"
        f"[providers.demo]\ntype = \"demo\"\n")
    results: dict[str, list[tuple]] = {}
    started = trio.Event()
    n_started = 0

    async def follow(name: str, client: httpx.AsyncClient, method: str, url: str,
                     **kwargs) -> None:
        nonlocal n_started
        events: list[tuple] = []
        async with client.stream(method, url, **kwargs) as r:
            async for event in read_events(r):
                events.append(event)
                if event[1] == "delta" and sum(e[1] == "delta" for e in events) == 1:
                    n_started += 1
                    if n_started == 2:
                        started.set()
        results[name] = events

    # A request whose body never ends keeps its connection busy, and so the process
    # running (till the graceful timeout) after the streams have ended.
    host, port = child.url.removeprefix("http://").rsplit(":", 1)
    busy = await trio.open_tcp_stream(host, int(port))
    await busy.send_all(b"POST /v1/streams HTTP/1.1\r\nhost: x\r\ncontent-type: "
                        b"application/json\r\ncontent-length: 100\r\n\r\n{")
    async with httpx.AsyncClient(base_url=child.url, timeout=httpx.Timeout(5, read=30)) as client:
        created = (await client.post("/v1/streams", json={"models": ["demo/hang", "up/m"],
                                                          **ASK})).json()
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(lambda: follow(
                    "sse", client, "POST", "/v1/streams", headers=SSE,
                    json={"models": ["up/m", "demo/slow"], **ASK}))
                nursery.start_soon(lambda: follow("201", client, "GET", created["events_url"]))
                await started.wait()
                await upstream.wait_for_request(2)
                child.process.send_signal(signal.SIGTERM)
                signalled = trio.current_time()
        told = trio.current_time() - signalled  # both responses have ended
        with pytest.raises(httpx.ConnectError):  # no new connection, though still running
            async with httpx.AsyncClient(base_url=child.url) as late:
                await late.get("/healthz")
        assert child.process.returncode is None
    with trio.fail_after(EXIT_WITHIN):
        code = await child.process.wait()
    took = trio.current_time() - signalled
    await busy.aclose()
    assert code == 0
    assert told < 2.0
    assert took < EXIT_WITHIN
    for name, events in results.items():
        assert events[-1][1] == "stream.done", name
        stopped = [d for _, t, d in events if t == "model.stopped"]
        assert len(stopped) == 2, name
        assert {d["reason"] for d in stopped} == {"shutdown"}
    for seen in upstream.seen:
        assert seen.closed.is_set()
        assert seen.closed_at - signalled < 2.0
    log = "\n".join(child.stderr)
    assert "event=shutdown.start streams=2" in log
    assert log.count("event=slot.end") == 4
    assert log.count("outcome=stopped reason=shutdown") == 4
    assert "event=shutdown.done" in log
    assert "Traceback" not in log


async def test_sigint_with_an_idle_connection_exits_within_the_graceful_timeout(
    chorus_process,
) -> None:
    # A browser keeps its connections open between requests, and Hypercorn waits the
    # whole graceful timeout for them: it is short.
    child = await chorus_process("")
    async with httpx.AsyncClient(base_url=child.url) as client:
        assert (await client.get("/healthz")).status_code == 200  # then left open, idle
        child.process.send_signal(signal.SIGINT)
        signalled = trio.current_time()
        with trio.fail_after(GRACEFUL + 3):
            assert await child.process.wait() == 0
    assert trio.current_time() - signalled < 2.5


async def test_a_server_with_no_connection_exits_at_once(chorus_process) -> None:
    child = await chorus_process("")
    async with httpx.AsyncClient(base_url=child.url) as client:
        assert (await client.get("/healthz")).status_code == 200
    child.process.send_signal(signal.SIGTERM)
    signalled = trio.current_time()
    with trio.fail_after(GRACEFUL):
        assert await child.process.wait() == 0
    assert trio.current_time() - signalled < 2.5
