"""Ctrl-C in ``chorus ask`` and ``chorus ask --conversation``, with real signals sent to the
command run as a terminal user runs it: the first stops the upstreams and prints what had
arrived, the second leaves at once even while the stop call hangs. Exit code 130."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from app.config import WELL_KNOWN
from app.terminal.interrupts import STOP_WAIT

from ..support.upstream import FakeUpstream, Script, Seen, openai_script
from .tmux import CHORUS, WITHIN

ROOT = Path(__file__).resolve().parents[2]
STOPPED = "chorus: stopped (Ctrl-C)\n"
WORDS = [f"w{i} " for i in range(400)]  # 20 s at one word per 50 ms: never read to its end
CONVERSATION = ["--conversation"]
PARALLEL = ["--json"]  # each event printed as it comes, so what arrived is known


class Running:
    """``chorus`` in a process of its own, its output read as it comes."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self.out = bytearray()
        self.err = bytearray()
        self._changed = trio.Event()

    async def read(self, nursery: trio.Nursery) -> None:
        async def pump(stream: trio.abc.ReceiveStream | None, into: bytearray) -> None:
            assert stream is not None
            while chunk := await stream.receive_some():
                into += chunk
                self._changed.set()

        nursery.start_soon(pump, self.process.stdout, self.out)
        nursery.start_soon(pump, self.process.stderr, self.err)

    async def wait_for(self, ready: Callable[[str], bool]) -> str:
        """Standard output, as soon as ``ready(it)``; fails after ``WITHIN`` seconds."""
        with trio.move_on_after(WITHIN):
            while not ready(self.out.decode()):
                await self._changed.wait()
                self._changed = trio.Event()
            return self.out.decode()
        raise AssertionError(f"the output never got there:\n{self.out.decode()}\n"
                             f"{self.err.decode()}")

    def interrupt(self) -> None:
        self.process.send_signal(signal.SIGINT)

    async def exit_code(self, within: float = WITHIN) -> int:
        with trio.fail_after(within):
            return await self.process.wait()


@pytest.fixture
async def chorus(nursery: trio.Nursery) -> AsyncIterator[Callable[..., Any]]:
    """``await chorus("ask", …)``: the command line in a process of its own; killed at the
    end of the test if it is still running."""
    cleared = {"CHORUS_CONFIG", "CHORUS_API_KEY", *(w[1] for w in WELL_KNOWN.values())}
    env = {k: v for k, v in os.environ.items() if k not in cleared}
    env.update(COLUMNS="80", NO_COLOR="1")
    started: list[trio.Process] = []

    async def start(*argv: str) -> Running:
        process = await trio.lowlevel.open_process(
            [*CHORUS, *argv], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        started.append(process)
        running = Running(process)
        await running.read(nursery)
        return running

    yield start
    for process in started:
        if process.returncode is None:
            process.kill()
        with trio.CancelScope(shield=True), trio.fail_after(WITHIN):
            await process.wait()


def provider(upstream: FakeUpstream, tmp_path: Path) -> str:
    config = tmp_path / "chorus.toml"
    config.write_text(f'[providers.up]\ntype = "openai"\nbase_url = "{upstream.url}/v1"\n'
                      "retries = 0\n")
    return str(config)


@pytest.mark.parametrize("mode", [PARALLEL, CONVERSATION], ids=["ask", "conversation"])
async def test_ctrl_c_closes_the_upstreams_and_keeps_what_was_printed(
    chorus: Callable[..., Any], upstream: FakeUpstream, tmp_path: Path, mode: list[str],
) -> None:
    upstream.respond = lambda seen: openai_script(WORDS, gap=0.05)
    run = await chorus("ask", "--no-log", "--config", provider(upstream, tmp_path), *mode,
                       "-m", "up/a", "-m", "up/b", "hello")
    speaking = 1 if mode is CONVERSATION else 2  # a conversation's turns come one by one
    before = await run.wait_for(lambda out: out.count("w5 ") == speaking)
    run.interrupt()
    assert await run.exit_code() == 130
    out, err = run.out.decode(), run.err.decode()
    assert out.startswith(before)  # what was printed stays, and the stop's events follow
    assert err.endswith(STOPPED)
    assert len(upstream.seen) == speaking  # no turn began after the stop
    for seen in upstream.seen:
        with trio.fail_after(1):
            await seen.closed.wait()
        assert seen.bytes_sent < len(WORDS) * 150 / 2
    if mode is CONVERSATION:
        assert out.endswith("\n[stopped: user]\n")
    else:
        events = [json.loads(line) for line in out.splitlines()]
        assert [e["event"] for e in events][-3:] == ["model.stopped"] * 2 + ["stream.done"]
        assert sorted(e["data"]["slot"] for e in events if e["event"] == "model.stopped") \
            == [0, 1]
        assert {e["data"]["reason"] for e in events if e["event"] == "model.stopped"} \
            == {"user"}


def sse_event(event_id: int, kind: str, data: dict[str, Any]) -> bytes:
    return f"id: {event_id}\nevent: {kind}\ndata: {json.dumps(data)}\n\n".encode()


def chorus_stream(conversation: bool) -> list[bytes | float]:
    """A stream's first events, as a Chorus server sends them (then nothing more)."""
    slots = [{"slot": 0, "model": "up/a", "label": "up/a"}]
    start: dict[str, Any] = {"stream_id": "s1", "slots": slots, "created": 0}
    turn: dict[str, Any] = {}
    events = []
    if conversation:
        start.update(mode="conversation", rounds=1,
                     participants=[{"slot": 0, "model": "up/a", "name": "up/a"}])
        turn = {"turn": 0}
        events.append(("turn.start", {"turn": 0, "slot": 0, "model": "up/a", "name": "up/a"}))
    events = [("stream.start", start), *events, ("model.start", {"slot": 0, "model": "up/a",
                                                                 **turn}),
              ("delta", {"slot": 0, "text": "hello there", **turn})]
    return [sse_event(i, kind, data) for i, (kind, data) in enumerate(events, 1)]


@pytest.mark.parametrize("mode", [PARALLEL, CONVERSATION], ids=["ask", "conversation"])
async def test_a_second_ctrl_c_leaves_at_once_while_the_stop_call_hangs(
    chorus: Callable[..., Any], nursery: trio.Nursery, mode: list[str],
) -> None:
    """The server here speaks Chorus's stream contract but never answers a stop call: the
    first Ctrl-C's stop is left pending, and only a second Ctrl-C can end the wait early."""
    def respond(seen: Seen) -> Script:
        if seen.path.endswith("/stop"):
            return Script(headers=[("content-type", "application/json")], end="hang")
        return Script(body=chorus_stream(mode is CONVERSATION), end="hang",
                      headers=[("content-type", "text/event-stream"),
                               ("x-chorus-stream-id", "s1")])

    server = FakeUpstream(respond)
    await nursery.start(server.serve)
    run = await chorus("ask", "--no-log", "--server", server.url, *mode, "-m", "up/a", "hi")
    before = await run.wait_for(lambda out: "hello there" in out)
    run.interrupt()
    with trio.fail_after(WITHIN):
        stop = await server.wait_for_request(2)
    assert (stop.method, stop.path) == ("POST", "/v1/streams/s1/stop")
    run.interrupt()
    second = trio.current_time()
    # Without the second Ctrl-C the command would wait out STOP_WAIT from the first.
    assert await run.exit_code(within=STOP_WAIT / 2) == 130
    assert trio.current_time() - second < STOP_WAIT / 2
    assert run.out.decode() == before
    assert run.err.decode().endswith(STOPPED)
    events, _ = server.seen
    with trio.fail_after(1):  # leaving closed the stream and abandoned the stop call
        await events.closed.wait()
        await stop.closed.wait()
