"""Instructions the server executes per stream: a count that does not move with the machine.

    .venv/bin/python -m bench.instructions                 # this tree, 100 one-token streams
    .venv/bin/python -m bench.instructions --source /tmp/chorus-before --streams 200
    .venv/bin/python -m bench.instructions --slots 9       # nine models per stream
    .venv/bin/python -m bench.instructions --tokens 50 --gap 40   # 50 tokens, one a write
    .venv/bin/python -m bench.instructions --front openai  # through /v1/chat/completions

CPU time per stream moves by 20 % from one run to the next on a shared virtual machine,
more than most changes to a stream's setup are worth. Instructions do not: Chorus runs
under ``valgrind --tool=callgrind`` with counting off, a few streams warm it up, then the
counters run for ``--streams`` back-to-back one-token streams only (each on a fresh
connection, as the load generator makes them) and the total is divided by their number.
Runs of the same tree agree within 0.3 %. The count is the server process's alone (the
fake upstream and the client run outside valgrind); the kernel's work is not in it.

Needs valgrind (``apt-get install valgrind``); the server runs about 50 times slower under
it, so a run takes 20-30 s.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import trio

from . import procs
from .client import FRONTS, Target, add_front_option, run_stream
from .upstream import model_name

WARM_UP = 30
_SUMMARY = re.compile(rb"^summary:\s+(\d+)", re.MULTILINE)


def total_instructions(dump: bytes) -> int:
    """The ``summary:`` line of a callgrind output file: every instruction counted."""
    match = _SUMMARY.search(dump)
    if match is None:
        raise ValueError("no summary line: not a callgrind output file")
    return int(match.group(1))


async def _streams(target: Target, count: int, slots: int, model: str) -> None:
    for i in range(count):
        result = await run_stream(target, model, f"I{i}", slots,
                                  deadline_ns=time.monotonic_ns() + 60_000_000_000)
        if not result.complete:
            raise RuntimeError(f"stream {i} did not complete: {result.error}")


def _control(*args: str) -> None:
    subprocess.run(["callgrind_control", *args], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)


def measure(source: Path, streams: int, slots: int = 1, tokens: int = 1,
            gap_ms: float = 0.0, front: str = "streams") -> int:
    """Instructions per stream of ``slots`` slots answering ``tokens`` tokens ``gap_ms``
    apart, for the tree at ``source``, through ``front`` (a key of ``FRONTS``). One token
    at once (the default) is a stream that is all setup and teardown; tokens far enough
    apart are one write each."""
    model = model_name(0, tokens, gap_ms)
    server_cores, load_cores = procs.cpus()
    workdir = procs.ROOT / "bench" / "results" / "tmp"
    workdir.mkdir(parents=True, exist_ok=True)
    out = workdir / "callgrind.out"
    for old in workdir.glob("callgrind.out*"):
        old.unlink()
    upstream = procs.upstream_proc(load_cores, workdir / "instructions-upstream.log").start()
    chorus = procs.chorus_proc(upstream.port, server_cores, workdir, name="instructions",
                               source=source)
    chorus.argv = ["valgrind", "--tool=callgrind", "--instr-atstart=no",
                   f"--callgrind-out-file={out}", *chorus.argv]
    try:
        chorus.start(ready_timeout=300)
        target = Target("chorus", chorus.port, FRONTS[front])
        trio.run(_streams, target, WARM_UP if tokens == 1 else 3, slots, model)
        pid = str(chorus.pid)
        _control("--instr=on", pid)
        trio.run(_streams, target, streams, slots, model)
        _control("--dump", pid)
        _control("--instr=off", pid)
    finally:
        chorus.stop()
        upstream.stop()
    # The first dump holds the counted streams (the last, written at exit, the rest).
    return total_instructions(Path(f"{out}.1").read_bytes()) // streams


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.instructions",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--source", type=procs.source_tree, default=procs.ROOT,
                        help="the Chorus source tree to count (default: this one)")
    parser.add_argument("--streams", type=int, default=100, help="streams counted")
    parser.add_argument("--slots", type=int, default=1, help="models per stream (default 1)")
    parser.add_argument("--tokens", type=int, default=1, help="tokens per answer (default 1)")
    parser.add_argument("--gap", type=float, default=0.0,
                        help="milliseconds between tokens (under valgrind the server is ~50 "
                             "times slower: 40 keeps one token per write)")
    add_front_option(parser)
    args = parser.parse_args(argv)
    if args.front == "openai" and args.slots != 1:
        parser.error("--front openai streams one model (--slots 1)")
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        parser.error("valgrind is not installed (apt-get install valgrind)")
    per_stream = measure(args.source, args.streams, args.slots, args.tokens,
                         args.gap, args.front)
    print(f"{per_stream} instructions per stream of {args.slots} slot(s), {args.tokens} "
          f"token(s) {args.gap:g} ms apart, through {args.front} ({args.streams} streams, "
          f"{args.source})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
