"""Measure Chorus from outside, beside LiteLLM and the bare relay; write ``docs/benchmarks.md``.

    .venv/bin/python -m bench               # the full run (a few minutes on 2 cores)
    .venv/bin/python -m bench --quick       # a small run of every part (the smoke test's size)
    .venv/bin/python -m bench --no-litellm
    .venv/bin/python -m bench --page-only   # the page again from bench/benchmarks.json

The processes: the fake upstream and this load generator on one core, the server under test
alone on the other; fresh servers for the memory part, and Chorus under ``bench.probed``
for the merge loop's waits. Chorus is reached through its HTTP API only.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from argparse import ArgumentParser
from importlib.metadata import version
from pathlib import Path
from typing import Any

import trio

from . import litellm_env, procs, report, scenarios
from .client import Target
from .procs import Log
from .scenarios import Ctx, Plan, Server

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def machine() -> dict[str, Any]:
    """What the figures were measured on: the CPU, memory, OS and the stack's versions."""
    cpu, mem_kb = "unknown", 0
    for path, key in (("/proc/cpuinfo", "model name"), ("/proc/meminfo", "MemTotal")):
        try:
            line = next(x for x in Path(path).read_text().splitlines() if x.startswith(key))
        except (OSError, StopIteration):
            continue
        if key == "MemTotal":
            mem_kb = int(line.split()[1])
        else:
            cpu = line.split(":", 1)[1].strip()
    versions = {"python": platform.python_version()}
    for name in ("trio", "hypercorn", "quart", "quart-trio", "h11", "httpx"):
        versions[name] = version(name)
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gb": round(mem_kb / 1024 / 1024, 1),
            "os": platform.platform(), "versions": versions,
            "load_average_at_start": os.getloadavg()}


def server(name: str, proc: procs.Proc, slots: int = 1, kind: str = "") -> Server:
    """A server under test by its name: ``chorus-…`` (``/v1/streams``), ``relay``,
    ``litellm`` (with its master key); ``kind`` says otherwise (``chorus-oai``)."""
    kind = kind or name.split("-")[0]
    key = litellm_env.MASTER_KEY if kind == "litellm" else "sk-bench"
    return Server(name, Target(name, proc.port, kind, key=key), proc, slots)


async def run_all(ctx: Ctx, servers: dict[str, Server], results: dict[str, Any],
                  log: Log) -> None:
    """Every part that runs against the long-lived servers, in order."""
    direct, one, nine = servers["direct"], servers["chorus-1"], servers["chorus-9"]
    relayed = [s for s in servers.values() if s.name != "chorus-9"]
    peers = [s for s in servers.values() if s.name in ("chorus-oai", "litellm")]
    log(f"latency, {ctx.plan.target_concurrency} streams")
    results["latency"] = {name: {str(ctx.plan.target_concurrency): r} for name, r in
                          (await scenarios.latency(ctx, relayed)).items()}
    log("saturation")
    results["saturation"] = {s.name: await scenarios.saturation(ctx, s) for s in relayed}
    log("wall time of 9 models")
    results["wall_time"] = await scenarios.wall_time(ctx, direct, one)
    log("stop")
    results["stop"] = {"idle": await scenarios.stop_latency(ctx, one),
                       "under_load": await scenarios.stop_latency(ctx, one, one)}
    log("disconnect")
    results["disconnect"] = {s.name: await scenarios.disconnect(ctx, s, healthz=True)
                             for s in (nine, *peers)}


def measure(plan: Plan, with_litellm: bool, results: dict[str, Any], log: Log) -> None:
    """Start the processes, run every part into ``results``, and stop them whatever
    happens (every server is ours, started here)."""
    workdir = HERE / "results" / "tmp"
    workdir.mkdir(parents=True, exist_ok=True)
    notes: list[str] = results["notes"]
    cores, load_cores = procs.cpus()
    os.sched_setaffinity(0, load_cores)
    if with_litellm:
        log(f"LiteLLM: ensuring {litellm_env.SPEC} in {litellm_env.VENV.relative_to(ROOT)}")
        with_litellm, why = litellm_env.ensure_installed(workdir / "litellm-install.log")
        if not with_litellm:
            notes.append(f"LiteLLM left out: {why}")
    running: list[procs.Proc] = []

    def start(proc: procs.Proc) -> bool:
        running.append(proc)
        try:
            proc.start(ready_timeout=120)
        except (RuntimeError, TimeoutError) as exc:
            if proc.name != "litellm":
                raise
            notes.append(f"LiteLLM did not start: {exc}")
            return False
        return True

    try:
        start(upstream := procs.upstream_proc(load_cores, workdir / "upstream.log"))
        port = upstream.port
        ctx = Ctx(plan, upstream, workdir, notes)
        start(main := procs.chorus_proc(port, cores, workdir))
        start(relay := procs.relay_proc(port, cores, workdir))
        servers = {s.name: s for s in (
            Server("direct", Target("direct", port, "direct"), None), server("chorus-1", main),
            server("chorus-9", main, 9), server("chorus-oai", main, kind="chorus-oai"),
            server("relay", relay))}
        if with_litellm and start(ll := litellm_env.litellm_proc(port, cores, workdir)):
            servers["litellm"] = server("litellm", ll)
        trio.run(run_all, ctx, servers, results, log)
        for proc in running[1:]:
            proc.stop()

        log("memory (fresh servers)")
        results["memory"] = {}
        fresh = [procs.chorus_proc(port, cores, workdir, name="chorus-mem"),
                 procs.relay_proc(port, cores, workdir, name="relay-mem")]
        if "litellm" in servers:
            fresh.append(litellm_env.litellm_proc(port, cores, workdir))
        for proc in fresh:
            if not start(proc):
                continue
            name = proc.name.removesuffix("-mem")
            results["memory"][name] = trio.run(scenarios.memory, ctx, server(name, proc),
                                               plan.rss_streams)
            proc.stop()

        log("merge loop (9 slots, bench.probed)")
        probe = workdir / "merge-probe.jsonl"
        start(probed := procs.chorus_proc(port, cores, workdir, name="chorus-probe",
                                          retention=0.1, merge_probe=probe))
        results["merge"] = trio.run(scenarios.merge_wait, ctx, server("chorus-9", probed, 9),
                                    probe)
    finally:
        for proc in reversed(running):
            proc.stop()


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small run of every part")
    parser.add_argument("--no-litellm", action="store_true", help="leave LiteLLM out")
    parser.add_argument("--page-only", action="store_true",
                        help="measure nothing: write the page anew from the figures in --json")
    parser.add_argument("--out", type=Path, default=ROOT / "docs",
                        help="where benchmarks.md goes (default: docs/)")
    parser.add_argument("--json", type=Path, default=HERE / "benchmarks.json",
                        help="where the raw figures go")
    args = parser.parse_args(argv)
    if args.page_only:
        if args.quick or args.no_litellm:
            parser.error("--page-only measures nothing: it takes only --json and --out")
        try:
            measured = json.loads(args.json.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            print(f"python -m bench: cannot read the raw figures: {exc}", file=sys.stderr)
            return 2
        report.write(measured, args.out, args.json)
        print(f"{args.out}/benchmarks.md written from {args.json}")
        return 0
    started = time.monotonic()

    def log(message: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {message}", flush=True)

    plan = Plan.quick() if args.quick else Plan()
    ticks = procs.cpu_ticks()
    results: dict[str, Any] = {
        "machine": machine(), "plan": plan.__dict__, "notes": [],
        "command": " ".join(["python -m bench", *(["--quick"] if args.quick else []),
                             *(["--no-litellm"] if args.no_litellm else [])])}
    measure(plan, not args.no_litellm, results, log)
    results["machine"]["load_average_at_end"] = os.getloadavg()
    results["machine"]["steal_pct"] = (procs.cpu_ticks() - ticks).steal_pct
    results["seconds"] = round(time.monotonic() - started, 1)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=1, default=str) + "\n")
    report.write(results, args.out, args.json)
    for name, target, value, met in report.targets(results):
        log(f"  {'met' if met else 'NOT MET' if met is False else '—':7} {name}: {value} "
            f"(target {target})")
    log(f"done: {args.out}/benchmarks.md, {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
