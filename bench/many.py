"""Ten thousand streams in one Chorus process: its memory, the latency it adds, and leaving.

    .venv/bin/python -m bench.many [--streams 10000] [--hold 30] [--interval 1]
                                   [--ramp-rate 1000]

Each stream is one ``POST /v1/streams`` of one slot (``Accept: text/event-stream``) whose
model answers one token every ``--interval`` seconds for as long as the run lasts. The
streams open in steps of ``STEP`` (the server's listen backlog is Hypercorn's 100),
``--ramp-rate`` a second, until all are open, a step fails or ``RAMP_LIMIT`` has passed;
they are held ``--hold`` seconds, and then every client leaves at once. The same client
first reads the fake upstream directly with as many streams (the floor); Chorus's figures
are given minus the floor's. The fake upstream and this load generator share one core, the
server (``python -m app serve``, the memory backend) has the other. Every process here gets
the hard open-file limit as its soft one; when that cannot hold the server's two sockets
per stream, the run is cut to what fits and says so.
"""

from __future__ import annotations

import json
import os
import random
import resource
import sys
import time
from argparse import ArgumentParser
from array import array
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import trio

from . import procs
from .client import STAMP, Target, get_json, open_response
from .procs import Log
from .scenarios import open_upstream_answers, upstream_records
from .stats import minus, summary
from .upstream import model_name

HERE = Path(__file__).resolve().parent
STEP = 100  # streams that connect at once: within the server's listen backlog (100)
RAMP_RATE = 1000.0  # streams a second the ramp asks for (``--ramp-rate``), in steps of STEP
SETTLE = 2.0  # seconds after the ramp before the steady state is measured
RAMP_LIMIT = 120.0  # seconds the ramp may take; it stops early at the first step that fails
CLOSE_WAIT = 30.0  # seconds the upstream gets to see every connection closed
FD_SPARE = 64  # descriptors the server needs beside its streams' (logs, pool, requests)
GOALS = {"rss_mb": 1024.0, "added_p99_ms": 50.0, "closed_s": 2.0}

def raise_open_files() -> int:
    """Lift this process's soft open-file limit to its hard one (children inherit it);
    the limit now."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def streams_that_fit(wanted: int, limit: int, server_base_fds: int) -> int:
    """How many of ``wanted`` streams the server can hold under ``limit`` open files: each
    takes two (the client's connection, the upstream's) beside what an idle server holds."""
    return max(0, min(wanted, (limit - server_base_fds - FD_SPARE) // 2))


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def run_delay_s(pid: int) -> float:
    """Seconds the process's threads have spent runnable but waiting for a core
    (``/proc/PID/task/*/schedstat``, second field): on a shared machine, the part of a lag
    that other processes caused."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return total / 1e9


@dataclass
class Tally:
    """What one pass's clients saw. A token counts once the steady state has begun."""

    window_start_ns: int = 2**63
    opened: int = 0
    failed: list[str] = field(default_factory=list)
    ended_early: int = 0  # responses the server ended while they were held
    lags_us: array[float] = field(default_factory=lambda: array("d"))


async def _reader(target: Target, raw: bytes, tally: Tally, *,
                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """One client: started once its response head is in (or it failed), then reading until
    the pass cancels it, when its socket is closed."""
    try:
        response = await open_response(target, raw)
    except (OSError, ConnectionError, ValueError, trio.TooSlowError,
            trio.BrokenResourceError) as exc:
        tally.failed.append(f"{type(exc).__name__}: {exc}")
        task_status.started()
        return
    try:
        task_status.started()
        if response.status != 200:
            tally.failed.append(f"status {response.status}")
            return
        tally.opened += 1
        rest = b""
        while (got := await response.read()) is not None:
            now, data = got
            # A stamp split across reads is found once its end arrives: what follows the
            # last stamp found is kept (a stamp is under 64 bytes) and read again.
            data = rest + data
            end = 0
            for match in STAMP.finditer(data):
                end = match.end()
                if (stamp := int(match.group(2))) >= tally.window_start_ns:
                    tally.lags_us.append((now - stamp) / 1000)
            rest = data[max(end, len(data) - 64):]
        tally.ended_early += 1
    finally:
        await response.aclose()


async def _last_close_ns(port: int, tag: str) -> tuple[int | None, int]:
    """The upstream's last seen close among ``tag``'s answers, and how many finished
    instead (cut by their own bound, not by a client leaving)."""
    records = (await upstream_records(port, [tag])).get(tag, [])
    closes = [r["closed_ns"] for r in records if r["closed_ns"] is not None]
    return (max(closes) if closes else None), sum(1 for r in records if r["finished"])


@dataclass(frozen=True, slots=True)
class Pass:
    """One pass: ``streams`` clients through ``target`` (the server's process, if any)."""

    target: Target
    upstream_port: int
    streams: int
    hold: float
    interval: float = 1.0  # seconds between one stream's tokens
    ramp_rate: float = RAMP_RATE
    server: procs.Proc | None = None


async def run_pass(p: Pass, log: Log) -> dict[str, Any]:
    """Ramp up, settle, hold (sampling the server's RSS and descriptors each second), leave
    at once; then wait, bounded, for the upstream to see every connection closed."""
    tag = f"many-{p.target.name}-{time.monotonic_ns()}"
    rng = random.Random(11)
    # One token a second for longer than the pass lasts (then cut: a bound if we die), the
    # first after a random part of a second, so the streams' tokens don't come in lock-step.
    bound = RAMP_LIMIT + SETTLE + p.hold + 60
    gap_ms = p.interval * 1000
    tally = Tally()
    rss, fds = [], []
    server_cpu = ramp = 0.0
    async with trio.open_nursery() as readers:
        started = trio.current_time()
        for k, first in enumerate(range(0, p.streams, STEP)):
            await trio.sleep_until(started + k * STEP / p.ramp_rate)
            async with trio.open_nursery() as step:
                for _ in range(first, min(p.streams, first + STEP)):
                    model = model_name(rng.randrange(round(gap_ms)), 1_000_000, gap_ms,
                                       max_s=round(bound))
                    raw = p.target.request(model, tag)
                    step.start_soon(readers.start, partial(_reader, p.target, raw, tally))
            ramp = trio.current_time() - started
            if (k + 1) % 10 == 0 or tally.failed:
                log(f"  {tally.opened} open, {len(tally.failed)} failed after {ramp:.1f} s")
            if tally.failed or ramp > RAMP_LIMIT:
                break
        await trio.sleep(SETTLE)
        tally.window_start_ns = time.monotonic_ns()
        cpu0 = p.server.cpu() if p.server else 0.0
        pids = {"load": os.getpid()}
        if p.server is not None and p.server.popen is not None:
            pids["server"] = p.server.popen.pid
        waited0 = {name: run_delay_s(pid) for name, pid in pids.items()}
        hold_end = trio.current_time() + p.hold
        while trio.current_time() < hold_end:
            if p.server is not None and p.server.popen is not None:
                rss.append(p.server.rss_kb())
                fds.append(open_fds(p.server.popen.pid))
            await trio.sleep(min(1.0, max(0.0, hold_end - trio.current_time())))
        if p.server is not None:
            server_cpu = p.server.cpu() - cpu0
        window_s = (time.monotonic_ns() - tally.window_start_ns) / 1e9
        waited = {f"{name}_waited_for_a_core": round((run_delay_s(pid) - waited0[name])
                                                    / window_s, 3)
                  for name, pid in pids.items()}
        leave_ns = time.monotonic_ns()
        readers.cancel_scope.cancel()
    closed_s = None
    with trio.move_on_after(CLOSE_WAIT):
        while await open_upstream_answers(p.upstream_port) > 0:  # noqa: ASYNC110
            await trio.sleep(0.05)
    last_close, finished = await _last_close_ns(p.upstream_port, tag)
    if last_close is not None and finished == 0:
        closed_s = round((last_close - leave_ns) / 1e9, 3)
    return {
        "streams": p.streams, "interval_s": p.interval, "opened": tally.opened,
        "failed": len(tally.failed),
        "failures": sorted(set(tally.failed))[:5], "ended_early": tally.ended_early,
        "ramp_s": round(ramp, 2), "window_s": round(window_s, 2),
        "tokens": len(tally.lags_us), "tokens_per_s": round(len(tally.lags_us) / window_s),
        "lag_ms": summary(tally.lags_us, 1e-3),
        "server_rss_mb": round(max(rss) / 1024, 1) if rss else None,
        "server_fds": max(fds) if fds else None,
        "server_cpu_share": round(server_cpu / window_s, 3) if p.server else None,
        **waited,
        "upstream_open_after_leaving": await open_upstream_answers(p.upstream_port),
        "upstream_answers_finished": finished,
        "all_upstreams_closed_after_leaving_s": closed_s,
    }


def added(chorus: dict[str, Any], floor: dict[str, Any], q: str) -> float | None:
    """Chorus's lag percentile ``q`` minus the floor's (ms)."""
    return minus(chorus["lag_ms"].get(q), floor["lag_ms"].get(q))


def verdicts(r: dict[str, Any]) -> list[tuple[str, float | None, float, bool]]:
    """(figure, measured, goal, met) for the three goals."""
    chorus = r["chorus"]
    rows = [("server RSS with every stream open, MB", chorus["server_rss_mb"],
             GOALS["rss_mb"]),
            ("added latency per chunk p99, ms", r["added_ms"]["p99"], GOALS["added_p99_ms"]),
            ("clients left -> every upstream closed, s",
             chorus["all_upstreams_closed_after_leaving_s"], GOALS["closed_s"])]
    return [(name, v, goal, v is not None and v <= goal) for name, v, goal in rows]


def measure(wanted: int, hold: float, interval: float, ramp_rate: float, workdir: Path,
            log: Log) -> dict[str, Any]:
    """Start the upstream and the server, run the floor's pass and Chorus's, stop both."""
    limit = raise_open_files()
    cores, load_cores = procs.cpus()
    os.sched_setaffinity(0, load_cores)
    r: dict[str, Any] = {"wanted": wanted, "hold_s": hold, "interval_s": interval,
                         "ramp_rate": ramp_rate,
                         "open_files_limit": limit,
                         "loadavg_before": Path("/proc/loadavg").read_text().strip()}
    upstream = procs.upstream_proc(load_cores, workdir / "many-upstream.log")
    server = procs.chorus_proc(upstream.port, cores, workdir, name="chorus-many",
                               cap=wanted + 100)
    port = server.port
    try:
        upstream.start()
        server.start(ready_timeout=60)
        assert server.popen is not None
        trio.run(get_json, port, "/healthz")
        base = open_fds(server.popen.pid)
        streams = streams_that_fit(wanted, limit, base)
        r.update(streams=streams, server_idle_fds=base,
                 server_idle_rss_mb=round(server.rss_kb() / 1024, 1))
        if streams < wanted:
            log(f"the open-file limit ({limit}) holds {streams} streams, not {wanted}")
        log(f"floor: {streams} streams read from the fake upstream directly")
        r["floor"] = trio.run(run_pass, Pass(Target("direct", upstream.port, "direct"),
                                             upstream.port, streams, hold, interval,
                                             ramp_rate), log)
        log(f"chorus: {streams} streams through /v1/streams")
        r["chorus"] = trio.run(run_pass, Pass(Target("chorus", port, "chorus"),
                                              upstream.port, streams, hold, interval,
                                              ramp_rate, server),
                               log)
    finally:
        server.stop()
        upstream.stop()
    r["added_ms"] = {q: added(r["chorus"], r["floor"], q) for q in ("p50", "p99")}
    r["loadavg_after"] = Path("/proc/loadavg").read_text().strip()
    return r


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m bench.many", description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=10_000, help="streams held at once")
    parser.add_argument("--hold", type=float, default=30.0,
                        help="seconds of steady state measured (default 30)")
    parser.add_argument("--interval", type=float, default=1.0,
                        help="seconds between one stream's tokens (default 1)")
    parser.add_argument("--ramp-rate", type=float, default=RAMP_RATE,
                        help=f"streams opened a second (default {RAMP_RATE:g})")
    parser.add_argument("--json", type=Path, default=HERE / "results" / "many.json",
                        help="where the figures go")
    args = parser.parse_args(argv)
    if (args.streams < 1 or args.hold <= 0 or args.ramp_rate <= 0
            or not 0.001 <= args.interval <= 60):
        parser.error("--streams must be at least 1, --hold and --ramp-rate positive, "
                     "--interval 0.001-60")
    workdir = HERE / "results" / "tmp"
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()

    def log(message: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {message}", flush=True)

    r = measure(args.streams, args.hold, args.interval, args.ramp_rate, workdir, log)
    r["seconds"] = round(time.monotonic() - started, 1)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(r, indent=1) + "\n")
    for name in ("floor", "chorus"):
        log(f"{name}: {json.dumps(r[name])}")
    for name, value, goal, met in verdicts(r):
        log(f"  {'met' if met else 'NOT MET':7} {name}: {value} (goal <= {goal:g})")
    log(f"done: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
