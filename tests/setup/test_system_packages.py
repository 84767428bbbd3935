"""``scripts/system-packages``: a dpkg lock held by another program is waited for, not fatal.

The test is that other program: it takes dpkg's frontend lock as dpkg does (an fcntl write
lock on ``/var/lib/dpkg/lock-frontend``), has the script hand an installed package to
apt-get (so nothing is downloaded), lets apt report that it is waiting, and only then
releases the lock.
"""

from __future__ import annotations

import fcntl
import os
import queue
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TextIO

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "system-packages"
FRONTEND_LOCK = Path("/var/lib/dpkg/lock-frontend")
# Installed wherever the terminal tests run; apt-get leaves a present package as it is.
PRESENT = "tmux"
# apt says it is waiting once a second: the lock is held until it has said so this many
# times, about two seconds.
REPORTS_BEFORE_RELEASE = 2
BOUND = 120.0

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="taking dpkg's lock needs root"),
    pytest.mark.skipif(shutil.which("apt-get") is None, reason="no apt-get on this machine"),
]


def installed(package: str) -> bool:
    status = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", package],
        capture_output=True, text=True, check=False, timeout=30,
    )
    return status.stdout.endswith(" installed")


@pytest.fixture
def frontend_lock() -> Iterator[Callable[[], None]]:
    """dpkg's frontend lock, held until the returned function (or the test's end) releases it.

    Another program on the machine may hold it for a while (an install): that is waited
    out, for a bounded time, by polling, since a blocking fcntl lock cannot time out.
    """
    fd = os.open(FRONTEND_LOCK, os.O_RDWR | os.O_CREAT, 0o640)
    deadline = time.monotonic() + BOUND
    while True:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except OSError:
            if time.monotonic() > deadline:
                os.close(fd)
                pytest.skip("another program kept dpkg's lock throughout")
            time.sleep(0.5)
    held = [fd]

    def release() -> None:
        while held:
            os.close(held.pop())  # closing the descriptor drops its fcntl locks

    try:
        yield release
    finally:
        release()


class Lines:
    """A process's output, line by line, read on a thread so that waiting for it is bounded."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.seen: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        assert process.stdout is not None
        self.reader = threading.Thread(target=self._read, args=(process.stdout,), daemon=True)
        self.reader.start()

    def _read(self, stdout: TextIO) -> None:
        with stdout:  # the reader owns the pipe: it ends with the process, or its killing
            for line in stdout:
                self._queue.put(line)
        self._queue.put(None)

    def until(self, done: Callable[[list[str]], bool], deadline: float) -> None:
        while not done(self.seen):
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"timed out; the script said:\n{self.text}")
            if line is None:
                pytest.fail(f"the script ended early; it said:\n{self.text}")
            self.seen.append(line)

    def rest(self, deadline: float) -> None:
        while (line := self._queue.get(timeout=max(0.0, deadline - time.monotonic()))) is not None:
            self.seen.append(line)

    @property
    def text(self) -> str:
        return "".join(self.seen)


def test_a_held_dpkg_lock_is_waited_for_then_the_install_goes_on(
    frontend_lock: Callable[[], None],
) -> None:
    if not installed(PRESENT):
        pytest.skip(f"{PRESENT} is not installed, and installing it would need the network")
    held_by_us = f"Could not get lock {FRONTEND_LOCK}. It is held by process {os.getpid()}"
    env = {**os.environ, "CHORUS_SYSTEM_PACKAGES_CHECK": PRESENT, "CHORUS_APT_LOCK_TIMEOUT": "60"}
    script = subprocess.Popen(
        [str(SCRIPT)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )
    lines = Lines(script)
    try:
        deadline = time.monotonic() + BOUND
        lines.until(
            lambda seen: sum(held_by_us in line for line in seen) >= REPORTS_BEFORE_RELEASE,
            deadline,
        )
        assert script.poll() is None, "the script gave up while the lock was held"
        frontend_lock()
        status = script.wait(timeout=max(0.0, deadline - time.monotonic()))
        lines.rest(deadline)
    finally:
        if script.poll() is None:
            os.killpg(script.pid, signal.SIGKILL)
            script.wait()
        lines.reader.join(timeout=BOUND)
    assert status == 0, lines.text
    assert f"system packages: apt-get install {PRESENT}" in lines.text
    assert f"{PRESENT} is already the newest version" in lines.text
