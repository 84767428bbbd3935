"""``/v1/agents/connect`` spoken to by hand: the handshake's refusals, and a link's life."""

from __future__ import annotations

import gc

import pytest
import trio
from trio_websocket import ConnectionClosed, open_websocket_url

from providers.agent.frames import dumps, loads
from providers.agent.handshake import answer

from .conftest import TOKEN, Lab

# trio-websocket's client, when the server closes first, waits for the TCP close and leaves
# its socket to the garbage collector (``_impl.py``, ``_handle_close_connection_event``):
# collected here, so the warning stays with the tests that cause it.
LEFT_TO_GC = pytest.mark.filterwarnings("ignore:unclosed <socket:ResourceWarning")


def ws_url(lab: Lab) -> str:
    return "ws" + lab.server.url.removeprefix("http") + "/v1/agents/connect"


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
            nonce = loads(await ws.get_message())["nonce"]
            await ws.send_message(dumps({"type": "hello", "name": "hand",
                                         "mac": answer(TOKEN, nonce)}))
            assert loads(await ws.get_message()) == {"type": "welcome", "heartbeat": 10.0}
            await ws.send_message(dumps({"type": "announce", "models": ["m7"],
                                         "capacity": 2}))
            await lab.until_models({"m7"})
            assert await lab.metric("chorus_agent_capacity") == 2
        await lab.until_models(set(), absent={"m7"})
    assert await lab.metric("chorus_agents_connected") == 0
    gc.collect()


async def test_a_plain_http_request_is_told_this_is_the_agents_websocket(lab: Lab) -> None:
    async with lab.server.client() as client:
        r = await client.get("/v1/agents/connect")
    assert r.status_code == 426
    assert r.headers["Upgrade"] == "websocket"
    assert r.json()["error"]["type"] == "upgrade_required"
    assert "chorus agent" in r.json()["error"]["message"]
