"""A/B: one latency load against two versions of Chorus, in alternating runs.

    git worktree add /tmp/chorus-before <commit>
    .venv/bin/python -m bench.ab /tmp/chorus-before            # that commit (A) vs this tree (B)
    .venv/bin/python -m bench.ab /tmp/chorus-before --rounds 8 --streams 50 --seconds 6
    .venv/bin/python -m bench.ab /tmp/chorus-before --front openai   # /v1/chat/completions

One run of the 50-stream latency load moves by 10-20 % at p99 from one minute to the next on
a shared machine: more than most single changes are worth. So both servers are started side
by side (on the same core, only one of them under load at a time), the runs alternate
(A B, B A, A B, ...), and the medians of each side's per-run figures are compared. The
direct floor is the same for both sides and is not measured.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import trio

from . import procs
from .client import FRONTS, Target, add_front_option
from .load import Load, run_load
from .scenarios import Plan
from .stats import median


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ab", description=__doc__.split("\n")[0])
    parser.add_argument("before", type=procs.source_tree,
                        help="source tree of version A (e.g. a worktree)")
    parser.add_argument("--after", type=procs.source_tree, default=procs.ROOT,
                        help="source tree of version B (default: this one)")
    parser.add_argument("--rounds", type=int, default=6, help="runs per version (default 6)")
    parser.add_argument("--streams", type=int, default=50, help="streams open at once")
    parser.add_argument("--seconds", type=float, default=6.0, help="length of one run")
    add_front_option(parser)
    args = parser.parse_args(argv)
    server_cores, load_cores = procs.cpus()
    os.sched_setaffinity(0, load_cores)
    workdir = procs.ROOT / "bench" / "results" / "tmp"
    workdir.mkdir(parents=True, exist_ok=True)
    plan = Plan()
    load = Load(args.streams, 1, plan.latency_model, args.seconds, plan.latency_grace,
                stagger=1.0)
    upstream = procs.upstream_proc(load_cores, workdir / "ab-upstream.log").start()
    running = [upstream]
    runs: dict[str, list[dict[str, Any]]] = {"A": [], "B": []}
    try:
        servers = {}
        for side, tree in (("A", args.before), ("B", args.after)):
            servers[side] = procs.chorus_proc(upstream.port, server_cores, workdir,
                                              name=f"ab-{side}", source=tree.resolve()).start()
            running.append(servers[side])
        for i in range(args.rounds):
            for side in ("A", "B") if i % 2 == 0 else ("B", "A"):
                proc = servers[side]
                target = Target(side, proc.port, FRONTS[args.front])
                out = trio.run(run_load, target, load, proc)
                runs[side].append(out)
                lag = out["chunk_lag_ms"]
                print(f"run {i + 1} {side}: chunk lag p50 {lag['p50']} p99 {lag['p99']} ms, "
                      f"{out['cpu_us_per_token']} us CPU per token, {out['errors']} errors, "
                      f"{out['steal_pct']} % of the CPU time stolen", flush=True)
    finally:
        for proc in reversed(running):
            proc.stop()
    print(f"\nmedians of {args.rounds} runs each ({args.streams} streams, {args.seconds:g} s, "
          f"through {args.front}):")
    print("side | chunk lag p50 ms | chunk lag p99 ms | CPU us per token")
    for side, tree in (("A", args.before), ("B", args.after)):
        got = runs[side]
        p50 = median([r["chunk_lag_ms"]["p50"] for r in got])
        p99 = median([r["chunk_lag_ms"]["p99"] for r in got])
        cpu = median([r["cpu_us_per_token"] or 0.0 for r in got])
        print(f"{side} ({tree}) | {p50} | {p99} | {cpu}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
