"""Run every benchmark, then write ``docs/benchmarks.md``, its plots and the raw JSON.

    .venv/bin/python -m bench            # the full run (about 11 minutes on 2 cores)
    .venv/bin/python -m bench --quick    # a small run of every part (the smoke test's size)
    .venv/bin/python -m bench --no-litellm
    .venv/bin/python -m bench --page-only  # the page again from bench/benchmarks.json

The processes: the fake upstream and this load generator on one core, the server under test
alone on the other; a fresh Chorus for the memory and merge-probe parts.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import trio

from . import litellm_env, micro, procs, profile, report, scenarios
from .client import Target
from .scenarios import Ctx, Plan, Server

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def ensure_matplotlib(log: Any) -> None:
    """The plots need matplotlib; install it into this venv once if it is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        log("installing matplotlib into this venv (for the plots)")
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "matplotlib"],
                       check=False, timeout=600)


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    import h11
    import httpx
    import hypercorn
    import quart

    versions = {"python": platform.python_version(), "trio": trio.__version__,
                "hypercorn": getattr(hypercorn, "__version__", "?"),
                "quart": getattr(quart, "__version__", "?"), "h11": h11.__version__,
                "httpx": httpx.__version__}
    try:
        from importlib.metadata import version

        versions["hypercorn"] = version("hypercorn")
        versions["quart"] = version("quart")
        versions["quart-trio"] = version("quart-trio")
    except Exception:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gb": round(mem_kb / 1024 / 1024, 1),
            "os": platform.platform(), "versions": versions,
            "load_average_at_start": os.getloadavg()}


# The servers whose latency figures the targets are read from (Chorus minus the floor).
TARGET_SERVERS = frozenset({"direct", "chorus-1"})

PARTS = ("latency", "saturation", "wall", "stop", "disconnect", "wire", "memory", "merge",
         "micro")


async def run_all(ctx: Ctx, chorus: procs.Proc, relay: procs.Proc, litellm: procs.Proc | None,
                  results: dict[str, Any], log: Any) -> None:
    want = ctx.wants
    direct = Server("direct", Target("direct", ctx.upstream.port, "direct"), None)
    ch = [Server(f"chorus-{k}", Target(f"chorus-{k}", chorus.port, "chorus"), chorus, k)
          for k in (1, 3, 9)]
    # The same engine behind its OpenAI-compatible door: the like-for-like peer of LiteLLM.
    oai = Server("chorus-oai", Target("chorus-oai", chorus.port, "chorus-oai"), chorus)
    # The same frameworks with nothing of Chorus's own: what the stack alone costs.
    bare = Server("relay", Target("relay", relay.port, "relay"), relay)
    servers = [direct, *ch, oai, bare]
    peers = [oai]
    if litellm is not None:
        peers.append(Server("litellm", Target("litellm", litellm.port, "litellm",
                                              key=litellm_env.MASTER_KEY), litellm))
        servers.append(peers[-1])

    if want("latency"):
        log("latency under load")
        results["latency"] = await _latency(ctx, servers, log)
    if want("saturation"):
        log("saturation")
        results["saturation"] = await _saturation(ctx, servers, log)
        if ctx.profile:
            results["profile"] = await _profiles(ctx, chorus, ch[0], log)
    if want("wall"):
        log("wall time of 9 models")
        results["wall_time"] = await scenarios.wall_time(ctx, direct, ch[0])
        log(f"  {results['wall_time']['chorus_9_slots_ms']} ms vs slowest alone "
            f"{results['wall_time']['slowest_alone_ms']} ms, sequential "
            f"{results['wall_time']['sequential_ms']} ms, requests arrived "
            f"{results['wall_time']['upstream_requests_arrived_ms']} ms")
    if want("stop"):
        log("stop")
        results["stop"] = {"idle": await scenarios.stop_latency(ctx, ch[0]),
                           "under_load": await scenarios.stop_latency(ctx, ch[0], ch[0])}
        log(f"  upstream closed p99 {results['stop']['idle']['upstream_closed_ms']['p99']} ms "
            f"idle, {results['stop']['under_load']['upstream_closed_ms']['p99']} ms under load")
    if want("disconnect"):
        log("disconnect")
        disc = {}
        for s in (direct, ch[0], ch[2], *peers):
            disc[s.name] = await scenarios.disconnect(ctx, s, healthz=s.target.kind != "direct")
            d = disc[s.name]
            log(f"  {s.name:9} streaming max {d['streaming']['max']} ms, before first token "
                f"max {d['before_first_token']['max']} ms, backlogged max "
                f"{d['backlogged']['max']} ms (never closed: {d['backlogged']['never_closed']})")
        results["disconnect"] = disc
    if want("wire"):
        log("bytes on the wire")
        results["wire"] = {s.name: await scenarios.wire_bytes(ctx, s)
                           for s in (direct, ch[0], *peers)}


async def _latency(ctx: Ctx, servers: list[Server], log: Any) -> dict[str, Any]:
    lat: dict[str, dict[str, Any]] = {s.name: {} for s in servers}
    p = ctx.plan
    for c in p.concurrency:
        rounds, spare = ((p.target_rounds, p.target_spare_rounds)
                         if c == p.target_concurrency else (1, 0))
        if rounds + spare > 1:
            log(f"  c={c}: {rounds + spare} rounds, each server in turn; the {rounds} with the "
                "least stolen CPU time pooled; up to "
                f"{p.quiet_extra_rounds} more of {' and '.join(sorted(TARGET_SERVERS))} "
                f"while they have had fewer than {rounds} with at most {p.quiet_steal_pct} % "
                "stolen")
        extra = p.quiet_extra_rounds if c == p.target_concurrency else 0
        pooled = await scenarios.latency(ctx, servers, c, rounds, spare, quiet_for=TARGET_SERVERS,
                                         quiet_pct=p.quiet_steal_pct, extra=extra)
        for name, r in pooled.items():
            lat[name][str(c)] = r
            log(f"  {name:9} c={c:<4} ttft p50 {r['ttft_lag_ms']['p50']} ms, chunk p50 "
                f"{r['chunk_lag_ms']['p50']} p99 {r['chunk_lag_ms']['p99']} ms, "
                f"cpu/token {r['cpu_us_per_token']} us, steal {r['steal_pct']} %, "
                f"errors {r['errors']}, rounds run {r['rounds_run']}")
    return lat


async def _saturation(ctx: Ctx, servers: list[Server], log: Any) -> dict[str, Any]:
    sat = {}
    for s in servers:
        sat[s.name] = await scenarios.saturation(ctx, s)
        log(f"  {s.name:9} {sat[s.name]['tokens_per_s']} tokens/s, "
            f"{sat[s.name]['cpu_us_per_token']} us CPU/token")
    return sat


async def _profiles(ctx: Ctx, chorus: procs.Proc, one: Server, log: Any) -> dict[str, Any]:
    log("profiles (py-spy; separate runs, so the figures above carry no profiler)")
    out = {}
    for label, run in (("saturation", lambda: scenarios.saturation(ctx, one)),
                       ("50 streams", lambda: scenarios.latency(ctx, [one], 50))):
        raw = ctx.workdir / f"profile-{label.replace(' ', '-')}.txt"
        spy = profile.start(chorus.pid, ctx.plan.saturation_seconds, raw)
        await run()
        if spy is not None:
            await trio.to_thread.run_sync(spy.wait)
            out[label] = profile.summarise(raw)
    return out


async def run_memory(ctx: Ctx, server: Server, streams: int) -> dict[str, Any]:
    return await scenarios.memory(ctx, server, streams)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small run of every part")
    parser.add_argument("--no-litellm", action="store_true", help="leave LiteLLM out")
    parser.add_argument("--profile", action="store_true",
                        help="also record where Chorus's CPU goes (py-spy)")
    parser.add_argument("--only", metavar="PART,...", type=_parts,
                        help="run only these parts and print their figures, leaving the docs "
                        f"alone; parts: {', '.join(PARTS)}")
    parser.add_argument("--concurrency", type=int, nargs="+", metavar="N",
                        help="the concurrent streams of the latency part (default: 1 50 200)")
    parser.add_argument("--out", default=str(ROOT / "docs"),
                        help="where benchmarks.md and img/ go (default: docs/)")
    parser.add_argument("--json", default=str(HERE / "benchmarks.json"),
                        help="where the raw figures go")
    parser.add_argument("--page-only", action="store_true",
                        help="run nothing: write the page and plots anew from the raw figures "
                        "in --json (after an edit to bench/findings.md, say)")
    args = parser.parse_args(argv)
    if args.page_only:
        if args.quick or args.only or args.concurrency or args.no_litellm or args.profile:
            parser.error("--page-only measures nothing: it takes only --json and --out")
        return _page_only(Path(args.json), Path(args.out))
    plan = Plan.quick() if args.quick else Plan()
    if args.concurrency:
        plan = dataclasses.replace(plan, concurrency=tuple(args.concurrency))
    workdir = HERE / "results" / "tmp"
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()

    def log(message: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {message}", flush=True)

    ensure_matplotlib(log)
    ticks_at_start = procs.cpu_ticks()
    server_cores, load_cores = procs.cpus()
    os.sched_setaffinity(0, load_cores)
    results: dict[str, Any] = {"machine": machine(), "plan": plan.__dict__ | {
        "concurrency": list(plan.concurrency), "wire_lengths": list(plan.wire_lengths)},
        "command": "python -m bench" + (" --quick" if args.quick else "")
        + (" --no-litellm" if args.no_litellm else "")
        + (" --profile" if args.profile else ""), "notes": []}
    litellm_ok = False
    if not args.no_litellm:
        log(f"LiteLLM: ensuring {litellm_env.SPEC} in {litellm_env.VENV.relative_to(ROOT)}")
        litellm_ok, why = litellm_env.ensure_installed(workdir / "litellm-install.log")
        if not litellm_ok:
            results["notes"].append(f"LiteLLM left out: {why}")
            log(f"  {why}")
    upstream = procs.upstream_proc(load_cores, workdir / "upstream.log").start()
    ctx = Ctx(plan, upstream, workdir, profile=args.profile, only=args.only)
    want = ctx.wants
    if args.profile and profile.ensure_py_spy() is None:
        results["notes"].append("py-spy could not be installed: no profiles")
        ctx.profile = False
    running: list[procs.Proc] = [upstream]
    try:
        chorus = procs.chorus_proc(upstream.port, server_cores, workdir).start()
        running.append(chorus)
        relay = procs.relay_proc(upstream.port, server_cores, workdir).start()
        running.append(relay)
        litellm = None
        if litellm_ok:
            try:
                litellm = litellm_env.litellm_proc(upstream.port, server_cores, workdir)
                litellm.start(ready_timeout=120)
                running.append(litellm)
            except (RuntimeError, TimeoutError) as exc:
                results["notes"].append(f"LiteLLM did not start: {exc}")
                litellm = None
        trio.run(run_all, ctx, chorus, relay, litellm, results, log)
        for proc in (chorus, relay, litellm):
            if proc is not None:
                proc.stop()
        if want("memory"):
            results["memory"] = _memory(ctx, litellm_ok, server_cores, running, log)
        if want("merge"):
            log("merge loop probe (9 slots at full speed)")
            probe_file = workdir / "merge-probe.jsonl"
            probed = procs.chorus_proc(upstream.port, server_cores, workdir,
                                       name="chorus-probe",
                                       env={"CHORUS_MERGE_PROBE": str(probe_file)},
                                       retention=0.1)
            running.append(probed.start())
            results["merge"] = trio.run(scenarios.merge_wait, ctx, Server(
                "chorus-9", Target("chorus-9", probed.port, "chorus"), probed, 9), probe_file)
            probed.stop()
            for label, m in results["merge"].items():
                log(f"  {label}: probe {m['probe']}, max token lag {m['max_token_lag_ms']} ms")
    finally:
        for proc in reversed(running):
            proc.stop()
    if want("micro") and not args.quick:
        log("Chorus's own code, in-process")
        os.sched_setaffinity(0, server_cores)
        results["micro"] = micro.run_all()
    results["notes"] += ctx.notes
    results["machine"]["load_average_at_end"] = os.getloadavg()
    results["machine"]["steal_pct"] = (procs.cpu_ticks() - ticks_at_start).steal_pct
    results["seconds"] = round(time.monotonic() - started, 1)
    if args.only:
        out = workdir / "only.json"
        out.write_text(json.dumps(results, indent=1, default=str) + "\n")
        log(f"done in {results['seconds']} s: {out} (docs left as they were)")
        return 0
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=1, default=str) + "\n")
    report.write(results, Path(args.out), Path(args.json))
    log(f"done in {results['seconds']} s: {args.out}/benchmarks.md, {args.json}")
    return 0


def _page_only(json_path: Path, out: Path) -> int:
    """Write the page and plots from figures already measured: an edit to the findings
    reaches the page without an 11-minute run."""
    try:
        results = json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"python -m bench: cannot read the raw figures: {exc}", file=sys.stderr)
        return 2
    ensure_matplotlib(print)
    report.write(results, out, json_path)
    print(f"{out}/benchmarks.md written from {json_path}")
    return 0


def _parts(text: str) -> frozenset[str]:
    parts = frozenset(p.strip() for p in text.split(",") if p.strip())
    unknown = parts - set(PARTS)
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown part(s) {', '.join(sorted(unknown))}; "
                                         f"choose from {', '.join(PARTS)}")
    return parts


def _memory(ctx: Ctx, litellm_ok: bool, server_cores: set[int], running: list[procs.Proc],
            log: Any) -> dict[str, Any]:
    log("memory (fresh servers)")
    plan, upstream, workdir = ctx.plan, ctx.upstream, ctx.workdir
    mem = {}
    fresh = procs.chorus_proc(upstream.port, server_cores, workdir, name="chorus-mem")
    running.append(fresh.start())
    mem["chorus"] = trio.run(run_memory, ctx, Server(
        "chorus", Target("chorus", fresh.port, "chorus"), fresh), plan.rss_streams)
    fresh.stop()
    log(f"  chorus idle {mem['chorus']['idle_kb']} KB, {mem['chorus']['kb_per_stream']} "
        f"KB/stream over {mem['chorus']['streams_open']} streams")
    bare = procs.relay_proc(upstream.port, server_cores, workdir, name="relay-mem")
    running.append(bare.start())
    mem["relay"] = trio.run(run_memory, ctx, Server(
        "relay", Target("relay", bare.port, "relay"), bare), plan.rss_streams)
    bare.stop()
    log(f"  relay idle {mem['relay']['idle_kb']} KB, {mem['relay']['kb_per_stream']} KB/stream")
    if litellm_ok:
        ll = litellm_env.litellm_proc(upstream.port, server_cores, workdir)
        try:
            running.append(ll.start(ready_timeout=120))
            mem["litellm"] = trio.run(run_memory, ctx, Server(
                "litellm", Target("litellm", ll.port, "litellm",
                                  key=litellm_env.MASTER_KEY), ll),
                plan.rss_streams)
            log(f"  litellm idle {mem['litellm']['idle_kb']} KB, "
                f"{mem['litellm']['kb_per_stream']} KB/stream")
        except (RuntimeError, TimeoutError) as exc:
            ctx.notes.append(f"LiteLLM memory run failed: {exc}")
        finally:
            ll.stop()
    return mem


if __name__ == "__main__":
    sys.exit(main())
