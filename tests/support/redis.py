"""A real ``redis-server`` on a free loopback port, for tests of the Redis state backend.

Debian's ``redis-server`` with no persistence (``--save ""``, ``--appendonly no``), so each
start, restarts included, begins empty. The tests drive the faults a deployment sees:
``stop()`` (a clean shutdown), ``kill()`` (a crash), ``restart()`` (back on the same port,
empty) and ``freeze()``/``thaw()`` (a Redis that stops answering but keeps its connections
open, as a paused VM or a full disk does).
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from bench.procs import free_port

START_WAIT = 10.0  # seconds redis-server gets to answer PING
STOP_WAIT = 10.0
INSTALL = "apt-get install -y redis-server"


class RedisUnavailable(RuntimeError):
    """``redis-server`` is not installed, or would not start."""


def answers_ping(port: int, timeout: float = 0.5) -> bool:
    """Whether a Redis answers ``PING`` on 127.0.0.1:``port`` (in RESP, as any client would)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """``redis-server`` on 127.0.0.1:``port`` (a free one by default); ``close()`` ends it
    and removes its directory."""

    def __init__(self, port: int | None = None) -> None:
        self.executable = shutil.which("redis-server")
        if self.executable is None:
            raise RedisUnavailable(f"redis-server is not installed: run `{INSTALL}` "
                                   "(or scripts/system-packages)")
        self.dir = Path(tempfile.mkdtemp(prefix="chorus-redis-"))
        self.process: subprocess.Popen[bytes] | None = None
        self.frozen = False
        for attempt in range(1 if port else 3):  # a free port can be taken before Redis binds it
            self.port = port or free_port()
            try:
                self.start()
                return
            except RedisUnavailable:
                if port or attempt == 2:
                    shutil.rmtree(self.dir, ignore_errors=True)
                    raise

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start it (empty) and return once it answers PING."""
        self.log = self.dir / "redis.log"
        self.process = subprocess.Popen(
            [str(self.executable), "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", str(self.dir),
             "--logfile", str(self.log)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_WAIT
        while not answers_ping(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RedisUnavailable(f"redis-server did not start on port {self.port}: "
                                       f"{self._log_tail()}")
            time.sleep(0.02)

    def stop(self) -> None:
        """A clean shutdown (SIGTERM), waited for."""
        self._end(signal.SIGTERM)

    def kill(self) -> None:
        """A crash (SIGKILL): connections drop without a word."""
        self._end(signal.SIGKILL)

    def restart(self) -> None:
        """Stop it and start it again on the same port, empty."""
        self.stop()
        self.start()

    def freeze(self) -> None:
        """Stop answering (SIGSTOP), connections kept open."""
        if self.process is None or self.process.poll() is not None:
            raise RedisUnavailable("cannot freeze a redis-server that is not running")
        self.process.send_signal(signal.SIGSTOP)
        self.frozen = True

    def thaw(self) -> None:
        """Answer again (SIGCONT), everything queued meanwhile handled."""
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)
        self.frozen = False

    def close(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _end(self, signum: int) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signum)
        if self.frozen:  # a stopped process acts on SIGTERM only once it runs again
            process.send_signal(signal.SIGCONT)
            self.frozen = False
        try:
            process.wait(timeout=STOP_WAIT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_WAIT)

    def _log_tail(self) -> str:
        try:
            return " | ".join(self.log.read_text(errors="replace").splitlines()[-5:])
        except OSError:
            return "no log"
