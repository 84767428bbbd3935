"""A malformed frame, from either side, closes the WebSocket with 1002 and says why; the
server fails only that agent's jobs and serves everyone else, the agent dials again."""

from __future__ import annotations

import gc
import logging
from dataclasses import dataclass, field
from typing import Any

import pytest
import trio
from trio_websocket import (
    CloseReason,
    ConnectionClosed,
    WebSocketConnection,
    WebSocketRequest,
    open_websocket_url,
    serve_websocket,
)

from providers.agent.frames import dumps, loads
from providers.agent.handshake import new_challenge

from ..support.upstream import FakeUpstream
from .conftest import LEFT_TO_GC, Agent, Lab, announce, launch, ws_url

# Frames an agent may not send (``{job}`` is the id of the job it was given), and why.
FROM_A_BROKEN_AGENT = [
    ({"type": "events", "id": "{job}", "events": [{"text": 5}]},
     "a 'text' event needs a string"),
    ({"type": "events", "id": "{job}", "events": [{}]}, "an event of an unknown kind"),
    ({"type": "events", "id": "{job}", "events": [{"usage": [3]}]},
     "a usage event needs [input, output]: token counts or nulls"),
    ({"type": "events", "events": [{"text": "x"}]}, "a 'events' frame needs 'id' (str)"),
    ({"type": "error", "id": "{job}", "error": "boom"}, "a 'error' frame needs 'error' (dict)"),
]


async def closed(ws: WebSocketConnection) -> CloseReason | None:
    """Read (and drop) frames until the server closes the connection: why it did."""
    try:
        while True:
            await ws.get_message()
    except ConnectionClosed as exc:
        return exc.reason


def for_job(frame: dict[str, Any], job: str) -> dict[str, Any]:
    return {k: job if v == "{job}" else v for k, v in frame.items()}


@LEFT_TO_GC
@pytest.mark.parametrize(("frame", "reason"), FROM_A_BROKEN_AGENT)
async def test_an_agents_malformed_frame_closes_it_and_fails_only_its_jobs(
    lab: Lab, caplog: pytest.LogCaptureFixture, frame: dict[str, Any], reason: str,
) -> None:
    caplog.set_level(logging.WARNING, logger="chorus.agents")
    other = await lab.start_agent("--models", "m1")  # a sound agent, serving m1
    answered: list[tuple[int, str, dict]] = []

    async def ask_m7() -> None:
        answered.extend(await lab.run("lab/m7"))

    with trio.fail_after(10):
        async with open_websocket_url(ws_url(lab)) as ws, trio.open_nursery() as nursery:
            await announce(ws, 1)  # "hand", serving m7
            await lab.until_models({"m1", "m7"})
            nursery.start_soon(ask_m7)
            job = loads(await ws.get_message())
            await ws.send_message(dumps({"type": "events", "id": job["id"],
                                         "events": [{"text": "part"}]}))
            await ws.send_message(dumps(for_job(frame, job["id"])))
            close = await closed(ws)
    assert close is not None
    assert (close.code, close.reason) == (1002, reason)
    kinds = [kind for _, kind, _ in answered]
    assert kinds[-2:] == ["model.error", "stream.done"]
    assert [d["text"] for _, kind, d in answered if kind == "delta"] == ["part"]
    error = next(d for _, kind, d in answered if kind == "model.error")["error"]
    assert error == {"type": "connection", "retryable": False, "message":
                     f"agent hand serving 'm7' went away mid-answer (it broke the "
                     f"protocol: {reason})"}
    assert [r.getMessage() for r in caplog.records if r.name == "chorus.agents"] == [
        f"agent hand dropped: {reason}"]
    await lab.until_models({"m1"}, absent={"m7"})
    events = await lab.run("lab/m1")  # everyone else is served as before
    assert "".join(d["text"] for _, kind, d in events if kind == "delta") == "Hello world"
    assert other.process.returncode is None
    gc.collect()


@dataclass
class FakeChorus:
    """A WebSocket server that greets each agent as Chorus does, then sends it ``broken``
    (in place of the welcome, or as the first frame after the announce); the close
    reasons the agent gave."""

    broken: str
    instead_of_welcome: bool
    closes: list[CloseReason | None] = field(default_factory=list)
    changed: trio.Event = field(default_factory=trio.Event)

    async def handle(self, request: WebSocketRequest) -> None:
        ws = await request.accept()
        try:
            await ws.send_message(dumps({"type": "challenge", "nonce": new_challenge()}))
            assert loads(await ws.get_message())["type"] == "hello"
            if not self.instead_of_welcome:
                await ws.send_message(dumps({"type": "welcome", "heartbeat": 10}))
                assert loads(await ws.get_message())["type"] == "announce"
            await ws.send_message(self.broken)
        except ConnectionClosed as exc:  # the agent closed before its turn
            self.closes.append(exc.reason)
        else:
            self.closes.append(await closed(ws))
        self.changed.set()
        self.changed = trio.Event()

    async def until_closed(self, times: int) -> None:
        with trio.fail_after(10):
            while len(self.closes) < times:
                await self.changed.wait()


async def fake_chorus(nursery: trio.Nursery, broken: dict[str, Any], *,
                      instead_of_welcome: bool) -> tuple[FakeChorus, str]:
    """A ``FakeChorus`` serving on a free loopback port, and its URL."""
    fake = FakeChorus(dumps(broken), instead_of_welcome)
    server = await nursery.start(serve_websocket, fake.handle, "127.0.0.1", 0, None)
    return fake, f"http://127.0.0.1:{server.port}"


# Frames the server may not send, whether in place of the welcome, and why.
FROM_A_BROKEN_SERVER = [
    ({"type": "welcome"}, True, "a 'welcome' frame needs a positive 'heartbeat' (seconds)"),
    ({"type": "job", "id": "1", "model": "m1", "window": 8,
      "request": {"messages": [{"role": "user"}]}}, False,
     "a job's messages must be objects with a string role and content, and images as "
     "[url, detail or null]"),
    ({"type": "job", "id": "1", "model": "m1", "window": 0, "request": {}}, False,
     "a job's window must be at least one event"),
    ({"type": "credit", "id": "1"}, False, "a 'credit' frame needs 'events' (int)"),
    ({"type": "hello", "name": "x", "mac": "y"}, False,
     "a 'hello' frame where 'job' or 'credit' or 'cancel' or 'ping' was expected"),
]


@pytest.mark.parametrize(("frame", "instead_of_welcome", "reason"), FROM_A_BROKEN_SERVER)
async def test_a_servers_malformed_frame_is_closed_with_1002_and_the_agent_dials_again(
    nursery: trio.Nursery, upstream: FakeUpstream, agents: list[Agent],
    frame: dict[str, Any], instead_of_welcome: bool, reason: str,
) -> None:
    fake, url = await fake_chorus(nursery, frame, instead_of_welcome=instead_of_welcome)
    agent = await launch(nursery, url, upstream.url, "--models", "m1")
    agents.append(agent)
    await fake.until_closed(2)  # closed once, then dialled again
    assert [c and (c.code, c.reason) for c in fake.closes] == [(1002, reason)] * 2
    await agent.lines.until("dialling again")
    lost = [line for line in agent.lines if " lost: " in line]
    assert lost[0].endswith(f"connection to {url} lost: the server broke the protocol "
                            f"({reason})")
    assert not any("Traceback" in line for line in agent.lines)
    assert agent.process.returncode is None
