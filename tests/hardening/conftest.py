"""Fixtures for the hardening tests: Chorus served the way ``chorus serve`` serves it, the
same in a thread (for synchronous fuzzers), as a real process, and captured log lines."""

from __future__ import annotations

import io
import logging
import os
import re
import sys
import threading
import tomllib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from subprocess import PIPE
from typing import Any

import pytest
import trio
from hypercorn.trio import serve
from quart_trio import QuartTrio

from app import create_app
from app.cli import hypercorn_config, run_server
from app.config import Config, build_config
from app.logs import QUIET, configure_logging

from ..conftest import Server
from ..support.engine import Event

ROOT = Path(__file__).resolve().parents[2]
ASK = {"messages": [{"role": "user", "content": "hello"}]}
SSE = {"Accept": "text/event-stream"}

StartChorus = Callable[..., Awaitable[Server]]


@pytest.fixture
async def start_chorus(nursery: trio.Nursery) -> AsyncIterator[StartChorus]:
    """Like ``start_server``, but served by ``chorus serve``'s own ``run_server`` (its
    listening socket, kernel write timeout and shutdown sequence included)."""
    stops: list[trio.Event] = []
    ended = trio.Semaphore(0)

    async def serve_until_stopped(config: Config, app: QuartTrio, stop: trio.Event, *,
                                  task_status: trio.TaskStatus[list[str]]) -> None:
        try:
            await run_server(config, "127.0.0.1", 0, stop=stop.wait, app=app,
                             task_status=task_status)
        finally:
            ended.release()

    async def start(toml: str = "", env: dict[str, str] | None = None) -> Server:
        config = build_config(tomllib.loads(toml), env or {})
        app = create_app(config)
        stops.append(trio.Event())
        binds = await nursery.start(serve_until_stopped, config, app, stops[-1])
        return Server(binds[0], app)

    yield start
    with trio.fail_after(15):
        for stop in stops:
            stop.set()
        for _ in stops:
            await ended.acquire()


@contextmanager
def threaded_chorus(toml: str = "", env: dict[str, str] | None = None) -> Iterator[str]:
    """Chorus in a thread of its own (its own trio run), for synchronous test tools such as
    Hypothesis and Schemathesis; yields its base URL and shuts it down cleanly after."""
    config = build_config(tomllib.loads(toml), env or {})
    ready = threading.Event()
    box: dict[str, Any] = {}

    async def run() -> None:
        app = create_app(config)
        box["stop"] = stop = trio.Event()
        box["token"] = trio.lowlevel.current_trio_token()
        async with trio.open_nursery() as nursery:
            binds = await nursery.start(partial(
                serve, app, hypercorn_config(config.server, "127.0.0.1", 0),  # type: ignore[arg-type]
                shutdown_trigger=stop.wait))
            box["url"] = binds[0]
            ready.set()

    def main() -> None:
        try:
            trio.run(run)
        except BaseException as exc:  # shown by the test, not lost in the thread
            box["error"] = exc
            ready.set()

    thread = threading.Thread(target=main, name="chorus", daemon=True)
    thread.start()
    assert ready.wait(10), "Chorus did not start"
    if "error" in box:
        raise box["error"]
    try:
        yield box["url"]
    finally:
        trio.from_thread.run_sync(box["stop"].set, trio_token=box["token"])
        thread.join(10)
        assert not thread.is_alive(), "Chorus did not shut down"


@dataclass
class ChorusProcess:
    """``python -m app serve`` as a child process; its stderr lines collected as they come."""

    process: trio.Process
    url: str
    stderr: list[str] = field(default_factory=list)


async def spawn(args: list[str], env: dict[str, str] | None = None) -> trio.Process:
    full_env = {k: v for k, v in os.environ.items()
                if not k.endswith("_API_KEY")
                and k not in ("CHORUS_API_KEYS", "CHORUS_CONFIG", "CHORUS_REDIS_URL")}
    full_env.update(env or {})
    full_env["PYTHONUNBUFFERED"] = "1"
    return await trio.lowlevel.open_process(
        [sys.executable, "-m", "app", *args], stdin=None, stdout=PIPE, stderr=PIPE, cwd=ROOT,
        env=full_env)


async def collect_lines(stream: trio.abc.ReceiveStream, into: list[str]) -> None:
    pending = b""
    async for chunk in stream:
        pending += chunk
        *lines, pending = pending.split(b"\n")
        into += [line.decode(errors="replace") for line in lines]
    if pending:
        into.append(pending.decode(errors="replace"))


@pytest.fixture
async def chorus_process(nursery: trio.Nursery, tmp_path: Path) -> AsyncIterator[
        Callable[..., Awaitable[ChorusProcess]]]:
    """``await chorus_process(toml)`` starts ``chorus serve`` on a free loopback port."""
    started: list[trio.Process] = []

    async def start(toml: str, env: dict[str, str] | None = None) -> ChorusProcess:
        path = tmp_path / f"chorus-{len(started)}.toml"
        path.write_text(toml)
        process = await spawn(["serve", "--config", str(path), "--port", "0"], env)
        started.append(process)
        assert process.stdout is not None
        assert process.stderr is not None
        out: list[str] = []
        child = ChorusProcess(process, "")
        nursery.start_soon(collect_lines, process.stderr, child.stderr)
        nursery.start_soon(collect_lines, process.stdout, out)
        with trio.fail_after(15):
            while not child.url:
                for line in out:
                    match = re.search(r"listening on (http://\S+)", line)
                    if match:
                        child.url = match.group(1)
                if process.returncode is not None:
                    raise AssertionError(f"chorus serve exited: {child.stderr}")
                await trio.sleep(0.05)
        return child

    yield start
    for process in started:
        if process.returncode is None:
            process.kill()
        with trio.move_on_after(5):
            await process.wait()


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """Everything logged during the test, as ``chorus serve`` writes it (at DEBUG)."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level, {n: logging.getLogger(n).level for n in QUIET}
    flags = {name: getattr(logging, name) for name in LOGGING_FLAGS}
    buffer = io.StringIO()
    configure_logging("debug", buffer)
    try:
        yield buffer
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        for name, level in saved[2].items():
            logging.getLogger(name).setLevel(level)
        for name, value in flags.items():
            setattr(logging, name, value)


LOGGING_FLAGS = ("_srcfile", "logThreads", "logProcesses", "logMultiprocessing")


def as_events(events: list[tuple[int, str, dict[str, Any]]]) -> list[Event]:
    """``read_events`` tuples as the engine tests' ``Event``s (for ``assert_grammar``)."""
    return [Event(i, t, d, 0.0) for i, t, d in events]
