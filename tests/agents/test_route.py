"""``/v1/agents/connect`` spoken to by hand: the handshake's refusals, and a link's life."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import AsyncGenerator
from contextlib import aclosing

import pytest
import trio
from trio_websocket import ConnectionClosed, open_websocket_url

from providers import ChatRequest, Message
from providers.agent.frames import dumps, loads
from providers.agent.pool import WINDOW
from providers.errors import TransportError
from providers.events import ProviderEvent

from .conftest import LEFT_TO_GC, Lab, announce, ws_url


@LEFT_TO_GC
@pytest.mark.parametrize(("hello", "code", "reason"), [
    ({"type": "hello", "name": "box9", "mac": "00" * 32}, 1008, "wrong token"),
    ({"type": "hello", "name": "box9"}, 1002, "a 'hello' frame needs 'mac' (str)"),
])
async def test_a_bad_hello_closes_with_a_policy_or_protocol_code(
    lab: Lab, hello: dict[str, str], code: int, reason: str,
) -> None:
    with trio.fail_after(10):
        async with open_websocket_url(ws_url(lab)) as ws:
            challenge = loads(await ws.get_message())
            assert challenge["type"] == "challenge"
            await ws.send_message(dumps(hello))
            with pytest.raises(ConnectionClosed) as closed:
                await ws.get_message()
    assert closed.value.reason is not None
    assert (closed.value.reason.code, closed.value.reason.reason) == (code, reason)
    assert await lab.pool.list_models() == []
    gc.collect()


@LEFT_TO_GC
async def test_an_announced_link_serves_until_its_socket_closes(lab: Lab) -> None:
    with trio.fail_after(10):
        async with open_websocket_url(ws_url(lab)) as ws:
            await announce(ws, 2)
            await lab.until_models({"m7"})
            assert await lab.metric("chorus_agent_capacity") == 2
        await lab.until_models(set(), absent={"m7"})
    assert await lab.metric("chorus_agents_connected") == 0
    gc.collect()


@LEFT_TO_GC
async def test_an_agent_that_overruns_a_jobs_window_is_closed_with_a_protocol_code(
    lab: Lab,
) -> None:
    ask = ChatRequest("m7", (Message("user", "hi"),))
    with trio.fail_after(10):
        async with open_websocket_url(ws_url(lab)) as ws, trio.open_nursery() as nursery:
            await announce(ws, 1)
            await lab.until_models({"m7"})
            nursery.start_soon(_drain, lab.pool.stream(ask))
            job = loads(await ws.get_message())
            assert (job["type"], job["window"]) == ("job", WINDOW)
            events = [{"text": "a"}] * (job["window"] + 1)
            await ws.send_message(dumps({"type": "events", "id": job["id"],
                                         "events": events}))
            with pytest.raises(ConnectionClosed) as closed:
                await ws.get_message()  # the server reads the frame and hangs up
    reason = closed.value.reason
    del closed  # its traceback holds the client's socket, left to the collector
    assert reason is not None
    assert reason.code == 1002
    assert "window" in (reason.reason or "")
    gc.collect()


async def _drain(stream: AsyncGenerator[ProviderEvent, None]) -> None:
    """A slot's read of ``stream``, to its end (the agent's drop ends it with an error)."""
    with contextlib.suppress(TransportError):
        async with aclosing(stream) as events:
            async for _ in events:
                pass


async def test_a_plain_http_request_is_told_this_is_the_agents_websocket(lab: Lab) -> None:
    async with lab.server.client() as client:
        r = await client.get("/v1/agents/connect")
    assert r.status_code == 426
    assert r.headers["Upgrade"] == "websocket"
    assert r.json()["error"]["type"] == "upgrade_required"
    assert "chorus agent" in r.json()["error"]["message"]
