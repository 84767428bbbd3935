"""``GET /v1/agents/connect``: the WebSocket that worker agents dial in to.

Once per connection: a random challenge out, ``hello {name, mac}`` back, checked against
every token of every ``type = "agent"`` provider (``providers.agent.handshake``); a wrong
answer closes the connection with 1008 (policy violation) and a log line that names the
agent and its address, never a token. Then ``announce {models, capacity}``, and the agent's
``AgentLink`` joins its provider's pool until the connection ends. Three tasks serve it:
one reads (job frames to their slots, never waiting for one: each job's window guarantees
its queue room, ``providers.agent.window``), one writes the outbox, one sends heartbeats
(every ``[server] agent_heartbeat`` seconds) and drops a connection silent for ``MISSED``
of them. API keys do not apply here: the token is the agent's credential.
"""

from __future__ import annotations

import logging

import trio
from quart import Blueprint, Response, websocket

from app.api.context import Chorus, chorus
from app.api.errors import ApiError
from providers.agent import AgentLink, AgentPool
from providers.agent.frames import FrameError, dumps, field, loads
from providers.agent.handshake import accepted, new_challenge

log = logging.getLogger("chorus.agents")

bp = Blueprint("agents", __name__)

MISSED = 3  # pings missed before a connection counts as dead
HELLO_TIMEOUT = 10.0  # seconds an agent has to answer the challenge and announce
POLICY = 1008  # WebSocket close code: policy violation (a wrong token)
PROTOCOL = 1002  # WebSocket close code: a frame that breaks the protocol
MAX_CAPACITY = 1024


def pools(state: Chorus) -> list[AgentPool]:
    return [p for p in state.catalog.providers.values() if isinstance(p, AgentPool)]


def watch(state: Chorus) -> None:
    """The agent gauges of ``/metrics`` read each pool as they are scraped."""
    for pool in pools(state):
        _watch(state, pool)


def _watch(state: Chorus, pool: AgentPool) -> None:
    m, name = state.metrics, pool.config.name
    m.agents.labels(name).set_function(lambda: len(pool.links))
    m.agent_jobs.labels(name).set_function(lambda: pool.running)
    m.agent_capacity.labels(name).set_function(lambda: pool.capacity)


@bp.get("/v1/agents/connect")
async def not_a_websocket() -> Response:
    """A plain HTTP request here is a client that took the wrong door: say which one."""
    raise ApiError(426, "upgrade_required",
                   "this is the WebSocket that worker agents dial in to (chorus agent "
                   "--server URL --token T --upstream URL); it takes no HTTP request",
                   headers={"Upgrade": "websocket"})


@bp.websocket("/v1/agents/connect")
async def connect() -> None:
    state = chorus()
    where = websocket.remote_addr or "?"
    await websocket.accept()
    try:
        with trio.fail_after(HELLO_TIMEOUT):
            pool, link = await _greet(state, where)
    except (FrameError, trio.TooSlowError) as exc:
        log.warning("agent from %s refused: %s", where, exc)
        await websocket.close(PROTOCOL, str(exc)[:100])
        return
    if pool is None or link is None:
        return
    log.info("agent %s connected from %s to %s: models %s, capacity %d", link.name, where,
             pool.config.name, ",".join(sorted(link.models)), link.capacity)
    link.heard = trio.current_time()
    pool.attach(link)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_write, link)
            nursery.start_soon(_beat, link, state.config.server.agent_heartbeat,
                               nursery.cancel_scope)
            try:
                await _read(state, pool, link)
            except FrameError as exc:
                log.warning("agent %s dropped: %s", link.name, exc)
                await websocket.close(PROTOCOL, str(exc)[:100])
            nursery.cancel_scope.cancel()
    finally:
        pool.detach(link)
        log.info("agent %s disconnected from %s", link.name, pool.config.name)


async def _greet(state: Chorus, where: str) -> tuple[AgentPool | None, AgentLink | None]:
    challenge = new_challenge()
    await websocket.send(dumps({"type": "challenge", "nonce": challenge}))
    hello = loads(await websocket.receive())
    name, mac = field(hello, "name", str)[:100], field(hello, "mac", str)
    pool = next((p for p in pools(state) if accepted(p.tokens, challenge, mac)), None)
    if pool is None:
        log.warning("agent %r from %s refused: wrong token", name, where)
        await websocket.close(POLICY, "wrong token")
        return None, None
    await websocket.send(dumps({"type": "welcome",
                                "heartbeat": state.config.server.agent_heartbeat}))
    announce = loads(await websocket.receive())
    models = field(announce, "models", list)
    capacity = field(announce, "capacity", int)
    if not all(isinstance(m, str) and m for m in models) or not 1 <= capacity <= MAX_CAPACITY:
        raise FrameError("an announce needs model names and a capacity from 1 to "
                         f"{MAX_CAPACITY}")
    return pool, AgentLink(name, frozenset(models), capacity)


async def _read(state: Chorus, pool: AgentPool, link: AgentLink) -> None:
    name = pool.config.name
    frames = state.metrics.agent_frames.labels(name)  # looked up once, counted per frame
    events = state.metrics.agent_events.labels(name)
    while True:
        frame = loads(await websocket.receive())
        link.heard = trio.current_time()
        kind = frame["type"]
        if kind == "events":
            frames.inc()
            events.inc(len(field(frame, "events", list)))
            link.deliver(frame)
        elif kind in ("end", "error"):
            link.deliver(frame)
        elif kind != "ping":
            raise FrameError(f"an agent sent a frame of unknown type {kind!r}")


async def _write(link: AgentLink) -> None:
    async for text in link.outgoing:
        await websocket.send(text)


async def _beat(link: AgentLink, heartbeat: float, scope: trio.CancelScope) -> None:
    ping = dumps({"type": "ping"})
    while True:
        await trio.sleep(heartbeat)
        if trio.current_time() - link.heard > heartbeat * MISSED:
            log.warning("agent %s dropped: silent for %d heartbeats", link.name, MISSED)
            scope.cancel()
            return
        await link.outbox.send(ping)
