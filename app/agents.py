"""``GET /v1/agents/connect``: the WebSocket that worker agents dial in to.

Once per connection: a random challenge out, ``hello {name, mac}`` back, checked against
every token of every ``type = "agent"`` provider (``providers.agent.handshake``); a wrong
answer closes the connection with 1008 (policy violation) and a log line that names the
agent and its address, never a token. Then ``announce {models, capacity}``, and the agent's
``AgentLink`` joins its provider's pool until the connection ends. Three tasks serve it:
one reads (job frames to their slots, never waiting for one: each job's window guarantees
its queue room, ``providers.agent.window``), one writes the outbox, one sends heartbeats
(every ``[server] agent_heartbeat`` seconds) and drops a connection silent for ``MISSED``
of them (``providers.agent.connection``). Every frame is read through ``frames.decode``: a
malformed one closes the connection with 1002 (protocol error), a line in the log, and the
link's jobs end as their agent gone; the other agents and streams go on. API keys do not
apply here: the token is the agent's credential.
"""

from __future__ import annotations

import logging

import trio
from quart import Blueprint, Response, websocket

from app.api.context import Chorus, chorus
from app.api.errors import ApiError
from providers.agent import AgentLink, AgentPool
from providers.agent.connection import MISSED, POLICY, PROTOCOL, beat, close_reason, write
from providers.agent.frames import FROM_AGENT, FrameError, decode, dumps
from providers.agent.handshake import accepted, new_challenge

log = logging.getLogger("chorus.agents")

bp = Blueprint("agents", __name__)

HELLO_TIMEOUT = 10.0  # seconds an agent has to answer the challenge and announce


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
        await websocket.close(PROTOCOL, close_reason(exc))
        return
    if pool is None or link is None:
        return
    log.info("agent %s connected from %s to %s: models %s, capacity %d", link.name, where,
             pool.config.name, ",".join(sorted(link.models)), link.capacity)
    link.heard = trio.current_time()
    pool.attach(link)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(write, link.outgoing, websocket.send)
            nursery.start_soon(_beat, link, state.config.server.agent_heartbeat,
                               nursery.cancel_scope)
            try:
                await _read(state, pool, link)
            except FrameError as exc:
                log.warning("agent %s dropped: %s", link.name, exc)
                link.broken = str(exc)
                await websocket.close(PROTOCOL, close_reason(exc))
            nursery.cancel_scope.cancel()
    finally:
        pool.detach(link)
        log.info("agent %s disconnected from %s", link.name, pool.config.name)


async def _greet(state: Chorus, where: str) -> tuple[AgentPool | None, AgentLink | None]:
    challenge = new_challenge()
    await websocket.send(dumps({"type": "challenge", "nonce": challenge}))
    hello = decode(await websocket.receive(), "hello")
    name, mac = hello["name"][:100], hello["mac"]
    pool = next((p for p in pools(state) if accepted(p.tokens, challenge, mac)), None)
    if pool is None:
        log.warning("agent %r from %s refused: wrong token", name, where)
        await websocket.close(POLICY, "wrong token")
        return None, None
    await websocket.send(dumps({"type": "welcome",
                                "heartbeat": state.config.server.agent_heartbeat}))
    announce = decode(await websocket.receive(), "announce")
    return pool, AgentLink(name, frozenset(announce["models"]), announce["capacity"])


async def _read(state: Chorus, pool: AgentPool, link: AgentLink) -> None:
    name = pool.config.name
    frames = state.metrics.agent_frames.labels(name)  # looked up once, counted per frame
    events = state.metrics.agent_events.labels(name)
    while True:
        frame = decode(await websocket.receive(), *FROM_AGENT)
        link.heard = trio.current_time()
        if frame["type"] == "events":
            frames.inc()
            events.inc(len(frame["events"]))
        if frame["type"] != "ping":
            link.deliver(frame)


async def _beat(link: AgentLink, heartbeat: float, scope: trio.CancelScope) -> None:
    await beat(heartbeat, lambda: link.heard, link.outbox)
    log.warning("agent %s dropped: silent for %d heartbeats", link.name, MISSED)
    scope.cancel()
