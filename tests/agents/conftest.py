"""A real Chorus with an agent provider, real ``chorus agent`` subprocesses, and a loopback
upstream that speaks OpenAI's SSE or Ollama's NDJSON."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pytest
import trio
from quart_trio import QuartTrio
from trio_websocket import WebSocketConnection

from providers.agent import AgentPool
from providers.agent.frames import dumps, loads
from providers.agent.handshake import answer

from ..conftest import Server, StartServer, read_events
from ..hardening.conftest import collect_lines, spawn
from ..support.upstream import FakeUpstream, Script, Seen, openai_script

TOKEN = "lab-token-7f3a9c"
ASK = {"messages": [{"role": "user", "content": "hello"}]}


def ollama_script(words: list[str], *, gap: float = 0.0) -> Script:
    """An ``/api/chat`` answer: one JSON line per word, then ``done: true``."""
    body: list[bytes | float] = []
    for i, word in enumerate(words):
        if i and gap:
            body.append(gap)
        body.append(json.dumps({"message": {"role": "assistant", "content": word},
                                "done": False}).encode() + b"\n")
    body.append(json.dumps({"message": {"role": "assistant", "content": ""}, "done": True,
                            "done_reason": "stop", "prompt_eval_count": 5,
                            "eval_count": len(words)}).encode() + b"\n")
    return Script(body=body, headers=[("content-type", "application/x-ndjson")])


def model_list(names: list[str]) -> Script:
    """``GET /v1/models`` (OpenAI) or ``GET /api/tags`` (Ollama) answering ``names``."""
    data = {"data": [{"id": n} for n in names], "models": [{"name": n} for n in names]}
    return Script(body=[json.dumps(data).encode()],
                  headers=[("content-type", "application/json")])


def answering(words: Callable[[Seen], Script], models: list[str]) -> Callable[[Seen], Script]:
    """An upstream that lists ``models`` and answers a chat with ``words(seen)``."""
    return lambda seen: model_list(models) if seen.method == "GET" else words(seen)


class Lines(list[str]):
    """A child's output lines, as ``collect_lines`` adds them; ``until`` waits for one."""

    def __init__(self) -> None:
        super().__init__()
        self.grew = trio.Event()

    def __iadd__(self, more: Iterable[str]) -> Lines:  # type: ignore[override,misc]
        super().__iadd__(more)
        self.grew.set()
        self.grew = trio.Event()
        return self

    async def until(self, pattern: str) -> str:
        """The first line matching ``pattern``, waiting (10 s at most) for it to come."""
        with trio.fail_after(10):
            while True:
                found = next((line for line in self if re.search(pattern, line)), None)
                if found is not None:
                    return found
                await self.grew.wait()


@dataclass
class Agent:
    """A ``chorus agent`` child process and the lines it logged."""

    process: trio.Process
    lines: Lines = field(default_factory=Lines)

    def frames(self) -> int:
        """Frames the agent sent, from its ``job … N frames`` log lines."""
        return sum(int(m.group(1)) for line in self.lines
                   if (m := re.search(r" (\d+) frames$", line)))

    async def wait(self) -> int:
        with trio.fail_after(10):
            return await self.process.wait()


def pool_of(app: QuartTrio) -> AgentPool:
    pool = app.extensions["chorus"].catalog.providers["lab"]
    assert isinstance(pool, AgentPool)
    return pool


async def until_models(pool: AgentPool, present: set[str], absent: set[str] = frozenset()
                       ) -> None:
    """Until ``pool`` serves ``present`` and none of ``absent`` (woken by each change)."""
    with trio.fail_after(15):
        while True:
            models = set(await pool.list_models())
            if present <= models and not models & absent:
                return
            await pool.next_change()


@dataclass
class Lab:
    """Chorus with ``[providers.lab] type = "agent"``, its upstream, and agents to start."""

    server: Server
    upstream: FakeUpstream
    start_agent: Callable[..., Awaitable[Agent]]

    @property
    def pool(self) -> AgentPool:
        return pool_of(self.server.app)

    async def until_models(self, present: set[str], absent: set[str] = frozenset()) -> None:
        await until_models(self.pool, present, absent)

    async def run(self, model: str, **body: Any) -> list[tuple[int, str, dict]]:
        async with self.server.client() as client, client.stream(
            "POST", "/v1/streams", headers={"Accept": "text/event-stream"},
            json={"models": [model], **ASK, **body},
        ) as r:
            return [e async for e in read_events(r)]

    async def metric(self, name: str) -> float:
        async with self.server.client() as client:
            text = (await client.get("/metrics")).text
        found = re.search(rf'^{name}\{{provider="lab"\}} (\S+)$', text, re.M)
        return float(found.group(1)) if found else 0.0


LAB = ("[server]\nresume_grace = 0.0\n"
       "[providers.lab]\ntype = \"agent\"\ntoken_env = \"LAB_AGENT_TOKENS\"\nretries = 1\n")
LAB_ENV = {"LAB_AGENT_TOKENS": f"other-token, {TOKEN}"}


async def launch(nursery: trio.Nursery, server: str, upstream: str, *extra: str,
                 token: str = TOKEN, wire: str = "openai") -> Agent:
    """``python -m app agent`` dialling ``server`` and serving ``upstream``, as box1."""
    base = upstream + ("/v1" if wire == "openai" else "")
    process = await spawn(["agent", "--server", server, "--token", token,
                           "--upstream", base, "--type", wire, "--name", "box1", *extra])
    agent = Agent(process)
    assert process.stderr is not None
    nursery.start_soon(collect_lines, process.stderr, agent.lines)
    return agent


@pytest.fixture
async def agents() -> AsyncIterator[list[Agent]]:
    """The agents a test started; killed (if still running) and reaped after it."""
    started: list[Agent] = []
    yield started
    for agent in started:
        if agent.process.returncode is None:
            agent.process.kill()
        await agent.wait()


@pytest.fixture
async def lab(nursery: trio.Nursery, upstream: FakeUpstream, start_server: StartServer,
              agents: list[Agent]) -> Lab:
    upstream.respond = answering(lambda seen: openai_script(["Hello", " world"]), ["m1"])
    server = await start_server(LAB, env=LAB_ENV)

    async def start_agent(*extra: str, token: str = TOKEN, wire: str = "openai") -> Agent:
        agent = await launch(nursery, server.url, upstream.url, *extra, token=token, wire=wire)
        agents.append(agent)
        return agent

    return Lab(server, upstream, start_agent)


# trio-websocket's client, when the server closes first, waits for the TCP close and leaves
# its socket to the garbage collector (``_impl.py``, ``_handle_close_connection_event``):
# collected here, so the warning stays with the tests that cause it.
LEFT_TO_GC = pytest.mark.filterwarnings("ignore:unclosed <socket:ResourceWarning")


def ws_url(lab: Lab) -> str:
    return "ws" + lab.server.url.removeprefix("http") + "/v1/agents/connect"


async def announce(ws: WebSocketConnection, capacity: int) -> None:
    """The handshake of an agent named ``hand`` serving m7, as ``chorus agent`` does it."""
    nonce = loads(await ws.get_message())["nonce"]
    await ws.send_message(dumps({"type": "hello", "name": "hand",
                                 "mac": answer(TOKEN, nonce)}))
    assert loads(await ws.get_message()) == {"type": "welcome", "heartbeat": 10.0}
    await ws.send_message(dumps({"type": "announce", "models": ["m7"],
                                 "capacity": capacity}))
