"""The processes of a run: each server under test alone on its own core, read from /proc.

The server under test runs on CPU 1, the fake upstream and the load generator on CPU 0, so
what is measured is the server's own cost, not its fight with the load for a core.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

Log = Callable[[str], None]  # where a benchmark says what it is doing

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024
ROOT = Path(__file__).resolve().parent.parent


# The cores this process was given when it started. The runner pins itself to the load's
# cores after splitting them; splitting its affinity again then would put the next
# server on the load's core.
_CORES = tuple(sorted(os.sched_getaffinity(0)))


def cpus() -> tuple[set[int], set[int]]:
    """(the server's cores, the load's cores) of the cores the process started with; one
    core each on a two-core machine. The same answer however often it is asked."""
    have = _CORES
    if len(have) < 2:
        return set(have), set(have)
    return {have[-1]}, set(have[:-1])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listened on port {port} within {timeout} s")


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except OSError:
            continue
    return out


@dataclass(frozen=True, slots=True)
class CpuTicks:
    """Clock ticks of some cores, from /proc/stat: all of them, and those *stolen* (the
    cores had work, but the hypervisor ran another guest). Stolen time is a pause no
    process here can see or cause: a tail latency measured while a tenth of the time is
    stolen says more about the neighbours than about the code."""

    total: int = 0
    steal: int = 0

    def __add__(self, other: CpuTicks) -> CpuTicks:
        return CpuTicks(self.total + other.total, self.steal + other.steal)

    def __sub__(self, other: CpuTicks) -> CpuTicks:
        return CpuTicks(self.total - other.total, self.steal - other.steal)

    @property
    def steal_pct(self) -> float | None:
        return round(100 * self.steal / self.total, 1) if self.total > 0 else None


def parse_cpu_ticks(stat: str, cores: Iterable[int] | None = None) -> CpuTicks:
    """The ticks of ``cores`` (all of them, from the summary line, when ``None``) in the
    text of /proc/stat. A line reads ``cpuN user nice system idle iowait irq softirq steal
    guest guest_nice``; guest time is already in user time, so the total is the first
    eight."""
    names = {"cpu"} if cores is None else {f"cpu{c}" for c in cores}
    ticks = CpuTicks()
    for line in stat.splitlines():
        fields = line.split()
        if fields and fields[0] in names:
            values = [int(x) for x in fields[1:9]]
            ticks += CpuTicks(sum(values), values[7] if len(values) > 7 else 0)
    return ticks


def cpu_ticks() -> CpuTicks:
    """Every core's ticks on this machine now; nothing where there is no /proc/stat."""
    try:
        with open("/proc/stat") as f:
            return parse_cpu_ticks(f.read())
    except OSError:
        return CpuTicks()


def cpu_seconds(pid: int) -> float:
    """User + system CPU of the process and its descendants, all threads."""
    total = 0
    for p in _descendants(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return total / CLK_TCK


def rss_kb(pid: int) -> int:
    """Resident memory of the process and its descendants, in KiB."""
    total = 0
    for p in _descendants(pid):
        try:
            with open(f"/proc/{p}/statm") as f:
                total += int(f.read().split()[1]) * PAGE_KB
        except OSError:
            continue
    return total


@dataclass
class Proc:
    name: str
    argv: Sequence[str]
    port: int
    cores: set[int]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    popen: subprocess.Popen[bytes] | None = None

    def start(self, ready_timeout: float = 30.0) -> Proc:
        cores = self.cores
        with open(self.log_path, "wb") as log:  # the child keeps its own copy
            self.popen = subprocess.Popen(
                list(self.argv), cwd=ROOT, env={**os.environ, **self.env}, stdout=log,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                preexec_fn=lambda: os.sched_setaffinity(0, cores),
            )
        try:
            wait_port(self.port, ready_timeout, self.popen)
        except BaseException:
            self.stop()
            raise
        return self

    def cpu(self) -> float:
        assert self.popen is not None
        return cpu_seconds(self.popen.pid)

    def rss_kb(self) -> int:
        assert self.popen is not None
        return rss_kb(self.popen.pid)

    def stop(self) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        self.popen.terminate()
        try:
            self.popen.wait(8)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(5)


def upstream_proc(cores: set[int], log_path: Path) -> Proc:
    port = free_port()
    return Proc("upstream", [sys.executable, "-m", "bench.upstream", "--port", str(port)], port,
                cores, log_path)


def relay_proc(upstream_port: int, cores: set[int], workdir: Path, name: str = "relay") -> Proc:
    """The bare stack (``bench/relay.py``): Quart-trio, Hypercorn and httpx relaying the
    upstream's answer as it reads it, for what Chorus does beyond its frameworks."""
    port = free_port()
    return Proc(name, [sys.executable, "-m", "bench.relay", "--port", str(port), "--upstream",
                       f"http://127.0.0.1:{upstream_port}/v1"], port, cores,
                workdir / f"{name}.log")


CHORUS_TOML = """\
[server]
resume_grace = 0.0
max_streams = {cap}
max_streams_per_key = {cap}
rate_limit = 0.0
retention = {retention}

[providers.fake]
type = "openai"
base_url = "http://127.0.0.1:{upstream}/v1"
retries = 0
max_concurrency = {cap}
"""


def chorus_proc(upstream_port: int, cores: set[int], workdir: Path, *, name: str = "chorus",
                retention: float = 5.0, merge_probe: Path | None = None,
                cap: int = 4096) -> Proc:
    """Chorus as shipped (``python -m app serve``), with the limits meant for many users
    lifted (rate, per-key and per-provider caps, up to ``cap`` streams and answers) and a
    short retention, so finished streams don't pile up. With ``merge_probe``, the same server
    under ``bench.probed``, which appends its merge task's waits to that file."""
    port = free_port()
    config = workdir / f"{name}.toml"
    config.write_text(CHORUS_TOML.format(upstream=upstream_port, retention=retention, cap=cap))
    if merge_probe is None:
        argv = [sys.executable, "-m", "app", "serve", "--config", str(config), "--port", str(port)]
    else:
        argv = [sys.executable, "-m", "bench.probed", "--config", str(config), "--port", str(port),
                "--out", str(merge_probe)]
    return Proc(name, argv, port, cores, workdir / f"{name}.log")
