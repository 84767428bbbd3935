"""The Redis state backend and ``--workers``, measured beside the memory backend.

    .venv/bin/python -m bench.scale            # about four minutes on 2 cores
    .venv/bin/python -m bench.scale --quick    # every part, tiny (the smoke test's size)

One run, one fake upstream, one ``redis-server`` started here (no persistence, its own
port), and these servers, each Chorus as shipped (``python -m app serve``):

- ``memory``: the memory backend, alone on the server's core, as ``python -m bench`` runs it;
- ``redis-a``: the Redis backend, alone on the server's core: the instance running the
  streams (a reader there is the common path);
- ``redis-b``: a second instance on the same Redis, on the load's core (another instance
  is another host: it should not take the running instance's core), reading ``redis-a``'s
  streams (the cross-instance path) and sending stops to it;
- for the workers' part, ``--workers 2`` and one worker, both on Redis, neither pinned.

Redis shares the load's core with the fake upstream and the load generator; its CPU is
read apart from the server's. Lags are the client's receive time minus the upstream's send
stamp, as in ``python -m bench``; *added* figures subtract the floor (the same client
reading the upstream directly). The figures go to ``--json``; the page's section is
printed and written to ``--md``.

One module of some 500 lines, the run and its section of the page together: every part
shares the run's processes and nothing else uses them; the helpers it needs from
``python -m bench`` are imported, not repeated.
"""

from __future__ import annotations

import json
import os
import sys
import time
from argparse import ArgumentParser
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import trio

from . import procs, scenarios
from .__main__ import machine, server
from .client import StreamResult, Target, get_json, open_response, run_stream
from .load import Load, Sample, collect, pooled, summarise
from .procs import Log, Proc, cpu_seconds, cpu_ticks
from .report import _f, _get, _loads, _table
from .scenarios import Ctx, Plan, Server, tag
from .stats import minus
from .upstream import model_name

HERE = Path(__file__).resolve().parent
PATHS = ("direct", "memory", "redis-local", "redis-cross")


@dataclass(frozen=True)
class ScalePlan:
    """How big each part is: ``base`` sizes the parts shared with ``python -m bench``
    (latency load, saturation, stop trials); ``quick()`` is the smoke test's size."""

    base: Plan = field(default_factory=lambda: Plan(stop_trials=100))
    # Answers in flight for the latency part: python -m bench's 50, and a light load that
    # leaves the server's core idle most of the time even on a machine shared with other
    # work (where 50 can queue behind it and measure the neighbours).
    latency_streams: tuple[int, ...] = (50, 10)
    rounds: int = 3  # latency rounds per path, taking turns
    workers_streams: int = 16  # saturation streams for --workers 2 and one worker
    workers_seconds: float = 5.0

    @classmethod
    def quick(cls) -> ScalePlan:
        base = replace(Plan.quick(), latency_seconds=0.5, latency_grace=0.5, stop_trials=5)
        return cls(base=base, latency_streams=(5, 2), rounds=1,
                   workers_streams=4, workers_seconds=0.3)


# -- the processes ---------------------------------------------------------------------------

def redis_proc(cores: set[int], workdir: Path) -> Proc:
    """``redis-server`` on a free loopback port, nothing persisted."""
    port = procs.free_port()
    return Proc("redis", ["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                          "--save", "", "--appendonly", "no", "--dir", str(workdir)],
                port, cores, workdir / "redis.log")


def chorus_redis_proc(upstream_port: int, redis_port: int, cores: set[int], workdir: Path,
                      name: str, workers: int = 1) -> Proc:
    """``chorus_proc``'s server with ``[state] backend = "redis"`` (and ``--workers``)."""
    proc = procs.chorus_proc(upstream_port, cores, workdir, name=name)
    config = workdir / f"{name}.toml"
    with config.open("a") as f:
        f.write(f'\n[state]\nbackend = "redis"\nredis_url = "redis://127.0.0.1:{redis_port}/0"\n')
    argv = [*proc.argv, *(["--workers", str(workers)] if workers > 1 else [])]
    return replace(proc, argv=argv)


async def healthy(port: int, workers: int = 1, within: float = 30.0) -> None:
    """Until ``/healthz`` has been answered by each of the server's ``workers`` (their
    ``X-Chorus-Worker`` header; a supervisor listens before its workers do)."""
    target = Target("healthz", port, "control")
    raw = (f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
           "Connection: close\r\n\r\n").encode()
    seen: set[str] = set()
    with trio.fail_after(within):
        while len(seen) < workers:
            try:
                response = await open_response(target, raw)
            except (OSError, ConnectionError, trio.TooSlowError):
                await trio.sleep(0.05)
                continue
            await response.aclose()
            if response.status == 200:
                seen.add(response.headers.get("x-chorus-worker", "1"))
            await trio.sleep(0.01)


async def redis_counts(port: int) -> dict[str, int]:
    """How much Redis has done so far: calls per command (``INFO commandstats``; not
    counting these ``INFO`` calls) and its reads (``INFO stats``: about one per pipeline
    or lone command a client sent)."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(b"*3\r\n$4\r\nINFO\r\n$5\r\nstats\r\n$12\r\ncommandstats\r\n")
        buf = b""
        while b"\r\n" not in buf or len(buf) < buf.index(b"\r\n") + 2 + int(
                buf[1:buf.index(b"\r\n")]):
            data = await stream.receive_some(65536)
            if not data:
                raise ConnectionError("redis-server closed before answering INFO")
            buf += data
    counts: dict[str, int] = {}
    for line in buf.decode().splitlines()[1:]:
        name, _, value = line.partition(":")
        if name.startswith("cmdstat_") and name != "cmdstat_info":
            counts[name.removeprefix("cmdstat_")] = int(value.split(",")[0].split("=")[1])
        elif name == "total_reads_processed":
            counts["reads"] = int(value)
    return counts


def per_token(before: dict[str, int], after: dict[str, int], tokens: int) -> dict[str, float]:
    """What Redis did per relayed token between two ``redis_counts``."""
    return {k: round((v - before.get(k, 0)) / tokens, 2) for k, v in sorted(after.items())
            if v != before.get(k, 0) and tokens}


# -- latency: the common path and the cross-instance path --------------------------------------

@dataclass(frozen=True, slots=True)
class Elsewhere(Target):
    """Reads a stream made on another instance: ``GET`` its events here."""

    events_url: str = ""

    def request(self, model: str | list[str], tag: str, slots: int = 1) -> bytes:
        return (f"GET {self.events_url} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                "Accept: text/event-stream\r\n"
                f"Authorization: Bearer {self.key}\r\n\r\n").encode()


async def read_elsewhere(running: Target, reading: Target, model: str, label: str,
                         deadline_ns: int) -> StreamResult:
    """``POST /v1/streams`` (a ``201``) on the instance that runs it, then its events read
    on the other one, stamped as ``run_stream`` stamps them."""
    body = {"models": [f"fake/{model}"], "messages": [{"role": "user", "content": label}]}
    try:
        status, made, _ = await get_json(running.port, "/v1/streams", "POST", body)
    except (OSError, ConnectionError, ValueError, trio.TooSlowError) as exc:
        return StreamResult(reading.name, 1, error=f"{type(exc).__name__}: {exc}")
    if status != 201 or not isinstance(made, dict):
        return StreamResult(reading.name, 1, status=status, error=f"status {status}")
    target = Elsewhere(reading.name, reading.port, "chorus", events_url=made["events_url"])
    return await run_stream(target, model, label, deadline_ns=deadline_ns)


async def collect_elsewhere(running: Target, reading: Target, load: Load,
                            procs_read: list[Proc]) -> Sample:
    """``collect``'s closed loop, each stream read on the other instance; CPU of both."""
    results: list[StreamResult] = []
    start = time.monotonic_ns()
    stop_at = start + int(load.duration * 1e9)
    hard = stop_at + int(load.grace * 1e9)
    cpu0, ticks0 = sum(p.cpu() for p in procs_read), cpu_ticks()

    async def worker(delay: float) -> None:
        await trio.sleep(delay)
        while time.monotonic_ns() < stop_at:
            results.append(await read_elsewhere(running, reading, load.model, tag("X"), hard))

    async with trio.open_nursery() as nursery:
        for i in range(load.streams):
            nursery.start_soon(worker, load.stagger * i / load.streams)
    cpu = sum(p.cpu() for p in procs_read) - cpu0
    return Sample(results, (time.monotonic_ns() - start) / 1e9, cpu, cpu_ticks() - ticks0)


async def latency(ctx: Ctx, rounds: int, paths: dict[str, Server], b: Server, redis: Proc,
                  streams: int) -> dict[str, Any]:
    """Each path in turn, ``rounds`` times, under ``python -m bench``'s latency load with
    ``streams`` answers in flight; every round pooled (the page gives the stolen time beside
    them), with what Redis did per token meanwhile (commands, reads and CPU)."""
    p = ctx.plan
    load = Load(streams, 1, p.latency_model, p.latency_seconds, p.latency_grace, stagger=1.0)
    samples: dict[str, list[Sample]] = {name: [] for name in PATHS}
    counts: dict[str, tuple[dict[str, int], dict[str, int]]] = {}
    for _ in range(rounds):
        for name in PATHS:
            before = {**await redis_counts(redis.port), "cpu_us": round(redis.cpu() * 1e6)}
            if name == "redis-cross":
                a = paths["redis-local"]
                assert a.proc is not None
                assert b.proc is not None
                samples[name].append(await collect_elsewhere(a.target, b.target, load,
                                                             [a.proc, b.proc]))
            else:
                s = paths[name]
                samples[name].append(await collect(s.target, load, s.proc))
            after = {**await redis_counts(redis.port), "cpu_us": round(redis.cpu() * 1e6)}
            total, done = counts.get(name, ({}, {}))
            counts[name] = ({k: total.get(k, 0) + v for k, v in before.items()},
                            {k: done.get(k, 0) + v for k, v in after.items()})
    out = {name: pooled(x) for name, x in samples.items()}
    for name, x in out.items():
        x["redis_per_token"] = per_token(*counts[name], x["tokens"])
    return out


# -- CPU per relayed chunk at saturation ---------------------------------------------------------

async def saturation(ctx: Ctx, s: Server, redis: Proc) -> dict[str, Any]:
    """``python -m bench``'s saturation, with Redis's own CPU and commands over the same
    window."""
    before, counts = redis.cpu(), await redis_counts(redis.port)
    out = await scenarios.saturation(ctx, s)
    redis_cpu = redis.cpu() - before
    out["redis_cpu_s"] = round(redis_cpu, 3)
    out["redis_cpu_us_per_token"] = (round(redis_cpu / out["tokens"] * 1e6, 1)
                                     if out["tokens"] else None)
    out["redis_per_token"] = per_token(counts, await redis_counts(redis.port), out["tokens"])
    return out


# -- --workers 2 against one worker ---------------------------------------------------------------

def worker_cpu(proc: Proc) -> list[float]:
    """CPU seconds of each of the supervisor's workers (the processes it started), or of
    the process itself when it has none (one worker)."""
    assert proc.popen is not None
    return [cpu_seconds(c) for c in procs._descendants(proc.popen.pid)[1:]] or [proc.cpu()]


async def workers_saturation(ctx: Ctx, s: Server, streams: int, seconds: float,
                             others: list[Proc], stagger: float = 0.4) -> dict[str, Any]:
    """Saturation through ``s`` (its own CPU, each worker's, and the rest's: the upstream,
    Redis and this load generator), for the tokens it relays per second of its CPU. The
    streams start spread over ``stagger`` seconds: a burst of connections may all be
    accepted by whichever worker wakes first (``burst``, below, shows how they split)."""
    assert s.proc is not None
    model = model_name(0, 10_000_000, 0, max_s=seconds + 5)
    load = Load(streams, 1, model, 0.5, seconds, stagger=stagger)
    each0 = worker_cpu(s.proc)
    # This process's own CPU (not its children's: it started every server here).
    rest0 = sum(p.cpu() for p in others) + time.process_time()
    sample = await collect(s.target, load, s.proc)
    each = [round(x - y, 3) for x, y in zip(worker_cpu(s.proc), each0, strict=False)]
    out = summarise(sample.results, sample.wall, sample.cpu, sample.ticks)
    out["worker_cpu_s"] = each
    out["load_side_cpu_s"] = round(sum(p.cpu() for p in others) + time.process_time() - rest0,
                                   3)
    out["tokens_per_server_cpu_s"] = (round(out["tokens"] / sample.cpu) if sample.cpu
                                      else None)
    return out


def workers_ratios(one: dict[str, Any], two: dict[str, Any]) -> dict[str, Any]:
    """Two ways to read ``--workers 2`` against one worker on two shared cores: tokens per
    second as measured (but the load side shares the cores with the workers, and on a
    machine shared with other work two processes get twice one's share of it), and the
    work rate: tokens per second of server CPU, times the cores each could have to itself
    (one worker uses one core; two, two), which asks whether a second worker adds a core's
    worth of work or costs more per token."""
    raw = two["tokens_per_s"] / one["tokens_per_s"] if one["tokens_per_s"] else None
    rate1, rate2 = one["tokens_per_server_cpu_s"], two["tokens_per_server_cpu_s"]
    return {"tokens_per_s": None if raw is None else round(raw, 2),
            "work_rate": round(2 * rate2 / rate1, 2) if rate1 and rate2 else None}


# -- the run --------------------------------------------------------------------------------------

async def run_parts(ctx: Ctx, plan: ScalePlan, servers: dict[str, Server], redis: Proc,
                    results: dict[str, Any], log: Log) -> None:
    mem, a, b = servers["memory"], servers["redis-a"], servers["redis-b"]
    for s in (mem, a, b):
        await healthy(s.target.port)
    direct = Server("direct", Target("direct", ctx.upstream.port, "direct"), None)
    results["latency"] = {}
    for streams in plan.latency_streams:
        log(f"latency, {streams} streams, {plan.rounds} rounds per path")
        results["latency"][str(streams)] = await latency(
            ctx, plan.rounds, {"direct": direct, "memory": mem, "redis-local": a}, b, redis,
            streams)
    log("saturation")
    results["saturation"] = {name: await saturation(ctx, s, redis)
                             for name, s in (("memory", mem), ("redis", a))}
    log(f"stop, {ctx.plan.stop_trials} trials each")
    results["stop"] = {"memory": await scenarios.stop_latency(ctx, mem),
                       "redis-local": await scenarios.stop_latency(ctx, a),
                       "redis-cross": await scenarios.stop_latency(ctx, a, stop_via=b)}


def measure(plan: ScalePlan, results: dict[str, Any], log: Log) -> None:
    """Start every process, run each part into ``results``, stop them whatever happens."""
    workdir = HERE / "results" / "tmp" / "scale"
    workdir.mkdir(parents=True, exist_ok=True)
    cores, load_cores = procs.cpus()
    os.sched_setaffinity(0, load_cores)
    running: list[Proc] = []

    def start(*started: Proc) -> list[Proc]:
        """Each process started, at once (each is a Python importing Chorus: seconds)."""
        running.extend(started)
        with ThreadPoolExecutor(len(started)) as pool:
            return list(pool.map(lambda p: p.start(ready_timeout=60), started))

    try:
        upstream, redis = start(procs.upstream_proc(load_cores, workdir / "upstream.log"),
                                redis_proc(load_cores, workdir))
        up = upstream.port
        ctx = Ctx(plan.base, upstream, workdir, results["notes"])
        mem, a, b = start(
            procs.chorus_proc(up, cores, workdir, name="chorus-memory"),
            chorus_redis_proc(up, redis.port, cores, workdir, "chorus-redis-a"),
            chorus_redis_proc(up, redis.port, load_cores, workdir, "chorus-redis-b"))
        servers = {"memory": server("chorus-memory", mem), "redis-a": server("chorus-redis-a", a),
                   "redis-b": server("chorus-redis-b", b)}
        trio.run(run_parts, ctx, plan, servers, redis, results, log)
        for proc in (mem, a, b):
            proc.stop()

        log(f"--workers 2 and one worker, {plan.workers_streams} streams each")
        both = cores | load_cores
        results["workers"] = {}
        for n, proc in enumerate(start(*(chorus_redis_proc(up, redis.port, both, workdir,
                                                           f"chorus-w{n}", n)
                                         for n in (1, 2))), 1):
            s = server(f"chorus-w{n}", proc)
            trio.run(healthy, s.target.port, n)
            for label, stagger in ((str(n), 0.4), *([(f"{n}, burst", 0.0)] if n > 1 else [])):
                results["workers"][label] = trio.run(
                    workers_saturation, ctx, s, plan.workers_streams, plan.workers_seconds,
                    [upstream, redis], stagger)
            proc.stop()  # the other one waits idle meanwhile
        results["workers"]["ratio"] = workers_ratios(results["workers"]["1"],
                                                     results["workers"]["2"])
    finally:
        for proc in reversed(running):
            proc.stop()


# -- the page's section ---------------------------------------------------------------------------

NAMES = {"direct": "direct (floor)", "memory": "memory backend",
         "redis-local": "Redis, reader on the running instance",
         "redis-cross": "Redis, reader on the other instance"}


def _added(lat: dict[str, Any], name: str, key: str, q: str) -> float | None:
    return minus(_get(lat, name, key, q), _get(lat, "direct", key, q))


def _per(r: dict[str, Any], backend: str, key: str) -> float | None:
    """Redis's figure as a multiple of the memory backend's."""
    red, mem = _get(r, "saturation", backend, key), _get(r, "saturation", "memory", key)
    return round(red / mem, 2) if red and mem else None


def section(r: dict[str, Any]) -> list[str]:
    """The figures as the page's "Redis backend and workers" section."""
    m, p = r["machine"], r["plan"]
    L = ["## Redis backend and workers", "", "```", f".venv/bin/{r['command']}", "```", "",
         f"{r['seconds']} s on {m['cpu']}, {m['cores']} cores; load average (1/5/15 min) "
         f"{_loads(m['load_average_at_start'])} at the start, "
         f"{_loads(m.get('load_average_at_end'))} at the end; "
         f"stolen time {_f(m.get('steal_pct'), 1)} %.", ""]
    L += [f"> **Note:** {note}\n" for note in r.get("notes", [])]
    for streams, lat in (r.get("latency") or {}).items():
        L += _latency(p, int(streams), lat)
    sat = r.get("saturation") or {}
    L += [f"**CPU per relayed chunk at saturation**: {p['saturation_streams']} streams whose "
          f"upstreams send as fast as the socket takes, {p['saturation_seconds']} s, reader "
          "on the running instance. Chorus's CPU and Redis's, apart.", "",
          *_table(("backend", "tokens/s", "Chorus CPU µs per chunk", "times memory's",
                   "Redis CPU µs per chunk"), (
              (b, _f(x["tokens_per_s"], 0), _f(x["cpu_us_per_token"], 1),
               _f(_per(r, b, "cpu_us_per_token")) if b != "memory" else "—",
               _f(x["redis_cpu_us_per_token"], 1) if b != "memory" else "—")
              for b, x in sat.items()))]
    stop = r.get("stop") or {}
    L += ["**Stop** → the upstream sees its connection closed (ms).", "",
          *_table(("stream on", "stop sent to", "trials", "failed", "p50", "p99", "max",
                   "stop answered p50"), (
              ("memory", "the same process", *_stop(stop.get("memory"))),
              ("Redis, instance A", "A", *_stop(stop.get("redis-local"))),
              ("Redis, instance A", "B (pub/sub)", *_stop(stop.get("redis-cross")))))]
    w = r.get("workers") or {}
    L += [f"**`--workers 2` against one worker**, both on Redis, neither pinned: "
          f"{p['workers_streams']} saturation streams starting within 0.4 s (*burst*: all at "
          f"once), {p['workers_seconds']} s. *Load side*: the fake upstream, Redis and the "
          "load generator.", "",
          *_table(("workers", "tokens/s", "server CPU s", "cores it used",
                   "each worker's CPU s", "tokens per server CPU s", "load side CPU s"), (
              (n, _f(x["tokens_per_s"], 0), _f(x["server_cpu_s"]),
               _f(x["server_cpu_s"] / x["wall_s"] if x["wall_s"] else None),
               ", ".join(_f(c) for c in x["worker_cpu_s"]), x["tokens_per_server_cpu_s"],
               _f(x["load_side_cpu_s"])) for n, x in w.items() if n != "ratio")),
          f"Two workers against one: {_f(_get(w, 'ratio', 'tokens_per_s'))} times the tokens "
          f"per second as measured; {_f(_get(w, 'ratio', 'work_rate'))} times by work rate "
          "(tokens per server CPU second, times the cores each can use).", ""]
    return L


def _latency(p: dict[str, Any], streams: int, lat: dict[str, Any]) -> list[str]:
    def added(n: str, key: str) -> str:
        return f"{_f(_added(lat, n, key, 'p50'))} / {_f(_added(lat, n, key, 'p99'))}"

    counted = [(n, x["redis_per_token"]) for n, x in lat.items() if n.startswith("redis")]
    return [f"**Latency, {streams} streams**: {streams} answers `{p['latency_model']}` in "
            f"flight, closed loop, {p['latency_seconds']} s, {p['rounds']} rounds per path "
            "taking turns, pooled; ms; *added* is minus the floor. CPU: the server's (for the "
            "cross-instance path, both instances') per token.", "",
            *_table(("path", "streams", "TTFT lag p50", "p99", "added p50 / p99",
                     "chunk lag p50", "p99", "added p50 / p99", "CPU µs/token", "steal %",
                     "incomplete"), (
                (NAMES[n], x["streams"], _f(x["ttft_lag_ms"]["p50"], 3),
                 _f(x["ttft_lag_ms"]["p99"], 3), added(n, "ttft_lag_ms"),
                 _f(x["chunk_lag_ms"]["p50"], 3), _f(x["chunk_lag_ms"]["p99"], 3),
                 added(n, "chunk_lag_ms"),
                 "—" if n == "direct" else _f(x["cpu_us_per_token"], 0),
                 _f(x["steal_pct"], 1), x["streams"] - x["complete"]) for n, x in lat.items())),
            "What Redis did per relayed token meanwhile (*reads*: about one per pipeline or "
            "lone command sent to it; CPU: redis-server's own):", "",
            *_table(("path", "XADD", "PEXPIRE", "HSET", "XREAD", "PUBLISH", "reads",
                     "Redis CPU µs"), (
                (NAMES[n], *(_f(c.get(k, 0.0)) for k in ("xadd", "pexpire", "hset", "xread",
                                                          "publish", "reads")),
                 _f(c.get("cpu_us"), 1)) for n, c in counted))]


def _stop(x: dict[str, Any] | None) -> tuple[Any, ...]:
    if not x:
        return ("—",) * 6
    c = x["upstream_closed_ms"]
    return (x["trials"], x["failed"], _f(c["p50"], 3), _f(c["p99"], 3), _f(c["max"], 3),
            _f(x["stop_answered_ms"]["p50"], 3))


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m bench.scale", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="every part, tiny")
    parser.add_argument("--json", type=Path, default=HERE / "results" / "scale.json")
    parser.add_argument("--md", type=Path, default=HERE / "results" / "scale.md")
    args = parser.parse_args(argv)
    started = time.monotonic()

    def log(message: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {message}", flush=True)

    plan = ScalePlan.quick() if args.quick else ScalePlan()
    ticks = cpu_ticks()
    results: dict[str, Any] = {
        "machine": machine(), "notes": [],
        "command": "python -m bench.scale" + (" --quick" if args.quick else ""),
        "plan": {**plan.base.__dict__, "rounds": plan.rounds,
                 "latency_streams": plan.latency_streams,
                 "workers_streams": plan.workers_streams,
                 "workers_seconds": plan.workers_seconds}}
    measure(plan, results, log)
    results["machine"]["load_average_at_end"] = os.getloadavg()
    results["machine"]["steal_pct"] = (cpu_ticks() - ticks).steal_pct
    results["seconds"] = round(time.monotonic() - started, 1)
    for path in (args.json, args.md):
        path.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=1, default=str) + "\n")
    text = "\n".join(section(results)) + "\n"
    args.md.write_text(text)
    print(text)
    log(f"done: {args.json}, {args.md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
