"""``chorus serve --workers N``: N processes on one port, supervised.

Real ``chorus serve`` processes on loopback, each test bounded. With the memory backend
more than one worker is refused; with ``[state] backend = "redis"`` (a real redis-server)
every worker answers on the one port, a worker that dies is restarted, a signal to the
supervisor shuts every worker down its usual way, and workers never outlive their
supervisor.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import trio
import trio.testing
from trio.testing import MockClock

from app import cli, workers
from app.config import build_config
from app.workers import RESTART_LIMIT, RESTART_WINDOW, Supervisor
from providers.sse import SSEDecoder

from ..support.redis import RedisServer

ROOT = Path(__file__).resolve().parents[2]
BOUND = 30.0  # seconds any one step (start, shutdown, restart) may take
EXIT_WITHIN = workers.STOP_WAIT  # SIGKILL comes after this: a graceful exit is well within
READY = re.compile(r"event=worker\.ready worker=(\d+) pid=(\d+)")
STARTED = re.compile(r"event=worker\.start worker=1 pid=(\d+)")


class Output:
    """A file a process writes to, polled so that waiting for a line is bounded."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def text(self) -> str:
        return self.path.read_text(errors="replace")

    def until(self, done: Callable[[list[str]], bool], within: float = BOUND) -> None:
        deadline = time.monotonic() + within
        while not done(self.text.splitlines()):
            if time.monotonic() > deadline:
                pytest.fail(f"timed out; {self.path.name} so far:\n{self.text}")
            time.sleep(0.05)


class Chorus:
    """``python -m app serve --workers N`` on a free loopback port."""

    def __init__(self, config: Path, *args: str) -> None:
        env = {k: v for k, v in os.environ.items()
               if not k.endswith("_API_KEY") and k not in ("CHORUS_API_KEYS", "CHORUS_CONFIG",
                                                             "CHORUS_REDIS_URL")}
        env["PYTHONUNBUFFERED"] = "1"
        env["OLLAMA_HOST"] = "127.0.0.1:9"  # no local Ollama is looked for on the real port
        self.out = Output(config.with_suffix(".out"))
        self.log = Output(config.with_suffix(".log"))
        with self.out.path.open("w") as out, self.log.path.open("w") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "app", "serve", "--config", str(config), "--port", "0",
                 *args], cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=log)
        self.url = ""

    def listening(self) -> str:
        self.out.until(lambda seen: any("listening on" in line for line in seen))
        match = re.search(r"listening on (http://\S+)  \((\d+) workers", self.out.text)
        assert match, self.out.text
        self.url = match.group(1)
        return match.group(2)

    def pids(self) -> dict[int, int]:
        """Each worker's latest pid, from the supervisor's ``worker.ready`` lines."""
        return {int(w): int(p) for w, p in READY.findall(self.log.text)}

    def worker_answering(self) -> int:
        """The worker that answers a request on a fresh connection."""
        with httpx.Client(base_url=self.url, timeout=5) as client:
            answer = client.get("/healthz")
        assert answer.status_code == 200
        return int(answer.headers[workers.WORKER_HEADER])

    def wait(self) -> int:
        return self.process.wait(timeout=EXIT_WITHIN)

    def end(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=BOUND)
        for pid in self.pids().values():
            if running(pid):
                os.kill(pid, signal.SIGKILL)


def running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie, ended but not yet reaped, is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def wait_until(done: Callable[[], bool], within: float = BOUND) -> None:
    deadline = time.monotonic() + within
    while not done():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.fixture
def redis_config(tmp_path: Path, redis_server: RedisServer) -> Path:
    path = tmp_path / "chorus.toml"
    path.write_text(f'[state]\nbackend = "redis"\nredis_url = "{redis_server.url}"\n')
    return path


@pytest.fixture
def chorus(redis_config: Path) -> Iterator[Callable[..., Chorus]]:
    started: list[Chorus] = []

    def start(*args: str) -> Chorus:
        started.append(Chorus(redis_config, *args))
        return started[-1]

    yield start
    for one in started:
        one.end()


@pytest.mark.usefixtures("bare_env", "no_serving")
def test_more_than_one_worker_with_the_memory_backend_is_refused_saying_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    config = tmp_path / "chorus.toml"
    config.write_text("[server]\nlog_level = \"info\"\n")
    assert cli.main(["serve", "--config", str(config), "--port", "0", "--workers", "2"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert ('--workers 2 needs [state] backend = "redis": with the memory backend each '
            "process would hold its own streams, and a resume or a stop landing on another "
            "process would get 404") in err


@pytest.mark.usefixtures("bare_env", "no_serving")
@pytest.mark.parametrize("count", ["0", "-1", "two"])
def test_a_worker_count_below_one_is_refused(
        count: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as refused:  # argparse's refusal of the command line
        cli.main(["serve", "--workers", count])
    assert refused.value.code == 2
    assert "--workers: must be a whole number from 1 up" in capsys.readouterr().err


def test_one_worker_is_the_single_process_server_as_before(
    chorus: Callable[..., Chorus],
) -> None:
    server = chorus("--workers", "1")
    server.out.until(lambda seen: any("listening on" in line for line in seen))
    assert "(providers: demo)" in server.out.text
    assert "workers" not in server.out.text
    url = re.search(r"http://\S+", server.out.text)
    assert url
    answer = httpx.get(url.group(0) + "/healthz", timeout=5)
    assert answer.status_code == 200
    assert workers.WORKER_HEADER not in answer.headers
    assert "event=worker." not in server.log.text
    server.process.send_signal(signal.SIGTERM)
    assert server.wait() == 0


def test_two_workers_answer_on_one_port_and_sigterm_ends_them_all(
    chorus: Callable[..., Chorus],
) -> None:
    server = chorus("--workers", "2")
    assert server.listening() == "2"
    assert server.out.text.count("listening on") == 1
    server.log.until(lambda seen: len(READY.findall("\n".join(seen))) == 2)
    pids = server.pids()
    assert sorted(pids) == [1, 2]
    for pid in pids.values():
        assert parent_of(pid) == server.process.pid
    answered = [server.worker_answering()]
    while set(answered) != {1, 2}:  # fresh connections, each accepted by a free worker
        assert len(answered) < 200, f"only worker {answered[0]} answered 200 connections"
        answered.append(server.worker_answering())

    server.process.send_signal(signal.SIGTERM)
    assert server.wait() == 0
    assert not any(running(pid) for pid in pids.values())
    log = server.log.text
    assert "event=shutdown.start signal=SIGTERM workers=2" in log
    for index in (1, 2):  # each ran its own shutdown to the end
        assert f"event=shutdown.done worker={index}" in log
    assert "event=worker.exit" not in log
    assert "Traceback" not in log


def test_a_worker_that_dies_is_restarted(chorus: Callable[..., Chorus]) -> None:
    server = chorus("--workers", "2")
    server.listening()
    server.log.until(lambda seen: len(READY.findall("\n".join(seen))) == 2)
    first = server.pids()

    os.kill(first[1], signal.SIGKILL)
    server.log.until(lambda seen: server.pids()[1] != first[1])
    assert "event=worker.exit worker=1 status=-9" in server.log.text
    second = server.pids()
    assert second[2] == first[2]
    assert parent_of(second[1]) == server.process.pid
    answered: set[int] = set()
    for _ in range(200):  # the new worker 1 takes connections as the old one did
        answered.add(server.worker_answering())
        if answered == {1, 2}:
            break
    assert answered == {1, 2}

    server.process.send_signal(signal.SIGINT)
    assert server.wait() == 0
    assert not any(running(pid) for pid in second.values())


def test_a_worker_that_keeps_dying_makes_the_supervisor_give_up_with_1(
    chorus: Callable[..., Chorus],
) -> None:
    server = chorus("--workers", "2")
    server.log.until(lambda seen: len(READY.findall("\n".join(seen))) == 2)
    other = server.pids()[2]
    killed: list[int] = []
    for _ in range(workers.RESTART_LIMIT + 1):  # each time it starts, it dies
        server.log.until(lambda seen: len(STARTED.findall("\n".join(seen))) > len(killed))
        killed.append(int(STARTED.findall(server.log.text)[-1]))
        os.kill(killed[-1], signal.SIGKILL)
    assert server.wait() == 1
    log = server.log.text
    assert log.count("event=worker.exit worker=1") == workers.RESTART_LIMIT + 1
    assert f"event=workers.failing restarts={workers.RESTART_LIMIT}" in log
    assert "event=shutdown.done worker=2" in log  # the other one was stopped its usual way
    assert not running(other)


def test_workers_do_not_outlive_their_supervisor(chorus: Callable[..., Chorus]) -> None:
    server = chorus("--workers", "2")
    server.listening()
    server.log.until(lambda seen: len(READY.findall("\n".join(seen))) == 2)
    pids = server.pids()
    server.process.kill()
    server.process.wait(timeout=BOUND)
    wait_until(lambda: not any(running(pid) for pid in pids.values()))
    server.log.until(lambda seen: sum("event=shutdown.done worker=" in line
                                      for line in seen) == 2)


def test_a_stream_open_at_sigterm_is_stopped_for_shutdown_and_the_exit_is_0(
    chorus: Callable[..., Chorus],
) -> None:
    server = chorus("--workers", "2")
    server.listening()
    events: list[tuple[str, dict[str, object]]] = []
    decoder = SSEDecoder()
    body = {"models": ["demo/hang"], "messages": [{"role": "user", "content": "hello"}]}
    with httpx.Client(base_url=server.url, timeout=httpx.Timeout(5, read=BOUND)) as client, \
            client.stream("POST", "/v1/streams", json=body,
                          headers={"Accept": "text/event-stream"}) as answer:
        assert answer.status_code == 200
        for chunk in answer.iter_raw():
            started = bool(events)
            events += [(e.event, json.loads(e.data)) for e in decoder.feed(chunk)]
            if events and not started:  # demo/hang never answers: the stream is live
                server.process.send_signal(signal.SIGTERM)
    assert server.wait() == 0
    names = [name for name, _ in events]
    assert names[0] == "stream.start"
    assert names[-1] == "stream.done"
    assert [data["reason"] for name, data in events if name == "model.stopped"] == ["shutdown"]


async def test_restarts_are_bounded_to_a_few_within_a_window(
    autojump_clock: MockClock,
) -> None:
    with socket.socket() as sock:
        supervisor = Supervisor(build_config({}, {}), sock=sock, count=2)
    delays = [supervisor.restart_delay() for _ in range(RESTART_LIMIT)]
    assert None not in delays
    assert delays == sorted(delays)  # each waits longer than the one before
    assert supervisor.restart_delay() is None  # one too many: the supervisor gives up
    await trio.sleep(RESTART_WINDOW + 1)
    assert supervisor.restart_delay() is not None  # an old burst is forgotten


def test_a_stream_made_on_one_worker_is_read_and_stopped_through_the_other(
    chorus: Callable[..., Chorus],
) -> None:
    server = chorus("--workers", "2")
    server.listening()
    server.log.until(lambda seen: len(READY.findall("\n".join(seen))) == 2)

    def fresh(method: str, path: str, **kw: object) -> httpx.Response:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            return client.request(method, path, **kw)  # type: ignore[arg-type]

    made = fresh("POST", "/v1/streams", json={"models": ["demo/slow"],
                                               "messages": [{"role": "user", "content": "hi"}]})
    assert made.status_code == 201
    maker = made.headers[workers.WORKER_HEADER]
    for _ in range(200):  # fresh connections until the other worker takes one
        snap = fresh("GET", f"/v1/streams/{made.json()['id']}")
        if snap.headers[workers.WORKER_HEADER] != maker:
            break
    assert snap.headers[workers.WORKER_HEADER] != maker
    assert snap.status_code == 200
    assert snap.json()["id"] == made.json()["id"]
    for _ in range(200):
        stopped = fresh("POST", made.json()["stop_url"], json={})
        if stopped.headers[workers.WORKER_HEADER] != maker:
            break
    assert stopped.status_code == 200
    assert stopped.headers[workers.WORKER_HEADER] != maker
    assert [s["state"] for s in stopped.json()["slots"]] == ["stopped"]
    server.process.send_signal(signal.SIGTERM)
    assert server.wait() == 0


class _Quiet:
    """A worker as the supervisor watches it: its standard output, a pid, a kill."""

    def __init__(self, stdout: trio.abc.ReceiveStream) -> None:
        self.stdout, self.pid, self.killed = stdout, 4242, False

    def kill(self) -> None:
        self.killed = True


async def test_only_the_start_is_bounded_a_quiet_worker_lives_on(
    autojump_clock: MockClock,
) -> None:
    with socket.socket() as sock:
        supervisor = Supervisor(build_config({}, {}), sock=sock, count=2)
    send, receive = trio.testing.memory_stream_one_way_pair()
    silent_send, silent_receive = trio.testing.memory_stream_one_way_pair()
    ready, silent = _Quiet(receive), _Quiet(silent_receive)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(supervisor._watch_output, 1, ready)
        nursery.start_soon(supervisor._watch_output, 2, silent)
        await send.send_all(b"Chorus is listening on http://127.0.0.1:1\n")
        await trio.sleep(workers.START_WAIT * 4)  # serving, saying nothing more
        assert supervisor.ready == {1}
        assert not ready.killed  # a worker that listens is never cut off for quiet
        assert silent.killed  # one that never says it listens is, after START_WAIT
        await send.aclose()
    await silent_send.aclose()
