"""Agents dial in, serve their models, and fail the way the contract says."""

from __future__ import annotations

import logging
import signal
import tomllib
from collections.abc import Callable
from contextlib import aclosing

import pytest
import trio

from app import create_app
from app.config import build_config
from providers.agent.connection import MISSED

from ..conftest import Server, StartServer, read_events
from ..support.serving import loopback_config, start_serving
from ..support.upstream import FakeUpstream, openai_script
from .conftest import (
    ASK,
    LAB,
    LAB_ENV,
    TOKEN,
    Agent,
    Lab,
    answering,
    launch,
    ollama_script,
    pool_of,
    until_models,
)

HEARTBEAT = 0.2  # seconds: the server's pings in the silent-agent test


async def mid_answer(server: Server, act: Callable[[], None]) -> list[tuple[int, str, dict]]:
    """A stream of lab/m1, read to its end; ``act`` runs once, at its first delta."""
    seen: list[tuple[int, str, dict]] = []
    acted = False
    async with server.client() as client, client.stream(
        "POST", "/v1/streams", headers={"Accept": "text/event-stream"},
        json={"models": ["lab/m1"], **ASK},
    ) as r, aclosing(read_events(r)) as events:
        with trio.fail_after(10):
            async for event in events:
                seen.append(event)
                if event[1] == "delta" and not acted:
                    act()
                    acted = True
    return seen


def text_of(events: list[tuple[int, str, dict]]) -> str:
    return "".join(d["text"] for _, kind, d in events if kind == "delta")


@pytest.mark.parametrize("wire", ["openai", "ollama"])
async def test_an_agent_serves_its_upstreams_models_listed_under_the_provider(
    lab: Lab, wire: str,
) -> None:
    script = openai_script if wire == "openai" else ollama_script
    lab.upstream.respond = answering(lambda seen: script(["Hello", " from", " the box"]),
                                     ["m1", "m2"])
    await lab.start_agent(wire=wire)  # no --models: the upstream's list
    await lab.until_models({"m1", "m2"})
    async with lab.server.client() as client:
        ids = {m["id"] for m in (await client.get("/v1/models")).json()["data"]}
    assert {"lab/m1", "lab/m2"} <= ids
    events = await lab.run("lab/m2")
    assert text_of(events) == "Hello from the box"
    assert [kind for _, kind, _ in events][-2:] == ["model.done", "stream.done"]
    chat = next(s for s in lab.upstream.seen if s.method == "POST")
    assert chat.json["model"] == "m2"
    assert chat.json["messages"] == [{"role": "user", "content": "hello"}]
    assert await lab.metric("chorus_agents_connected") == 1
    assert await lab.metric("chorus_agent_capacity") == 4


async def test_a_job_reaches_the_upstream_at_once_no_polling(lab: Lab) -> None:
    await lab.start_agent("--models", "m1")
    await lab.until_models({"m1"})
    await lab.run("lab/m1")  # the connections are warm: what is left is the push
    async with lab.server.client() as client:
        asked = trio.current_time()
        await client.post("/v1/streams", json={"models": ["lab/m1"],
                                               "messages": [{"role": "user", "content": "x"}]})
        seen = await lab.upstream.wait_for_request(2)
    assert seen.received_at - asked < 0.5  # a poll every second would miss this


async def test_tokens_come_back_batched_under_load(lab: Lab) -> None:
    words = [f"w{i} " for i in range(400)]
    lab.upstream.respond = answering(lambda seen: openai_script(words, gap=0.0005), ["m1"])
    agent = await lab.start_agent("--models", "m1")
    await lab.until_models({"m1"})
    events = await lab.run("lab/m1")
    assert text_of(events) == "".join(words)  # every token, in order
    frames = await lab.metric("chorus_agent_frames_total")
    carried = await lab.metric("chorus_agent_events_total")
    assert carried >= len(words)
    assert frames / len(words) < 0.25  # one frame per event would be about 1
    await agent.lines.until(r" frames$")  # its log line follows the end frame
    assert agent.frames() == frames


async def test_a_stop_closes_the_agents_upstream_request(lab: Lab) -> None:
    lab.upstream.respond = answering(
        lambda seen: openai_script(["tok "] * 500, gap=0.01), ["m1"])
    agent = await lab.start_agent("--models", "m1")
    await lab.until_models({"m1"})
    async with lab.server.client() as client:
        created = (await client.post("/v1/streams", json={
            "models": ["lab/m1"], "messages": [{"role": "user", "content": "x"}]})).json()
        chat = await lab.upstream.wait_for_request(1)
        await trio.sleep(0.1)  # tokens are flowing
        asked = trio.current_time()
        await client.post(created["stop_url"], json={"slots": [0]})
        with trio.fail_after(2):
            await chat.closed.wait()
    assert chat.closed_at is not None
    assert chat.closed_at - asked < 0.5
    assert await lab.metric("chorus_agent_jobs") == 0
    await agent.lines.until(r"job \d+ m1 cancelled: [1-9]\d* frames$")  # those it sent


async def test_an_agent_killed_mid_answer_ends_the_slot_with_a_connection_error(
    lab: Lab,
) -> None:
    lab.upstream.respond = answering(
        lambda seen: openai_script(["tok "] * 500, gap=0.01), ["m1"])
    agent = await lab.start_agent("--models", "m1")
    await lab.until_models({"m1"})
    seen = await mid_answer(lab.server, agent.process.kill)  # text has been sent
    kinds = [kind for _, kind, _ in seen]
    assert "model.retry" not in kinds  # text was sent: never retried
    error = next(d for _, kind, d in seen if kind == "model.error")["error"]
    assert error["type"] == "connection"
    assert error["retryable"] is False
    assert "box1" in error["message"]


async def test_a_restarted_agents_models_come_back(lab: Lab) -> None:
    first = await lab.start_agent("--models", "m1,m9")
    await lab.until_models({"m1", "m9"})
    first.process.kill()
    await lab.until_models(set(), absent={"m1", "m9"})
    await lab.start_agent("--models", "m1,m9")
    await lab.until_models({"m1", "m9"})
    assert text_of(await lab.run("lab/m9")) == "Hello world"


async def test_a_wrong_token_exits_2_and_the_server_logs_no_token(
    lab: Lab, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="chorus.agents")
    agent = await lab.start_agent("--models", "m1", token="not-the-token")
    assert await agent.wait() == 2
    assert "refused the token" in await agent.lines.until("refused")
    refusals = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(refusals) == 1
    assert "'box1'" in refusals[0]
    assert "wrong token" in refusals[0]
    assert not any(secret in caplog.text for secret in ("not-the-token", TOKEN))
    assert await lab.pool.list_models() == []


async def test_no_agent_for_the_model_ends_the_slot_at_once_with_a_clear_error(
    lab: Lab,
) -> None:
    with trio.fail_after(5):
        events = await lab.run("lab/m1")
    error = next(d for _, kind, d in events if kind == "model.error")["error"]
    assert error["type"] == "connection"
    assert error["message"] == "no agent serving model 'm1' is connected to 'lab'"
    assert not any(kind == "model.retry" for _, kind, _ in events)


async def test_an_agent_dials_again_when_the_server_goes_and_its_models_come_back(
    nursery: trio.Nursery, upstream: FakeUpstream, agents: list[Agent],
) -> None:
    upstream.respond = answering(lambda seen: openai_script(["again"]), ["m1"])
    config = build_config(tomllib.loads(LAB), LAB_ENV)
    first = create_app(config)
    url, stop, stopped = await start_serving(nursery, first,
                                             loopback_config(graceful_timeout=0.5))
    agent = await launch(nursery, url, upstream.url)
    agents.append(agent)
    await until_models(pool_of(first), {"m1"})
    stop.set()
    with trio.fail_after(5):
        await stopped.wait()
    await agent.lines.until("dialling again")
    second = create_app(config)  # a restarted server, on the same address
    _, stop, stopped = await start_serving(
        nursery, second, loopback_config(bind=[url.removeprefix("http://")],
                                         graceful_timeout=0.5))
    await until_models(pool_of(second), {"m1"})
    assert agent.process.returncode is None
    stop.set()
    with trio.fail_after(5):
        await stopped.wait()


async def test_an_agent_gone_silent_is_dropped_after_its_missed_heartbeats(
    nursery: trio.Nursery, upstream: FakeUpstream, start_server: StartServer,
    agents: list[Agent],
) -> None:
    upstream.respond = answering(lambda seen: openai_script(["tok "] * 2000, gap=0.01),
                                 ["m1"])
    server = await start_server(LAB.replace("[server]\n", f"[server]\nagent_heartbeat = "
                                                          f"{HEARTBEAT}\n"), env=LAB_ENV)
    agent = await launch(nursery, server.url, upstream.url, "--models", "m1")
    agents.append(agent)
    pool = pool_of(server.app)
    await until_models(pool, {"m1"})
    paused_at: list[float] = []

    def pause() -> None:
        agent.process.send_signal(signal.SIGSTOP)  # silent, its connection still open
        paused_at.append(trio.current_time())

    try:
        seen = await mid_answer(server, pause)
        silent = trio.current_time() - paused_at[0]
        error = next(d for _, kind, d in seen if kind == "model.error")["error"]
        assert error["type"] == "connection"
        assert "box1" in error["message"]
        assert silent > HEARTBEAT * (MISSED - 1)  # not at once: after the missed beats
        assert silent < HEARTBEAT * (MISSED + 1) + 1
        await until_models(pool, set(), absent={"m1"})
        async with server.client() as client:
            ids = {m["id"] for m in (await client.get("/v1/models")).json()["data"]}
        assert "lab/m1" not in ids
    finally:
        agent.process.send_signal(signal.SIGCONT)
        agent.process.kill()
