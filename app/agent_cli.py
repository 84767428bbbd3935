"""``chorus agent``: serve this machine's models to a Chorus that cannot reach it.

The agent dials out to ``/v1/agents/connect`` (a GPU box behind NAT needs no open port),
answers the server's challenge with HMAC-SHA256 of its token (the token never crosses the
wire), announces its models and capacity, then runs each job it is given with Chorus's own
``HttpProvider`` against ``--upstream`` (Ollama's or OpenAI's wire protocol).

Events go back in ``events`` frames: a job's first one at once, the next ones gathered for
up to ``LINGER`` after the frame before (or ``MAX_BATCH`` events), so a fast model costs a
frame per 10 ms rather than one per token, and a slow one adds no wait. A ``cancel``
cancels the job's scope, which closes its upstream response (and connection) at once.
Every wait is on a bounded queue, per job: a job sends no more than its window (the
``window`` of its ``job`` frame, given back by the server's ``credit`` frames as its slot
takes the events); out of window, its events queue up, and once ``JOB_QUEUE`` of them wait
the job stops reading its upstream. The other jobs on the connection go on.

A dropped connection is dialled again after a backoff (doubling, with jitter), and so is
one the server breaks: a frame that ``frames.decode`` refuses closes the connection with
1002 (protocol error) and a line in the log. A wrong token ends the command with status 2.
"""

from __future__ import annotations

import argparse
import logging
import math
import random
import sys
from collections.abc import Callable
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

import trio
from trio_websocket import (
    ConnectionClosed,
    HandshakeError,
    WebSocketConnection,
    open_websocket_url,
)

from app.cli import COMMANDS, EXTENSIONS
from providers import ProviderConfig, ProviderError
from providers import ollama as ollama_wire
from providers import openai as openai_wire
from providers.agent.connection import MISSED, POLICY, PROTOCOL, beat, close_reason, write
from providers.agent.frames import (
    FROM_SERVER,
    Frame,
    FrameError,
    decode,
    dumps,
    encode_error,
    encode_event,
    events_frame,
)
from providers.agent.handshake import answer
from providers.agent.window import Allowance
from providers.http import HttpProvider

log = logging.getLogger("chorus.agent")

PATH = "/v1/agents/connect"
WIRES = {"ollama": ollama_wire, "openai": openai_wire}
LINGER = 0.010  # seconds a token may wait to share a frame
MAX_BATCH = 256  # events in one frame at most
JOB_QUEUE = 64  # a job's events waiting for their frame (or for window)
OUTBOX = 16  # frames waiting for the WebSocket
BACKOFF_FIRST, BACKOFF_MAX = 0.5, 30.0  # seconds before dialling again


class Refused(Exception):
    """The server refused the token: dialling again cannot help."""


@dataclass(frozen=True, slots=True)
class Settings:
    """The command line, checked: where to dial, with what, and what to serve."""

    server: str  # Chorus's http(s) URL; the WebSocket URL is made from it
    token: str  # never sent: only its HMAC of the server's challenge is
    upstream: str  # the local model server
    type: str = "ollama"  # its wire protocol, a key of WIRES
    models: tuple[str, ...] = ()  # none: the upstream's own list, asked at each connection
    name: str = "agent"
    capacity: int = 4


def add_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "agent", help="serve this machine's models to a Chorus server (dials out)",
        description="Connect out to a Chorus server over a WebSocket and serve the models "
                    "of a local Ollama or OpenAI-compatible server (vLLM, llama.cpp) to it.")
    p.add_argument("--server", required=True, metavar="URL",
                   help="the Chorus server, e.g. http://HOST:8000")
    p.add_argument("--token", required=True, help="a token of the provider's token_env")
    p.add_argument("--upstream", required=True, metavar="URL",
                   help="the local model server, e.g. http://127.0.0.1:11434")
    p.add_argument("--type", choices=sorted(WIRES), default="ollama",
                   help="the upstream's protocol (default ollama; openai for vLLM: give "
                        "--upstream as http://HOST:PORT/v1)")
    p.add_argument("--models", help="comma-separated models to serve (default: the "
                                    "upstream's list)")
    p.add_argument("--name", default="agent", help="this agent's name in the server's log")
    p.add_argument("--capacity", type=int, default=4, help="jobs run at once (default 4)")


def agent(args: argparse.Namespace) -> int:
    if args.capacity < 1:
        print("chorus agent: --capacity must be at least 1", file=sys.stderr)
        return 2
    if not args.server.startswith(("http://", "https://", "ws://", "wss://")):
        print("chorus agent: --server must be an http:// or https:// URL", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per upstream request
    models = tuple(m.strip() for m in (args.models or "").split(",") if m.strip())
    settings = Settings(args.server, args.token, args.upstream, args.type, models,
                        args.name, args.capacity)
    try:
        trio.run(serve, settings)
    except Refused as exc:
        print(f"chorus agent: {exc}", file=sys.stderr)
        return 2
    return 0


def socket_url(server: str) -> str:
    """The WebSocket URL of the connect route on ``server`` (http -> ws, https -> wss)."""
    base = server.rstrip("/")
    if base.startswith("http"):
        base = "ws" + base[4:]
    return base + PATH


def upstream_provider(settings: Settings) -> HttpProvider:
    config = ProviderConfig(name=f"upstream {settings.upstream}", type=settings.type,
                            base_url=settings.upstream, models=settings.models,
                            max_concurrency=settings.capacity)
    return HttpProvider(config, WIRES[settings.type])


async def serve(settings: Settings) -> None:
    """Dial, serve, and dial again after a drop, until a wrong token (``Refused``)."""
    provider = upstream_provider(settings)
    delay = BACKOFF_FIRST

    def welcomed() -> None:
        nonlocal delay
        delay = BACKOFF_FIRST

    try:
        while True:
            try:
                await session(settings, provider, welcomed)
            except Exception as exc:  # sorted out just below
                refused = first_of(exc, (Refused,))
                if refused is not None:
                    raise refused from None
                lost = first_of(exc, DROPS)
                if lost is None:
                    raise
                log.warning("connection to %s lost: %s", settings.server, _why(lost))
            wait = delay * random.uniform(0.5, 1.0)
            log.info("dialling again in %.1f s", wait)
            await trio.sleep(wait)
            delay = min(delay * 2, BACKOFF_MAX)
    finally:
        await provider.aclose()


DROPS = (OSError, HandshakeError, ConnectionClosed, FrameError, ProviderError)


def first_of(exc: BaseException, kinds: tuple[type[BaseException], ...]
             ) -> BaseException | None:
    """``exc``, or the first exception inside its groups (a nursery's), of ``kinds``."""
    if not isinstance(exc, BaseExceptionGroup):
        return exc if isinstance(exc, kinds) else None
    found = exc.subgroup(lambda e: isinstance(e, kinds) and not isinstance(
        e, BaseExceptionGroup))
    while isinstance(found, BaseExceptionGroup):  # its order kept: the first is first
        found = found.exceptions[0]
    return found


def _why(exc: BaseException) -> str:
    if isinstance(exc, ConnectionClosed) and exc.reason is not None:
        return f"closed ({exc.reason.code} {exc.reason.reason or ''})".strip()
    if isinstance(exc, ProviderError):
        return exc.message
    if isinstance(exc, FrameError):
        return f"the server broke the protocol ({exc})"
    return str(exc) or type(exc).__name__


async def session(settings: Settings, provider: HttpProvider,
                  welcomed: Callable[[], None]) -> None:
    """One connection: the handshake, then jobs until it drops. A malformed frame from the
    server closes it with 1002, saying why."""
    async with open_websocket_url(socket_url(settings.server), connect_timeout=10,
                                  disconnect_timeout=2) as ws:
        try:
            heartbeat = await handshake(ws, settings)
            models = list(settings.models) or await provider.list_models()
            await ws.send_message(dumps({"type": "announce", "models": models,
                                         "capacity": settings.capacity}))
            log.info("serving %s to %s as %s (capacity %d)", ",".join(models),
                     settings.server, settings.name, settings.capacity)
            welcomed()
            await Worker(ws, provider, heartbeat).run()
        except* FrameError as broken:
            await ws.aclose(PROTOCOL, close_reason(first_of(broken, (FrameError,)) or broken))
            raise


async def handshake(ws: WebSocketConnection, settings: Settings) -> float:
    """Answer the challenge; the server's heartbeat interval. ``Refused`` on a wrong token."""
    challenge = decode(await ws.get_message(), "challenge")
    await ws.send_message(dumps({"type": "hello", "name": settings.name,
                                 "mac": answer(settings.token, challenge["nonce"])}))
    try:
        welcome = decode(await ws.get_message(), "welcome")
    except ConnectionClosed as exc:
        if exc.reason is not None and exc.reason.code == POLICY:
            raise Refused(f"the server at {settings.server} refused the token "
                          f"({exc.reason.reason or 'wrong token'})") from None
        raise
    return float(welcome["heartbeat"])


@dataclass(eq=False)
class Running:
    """A job in progress: its scope (a ``cancel`` cancels it), its window, its frames sent
    (for the log line, cancelled jobs included)."""

    scope: trio.CancelScope
    allowance: Allowance
    frames: int = 0


class Worker:
    """The jobs of one connection: a reader, a writer, a heartbeat, a task per job."""

    def __init__(self, ws: WebSocketConnection, provider: HttpProvider,
                 heartbeat: float) -> None:
        self.ws = ws
        self.provider = provider
        self.heartbeat = heartbeat
        self.jobs: dict[str, Running] = {}
        self.outbox, self.outgoing = trio.open_memory_channel[str](OUTBOX)
        self.heard = trio.current_time()

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(write, self.outgoing, self.ws.send_message)
            nursery.start_soon(self._beat)
            while True:
                frame = decode(await self.ws.get_message(), *FROM_SERVER)
                self.heard = trio.current_time()
                kind = frame["type"]
                if kind == "job":
                    nursery.start_soon(self._job, frame)
                    continue
                running = self.jobs.get(frame.get("id", ""))
                if running is None:  # it ended meanwhile
                    continue
                if kind == "credit":
                    running.allowance.grant(frame["events"])
                elif kind == "cancel":
                    running.scope.cancel()

    async def _beat(self) -> None:
        await beat(self.heartbeat, lambda: self.heard, self.outbox)
        raise ConnectionClosedSilently(self.heartbeat * MISSED)

    async def _job(self, frame: Frame) -> None:
        job, request = frame["id"], frame["request"]
        failed: list[ProviderError] = []
        running = self.jobs[job] = Running(trio.CancelScope(), Allowance(frame["window"]))
        with running.scope:
            try:
                send, receive = trio.open_memory_channel[dict[str, Any]](JOB_QUEUE)
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._produce, request, send, failed)
                    await send_events(job, receive, running, self.outbox)
                if failed:
                    await self.outbox.send(dumps({"type": "error", "id": job,
                                                  "error": encode_error(failed[0])}))
                else:
                    await self.outbox.send(dumps({"type": "end", "id": job}))
            finally:
                del self.jobs[job]
        outcome = ("cancelled" if running.scope.cancelled_caught else "failed" if failed
                   else "done")
        log.info("job %s %s %s: %d frames", job, request.model, outcome, running.frames)

    async def _produce(self, request: Any, send: trio.MemorySendChannel[dict[str, Any]],
                       failed: list[ProviderError]) -> None:
        async with send:
            try:
                async with aclosing(self.provider.stream(request)) as events:
                    async for event in events:
                        await send.send(encode_event(event))
            except ProviderError as exc:
                failed.append(exc)


async def send_events(job: str, receive: trio.MemoryReceiveChannel[dict[str, Any]],
                      running: Running, outbox: trio.MemorySendChannel[str]) -> None:
    """Send a job's events in frames, within its window, until its queue ends. Out of
    window it waits for credit, reading nothing meanwhile."""
    allowance, last = running.allowance, -math.inf
    async with receive:
        ended = False
        while not ended:
            await allowance.ready()
            try:
                batch = [await receive.receive()]
            except trio.EndOfChannel:
                return
            most = min(MAX_BATCH, allowance.left)
            with trio.move_on_at(last + LINGER):
                ended = await _gather(receive, batch, most, wait=True)
            if not ended:
                ended = await _gather(receive, batch, most, wait=False)
            allowance.take(len(batch))
            await outbox.send(dumps(events_frame(job, batch)))
            running.frames += 1
            last = trio.current_time()


async def _gather(receive: trio.MemoryReceiveChannel[dict[str, Any]],
                  batch: list[dict[str, Any]], most: int, *, wait: bool) -> bool:
    """Add events to ``batch`` up to ``most``: waiting for them, or only those ready.
    Whether the queue has ended."""
    while len(batch) < most:
        try:
            batch.append(await receive.receive() if wait else receive.receive_nowait())
        except trio.WouldBlock:
            return False
        except trio.EndOfChannel:
            return True
    return False


class ConnectionClosedSilently(OSError):
    """The server sent nothing for three heartbeats: the connection is dead."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"the server was silent for {seconds:.0f} s")


EXTENSIONS.append(add_command)
COMMANDS["agent"] = agent
