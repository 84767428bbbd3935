"""``chorus serve --workers N``: N server processes on one port, kept running by a supervisor.

One trio loop is one core, so a busy host runs several Chorus processes. Each worker is a
whole Chorus server (its own trio loop, ``create_app``, hub and shutdown), so streams can
only be shared between them through the Redis state backend: with the memory backend a
resume or a stop that lands on another worker than the stream's would get 404, and the
command refuses (``refusal``).

The supervisor binds the listening socket itself and the workers inherit it
(Hypercorn's ``bind = ["fd://N"]``), rather than each binding its own with
``SO_REUSEPORT``:

- the socket, and the connections queued on it, outlive any one worker: a worker that dies
  or restarts loses nothing queued (with ``SO_REUSEPORT`` each worker has its own queue, and
  what waits in a dying worker's is reset);
- a worker accepts when its loop is free to, so a worker busy with a burst leaves new
  connections to the others (``SO_REUSEPORT`` hashes each connection to a worker whatever
  its load);
- ``--port 0`` names one port, printed once.

Each worker runs in a session of its own, so a terminal's Ctrl-C reaches the supervisor
only, which then stops every worker once, with SIGTERM; and each holds a pipe from the
supervisor on its standard input, the supervisor's config first (pickled, so every worker
serves exactly what the supervisor checked) and then nothing: its end means the supervisor
is gone, and the worker shuts down as on SIGTERM rather than serve on unsupervised.
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import socket
import struct
import sys
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from functools import partial
from subprocess import PIPE

import trio
from quart import Response

from app.config import Config
from app.logs import configure_logging, fields

log = logging.getLogger("chorus.workers")

WORKER_HEADER = "X-Chorus-Worker"  # on every response: the number (1…N) of the worker
START_WAIT = 30.0  # seconds a worker gets to start listening before it counts as failed
STOP_WAIT = 10.0  # seconds workers get to shut down (streams 5 s, responses 1 s) before SIGKILL
RESTART_LIMIT = 5  # restarts within RESTART_WINDOW seconds; one more and the supervisor gives up
RESTART_WINDOW = 60.0
RESTART_DELAY = 0.1  # seconds before the first restart of a window, doubled for each next one
_LENGTH = struct.Struct(">I")


def refusal(config: Config, workers: int) -> str | None:
    """Why ``workers`` processes cannot serve ``config``, or None when they can."""
    if workers > 1 and config.state.backend != "redis":
        return (f'--workers {workers} needs [state] backend = "redis": with the '
                f"{config.state.backend} backend each process would hold its own streams, and "
                "a resume or a stop landing on another process would get 404")
    return None


def serve_workers(config: Config, host: str, port: int, workers: int) -> int:
    """Bind ``host:port`` and serve it with ``workers`` processes until SIGINT/SIGTERM: 0
    once every worker has shut down its usual way, 1 if one had to be killed or the workers
    kept dying."""
    from app.cli import hypercorn_config

    hc = hypercorn_config(config.server, host, port)
    (sock,) = hc.create_sockets().insecure_sockets
    with sock:
        sock.listen(hc.backlog)  # connections queue from now on, before any worker is up
        status = trio.run(Supervisor(config, sock, workers).run)
    log.info("shutdown.done", extra=fields(status=status))
    return status


class Supervisor:
    """Starts the workers, restarts one that ends on its own, stops them all on a signal."""

    def __init__(self, config: Config, sock: socket.socket, count: int) -> None:
        self.payload = pickle.dumps(config)
        self.providers = ", ".join(sorted(config.providers))
        self.sock = sock
        self.count = count
        self.live: dict[int, trio.Process] = {}
        self.ready: set[int] = set()
        self.restarts: deque[float] = deque()
        self.stop = trio.Event()  # a signal came, or the workers kept dying
        self.gone = trio.Event()  # every worker has ended and none will start again
        self.keeping = count
        self.failed = False
        self.announced = False

    async def run(self) -> int:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._on_signals, signals)
                for index in range(1, self.count + 1):
                    nursery.start_soon(self._keep, index)
                await self.stop.wait()
                self._signal_all(signal.SIGTERM)
                # Once the workers have closed theirs, the port refuses new connections, as
                # a single process's does, rather than queue them for no one.
                self.sock.close()
                with trio.move_on_after(STOP_WAIT):
                    await self.gone.wait()
                if not self.gone.is_set():
                    log.warning("workers.killed", extra=fields(workers=sorted(self.live)))
                    self.failed = True
                    self._signal_all(signal.SIGKILL)
                    await self.gone.wait()
                nursery.cancel_scope.cancel()
        return 1 if self.failed else 0

    async def _on_signals(self, signals: AsyncIterator[int]) -> None:
        """The first signal stops the workers gracefully; a second kills them."""
        async for signum in signals:
            if not self.stop.is_set():
                log.info("shutdown.start", extra=fields(signal=signal.Signals(signum).name,
                                                        workers=len(self.live)))
                self.stop.set()
            else:
                self.failed = True
                self._signal_all(signal.SIGKILL)

    def _signal_all(self, signum: int) -> None:
        for process in self.live.values():
            process.send_signal(signum)

    async def _keep(self, index: int) -> None:
        try:
            while not self.stop.is_set():
                status = await self._run_once(index)
                if self.stop.is_set():
                    break
                log.error("worker.exit", extra=fields(worker=index, status=status))
                delay = self.restart_delay()
                if delay is None:
                    self.failed = True
                    self.stop.set()
                    break
                with trio.move_on_after(delay):
                    await self.stop.wait()
        finally:
            self.keeping -= 1
            if self.keeping == 0:
                self.gone.set()

    def restart_delay(self) -> float | None:
        """Seconds to wait before the next restart, or None when there have been too many
        lately (a worker that cannot start would otherwise be restarted for ever)."""
        now = trio.current_time()
        while self.restarts and now - self.restarts[0] > RESTART_WINDOW:
            self.restarts.popleft()
        if len(self.restarts) >= RESTART_LIMIT:
            log.error("workers.failing", extra=fields(restarts=len(self.restarts),
                                                      window=RESTART_WINDOW))
            return None
        self.restarts.append(now)
        return float(RESTART_DELAY * 2 ** (len(self.restarts) - 1))

    async def _run_once(self, index: int) -> int:
        """One worker's life: its exit status."""
        fd = self.sock.fileno()
        process = await trio.lowlevel.open_process(
            [sys.executable, "-m", "app.workers", str(fd), str(index)],
            stdin=PIPE, stdout=PIPE, pass_fds=(fd,), start_new_session=True)
        self.live[index] = process
        log.info("worker.start", extra=fields(worker=index, pid=process.pid))
        if self.stop.is_set():  # the stop came while it was being started: it missed it
            process.send_signal(signal.SIGTERM)
        assert process.stdin is not None
        try:
            try:
                await process.stdin.send_all(_LENGTH.pack(len(self.payload)) + self.payload)
            except trio.BrokenResourceError:
                pass  # it ended before reading its config: its status says why
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._watch_output, index, process)
                status = await process.wait()
                nursery.cancel_scope.cancel()
        finally:
            del self.live[index]
            await process.stdin.aclose()
        return status

    async def _watch_output(self, index: int, process: trio.Process) -> None:
        """The worker's first line on standard output says that it listens (it is the line
        a single ``chorus serve`` prints); any later ones are passed on."""
        assert process.stdout is not None
        lines = LineReader(process.stdout)
        first: str | None = None
        with trio.move_on_after(START_WAIT) as waited:  # the start alone is bounded
            first = await lines.next()
        if waited.cancelled_caught:
            log.error("worker.start_timeout", extra=fields(worker=index, pid=process.pid))
            process.kill()
            return
        if first is None:
            return  # it ended before listening: its status says why
        log.info("worker.ready", extra=fields(worker=index, pid=process.pid))
        self.ready.add(index)
        if len(self.ready) == self.count and not (self.announced or self.stop.is_set()):
            self.announced = True
            print(self.listening_line(), flush=True)
        while (line := await lines.next()) is not None:
            print(line, flush=True)

    def listening_line(self) -> str:
        host, port = self.sock.getsockname()[:2]
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        return (f"Chorus is listening on http://{address}  ({self.count} workers, "
                f"providers: {self.providers})")


class LineReader:
    """Lines from a byte stream, one ``next()`` at a time (None at its end)."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self.stream = stream
        self.pending = b""

    async def next(self) -> str | None:
        while b"\n" not in self.pending:
            chunk = await self.stream.receive_some()
            if not chunk:
                return None
            self.pending += chunk
        line, self.pending = self.pending.split(b"\n", 1)
        return line.decode(errors="replace")


# The worker's side: ``python -m app.workers FD INDEX``, started by the supervisor only.

def worker_main(argv: Sequence[str]) -> int:
    fd, index = int(argv[0]), int(argv[1])
    payload = _read_exactly(0, _LENGTH.unpack(_read_exactly(0, _LENGTH.size))[0])
    config: Config = pickle.loads(payload)  # from the supervisor, our parent, over a pipe
    configure_logging(config.server.log_level)
    trio.run(partial(run_worker, config, fd, index))
    log.info("shutdown.done", extra=fields(worker=index))
    return 0


async def run_worker(config: Config, fd: int, index: int) -> None:
    """``chorus serve`` on the inherited socket ``fd``, each response naming the worker;
    stopped by SIGINT/SIGTERM or by the supervisor's end."""
    from app import create_app
    from app.cli import run_server, wait_for_signal

    app = create_app(config)

    @app.after_request
    async def name_worker(response: Response) -> Response:
        response.headers[WORKER_HEADER] = str(index)
        return response

    await run_server(config, config.server.host, config.server.port, fd=fd, app=app,
                     stop=partial(first_of, wait_for_signal, supervisor_gone))


async def supervisor_gone() -> None:
    """Returns once standard input, the supervisor's pipe, ends."""
    async with trio.lowlevel.FdStream(os.dup(0)) as stdin:
        while await stdin.receive_some():
            pass


async def first_of(*waits: Callable[[], Awaitable[None]]) -> None:
    """Returns as soon as one of ``waits`` has."""
    async with trio.open_nursery() as nursery:
        async def one(wait: Callable[[], Awaitable[None]]) -> None:
            await wait()
            nursery.cancel_scope.cancel()

        for wait in waits:
            nursery.start_soon(one, wait)


def _read_exactly(fd: int, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = os.read(fd, size - len(data))
        if not chunk:
            raise SystemExit("chorus worker: the supervisor left before sending the config")
        data += chunk
    return data


if __name__ == "__main__":
    sys.exit(worker_main(sys.argv[1:]))
