"""``docs/benchmarks.md`` from the raw figures: the command, the machine, the targets and a
table per part. What was tried and why it was kept or not is ``bench/findings.md``, which
the page links to rather than repeats, so a re-run never loses it.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .stats import minus

# How each server under test is named on the page.
NAMES = {"direct": "direct (floor)", "chorus": "Chorus", "chorus-1": "Chorus, 1 slot",
         "chorus-3": "Chorus, 3 slots", "chorus-9": "Chorus, 9 slots",
         "chorus-oai": "Chorus, /v1/chat/completions", "litellm": "LiteLLM proxy",
         "relay": "bare relay (Quart-trio, Hypercorn, httpx)"}


def _f(value: Any, digits: int = 2) -> str:
    if value is None:
        return "—"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _get(d: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(d, dict) or key not in d:
            return None
        d = d[key]
    return d


def _table(header: Iterable[str], rows: Iterable[Iterable[Any]]) -> list[str]:
    header = list(header)
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(str(c) for c in row) + " |" for row in rows), ""]


def _c(r: dict[str, Any]) -> str:
    """The concurrency the latency targets are read at."""
    return str(r["plan"].get("target_concurrency", 50))


def _added(r: dict[str, Any], name: str, key: str, q: str) -> float | None:
    """``name``'s lag figure (``key``, quantile ``q``) at the targets' concurrency minus the
    floor's (the same client reading the fake upstream directly)."""
    return minus(_get(r, "latency", name, _c(r), key, q),
                 _get(r, "latency", "direct", _c(r), key, q))


def _vs_litellm(r: dict[str, Any], name: str) -> float | None:
    ours = _get(r, "saturation", name, "tokens_per_s")
    theirs = _get(r, "saturation", "litellm", "tokens_per_s")
    return round(ours / theirs, 1) if ours and theirs else None


def targets(r: dict[str, Any]) -> list[tuple[str, str, Any, bool | None]]:
    """(figure, target, measured, met?) for the summary table: the product's contract."""
    rows: list[tuple[str, str, Any, bool | None]] = []

    def row(name: str, value: Any, limit: float, unit: str, at_least: bool = False) -> None:
        met = None if value is None else (value >= limit if at_least else value <= limit)
        rows.append((name, f"{'≥' if at_least else '≤'} {limit}{unit}", value, met))

    for key, label, p50, p99 in (("ttft_lag_ms", "added TTFT", 1.0, 5.0),
                                 ("chunk_lag_ms", "added latency per chunk", 0.3, 1.0)):
        for q, limit in (("p50", p50), ("p99", p99)):
            row(f"{label} {q}, {_c(r)} streams (minus floor)",
                _added(r, "chorus-1", key, q), limit, " ms")
    row("CPU per relayed upstream chunk at saturation",
        _get(r, "saturation", "chorus-1", "cpu_us_per_token"), 60, " µs")
    row("throughput vs LiteLLM at saturation (times)", _vs_litellm(r, "chorus-1"), 10, "",
        at_least=True)
    row("9-slot wall time minus slowest slot alone",
        _get(r, "wall_time", "chorus_overhead_ms"), 5, " ms")
    for label, key in (("full_speed", "full speed"), ("1000_per_s", "1000 tokens/s each")):
        row(f"longest merge-loop wait behind producers (9 slots, {key}; CPU time)",
            _get(r, "merge", label, "probe", "cpu_max_ms"), 10, " ms")
    for mode, label in (("idle", ""), ("under_load", ", under load")):
        row(f"stop → upstream closed, p99{label}",
            _get(r, "stop", mode, "upstream_closed_ms", "p99"), 10, " ms")
    for mode, label in (("streaming", "mid-answer"), ("before_first_token", "before first token"),
                        ("backlogged", "while behind")):
        d = _get(r, "disconnect", "chorus-9", mode) or {}
        name = f"disconnect → every upstream closed ({label}, 9 slots), max"
        if d.get("never_closed"):  # no figure at all, and the target missed
            rows.append((name, "≤ 5 ms", f"{d['never_closed']} never closed", False))
        else:
            row(name, d.get("max"), 5, " ms")
    row("/healthz while streams are backlogged, max",
        _get(r, "disconnect", "chorus-9", "backlogged", "healthz_ms", "max"), 10, " ms")
    idle = _get(r, "memory", "chorus", "idle_kb")
    row("RSS idle", None if idle is None else round(idle / 1024, 1), 60, " MB")
    row("RSS per open idle stream", _get(r, "memory", "chorus", "kb_per_stream"), 64, " KB")
    return rows


# Where the sections that other bench commands write begin (agents, many streams, the
# Redis backend, the page): ``python -m bench`` rewrites the page above it and keeps them.
KEPT = ("<!-- The sections below are written by other bench commands; "
        "python -m bench keeps them. -->")


def write(r: dict[str, Any], out: Path, json_path: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    target = out / "benchmarks.md"
    old = target.read_text(encoding="utf-8") if target.exists() else ""
    kept = old[old.index(KEPT):] if KEPT in old else KEPT + "\n"
    target.write_text("\n".join(page(r, out, json_path)) + "\n\n" + kept, encoding="utf-8")


def page(r: dict[str, Any], out: Path, json_path: Path) -> list[str]:
    m, v = r["machine"], r["machine"]["versions"]
    try:
        json_rel = json_path.resolve().relative_to(out.resolve().parent)
    except ValueError:
        json_rel = json_path
    loads = ", ".join(f"{_loads(m.get(f'load_average_at_{k}'))} at the {k}"
                     for k in ("start", "end"))
    steal = m.get("steal_pct")
    L = ["# Benchmarks", "",
         "Measured from outside, through Chorus's HTTP API, by one command from the repository "
         "root (a few minutes; it installs LiteLLM into `bench/.venv-litellm` the first "
         "time):", "", "```",
         "make bench          # or: .venv/bin/python -m bench [--no-litellm] [--quick]",
         "```", "",
         f"This page was written by `{r['command']}` in {r['seconds']} s; the raw figures are "
         f"in [`{json_rel}`](../{json_rel}). What was tried to reach these figures, what it "
         "bought and why it was kept or not: [bench/findings.md](../bench/findings.md).", "",
         f"**Machine:** {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB, {m['os']}; "
         f"Python {v['python']}, trio {v['trio']}, Hypercorn {v.get('hypercorn')}, "
         f"Quart {v.get('quart')}, quart-trio {v.get('quart-trio')}, h11 {v['h11']}, "
         f"httpx {v['httpx']}. Load average (1/5/15 min) {loads}."
         + ("" if steal is None else f" Time stolen by the hypervisor (the cores had work, "
            f"another guest ran): {steal:.1f} % over the run."), "",
         "**Setup.** The server under test runs alone on one core, in its own process; the "
         "fake upstream (`bench/upstream.py`) and the load generator (`bench/client.py`, raw "
         "sockets) share the other. Every upstream token carries its send time "
         "(`time.monotonic_ns()`, one clock for all processes); a *lag* is the client's "
         "receive time minus that stamp. The floor is the same client reading the fake "
         "upstream directly; *added* figures subtract the floor's. Chorus runs as shipped "
         "(`python -m app serve`) with `resume_grace = 0` and the per-key rate and stream caps "
         "lifted; for the merge loop's waits, the same server under `python -m bench.probed`, "
         "which hands a trio instrument to `trio.run`. LiteLLM's proxy runs from its own venv, "
         "one worker; the bare relay (`bench/relay.py`) is Chorus's stack with nothing of "
         "Chorus: Quart-trio on Hypercorn and httpx, each upstream read written on as it "
         "comes.", ""]
    L += [f"> **Note:** {note}\n" for note in r.get("notes", [])]
    L += ["## Targets", ""]
    L += _table(("figure", "target", "measured", ""), (
        (name, target, _f(value), "—" if met is None else ("met" if met else "**not met**"))
        for name, target, value, met in targets(r)))
    for section in (_latency, _saturation, _wall, _stop, _disconnect, _memory, _merge):
        L += section(r)
    return L


def _loads(values: Any) -> str:
    return " / ".join(f"{x:.2f}" for x in values) if values else "—"


def _latency(r: dict[str, Any]) -> list[str]:
    plan, c = r["plan"], _c(r)
    lat = {n: x[c] for n, x in (r.get("latency") or {}).items() if c in x}
    if not lat:
        return []
    rounds, spare = plan.get("target_rounds", 1), plan.get("target_spare_rounds", 0)
    L = ["## Latency under load", "",
         f"Closed loop: {c} upstream answers in flight at once (for Chorus with k slots, {c}/k "
         f"streams of k slots), each `{plan['latency_model']}` (first token after 20 ms, then "
         f"50 tokens at 25/s), restarted as soon as it ends, for {plan['latency_seconds']} s. "
         "*TTFT lag*: the first token's lag; *chunk lag*: every later token's; milliseconds. "
         f"Each server runs {rounds + spare} such rounds, taking turns, and the table pools the "
         f"{rounds} in which the hypervisor stole the least CPU time (*steal*, from "
         "/proc/stat: chosen by that share alone, never by the figures; a stolen slice pauses "
         "everything on its core and lands in the tail). *Incomplete*: streams still running "
         f"when the run was cut ({plan['latency_grace']} s after the last start).", ""]
    L += _table(("server", "streams", "TTFT lag p50", "p99", "added p50 / p99", "chunk lag p50",
                 "p99", "added p50 / p99", "server CPU µs/token", "steal %", "incomplete"), (
        (NAMES.get(n, n), x["streams"], _f(x["ttft_lag_ms"]["p50"], 3),
         _f(x["ttft_lag_ms"]["p99"], 3),
         " / ".join(_f(_added(r, n, "ttft_lag_ms", q)) for q in ("p50", "p99")),
         _f(x["chunk_lag_ms"]["p50"], 3), _f(x["chunk_lag_ms"]["p99"], 3),
         " / ".join(_f(_added(r, n, "chunk_lag_ms", q)) for q in ("p50", "p99")),
         "—" if n == "direct" else _f(x["cpu_us_per_token"], 0), _f(x.get("steal_pct"), 1),
         x["streams"] - x["complete"]) for n, x in lat.items()))
    left = {n: x for n, x in lat.items() if x.get("all_rounds")}
    if left:
        L += ["The rounds left out, and what pooling every round would have shown:", ""]
        L += _table(("server", "steal % of the rounds left out", "chunk lag p99, all rounds",
                     "TTFT lag p99, all rounds", "steal %, all rounds"), (
            (NAMES.get(n, n), ", ".join(_f(s, 1) for s in x["left_out_steal_pct"]),
             _f(x["all_rounds"]["chunk_lag_ms"]["p99"], 3),
             _f(x["all_rounds"]["ttft_lag_ms"]["p99"], 3),
             _f(x["all_rounds"].get("steal_pct"), 1)) for n, x in left.items()))
    return L


def _saturation(r: dict[str, Any]) -> list[str]:
    sat = r.get("saturation") or {}
    if not sat:
        return []
    return ["## Throughput at saturation", "",
            f"{r['plan']['saturation_streams']} client streams whose upstreams send as fast as "
            f"the socket takes tokens, for {r['plan']['saturation_seconds']} s. CPU is the "
            "server process's (user + system, all threads) over the window, per token relayed "
            "to the client.", "",
            *_table(("server", "tokens/s relayed", "times LiteLLM's", "server CPU s",
                     "CPU µs per upstream chunk"), (
                (NAMES.get(n, n), _f(x["tokens_per_s"], 0),
                 "—" if n == "direct" else _f(_vs_litellm(r, n), 1),
                 "—" if n == "direct" else x["server_cpu_s"],
                 "—" if n == "direct" else _f(x["cpu_us_per_token"], 1))
                for n, x in sat.items()))]


def _wall(r: dict[str, Any]) -> list[str]:
    w = r.get("wall_time")
    if not w:
        return []
    return ["## Wall time of nine models", "",
            "Nine models with first tokens from 20 to 100 ms and 20 to 60 tokens at 100/s; "
            f"median of {r['plan']['wall_repeats']} runs, request sent to last byte (ms).", "",
            *_table(("slowest model alone, direct", "Chorus, the nine in one stream",
                     "Chorus minus slowest alone"),
                    [(w["slowest_alone_ms"], w["chorus_9_slots_ms"], w["chorus_overhead_ms"])])]


def _stop(r: dict[str, Any]) -> list[str]:
    s = r.get("stop") or {}
    if not s:
        return []
    return ["## Stop", "",
            "`POST /v1/streams/{id}/stop` sent → the fake upstream sees its connection closed "
            "(ms); *under load* with 20 other streams running.", "",
            *_table(("", "trials", "failed", "p50", "p99", "max", "stop answered p50"), (
                (k.replace("_", " "), x["trials"], x["failed"],
                 *(_f(x["upstream_closed_ms"][q], 3) for q in ("p50", "p99", "max")),
                 _f(x["stop_answered_ms"]["p50"], 3)) for k, x in s.items()))]


def _disconnect(r: dict[str, Any]) -> list[str]:
    d = r.get("disconnect") or {}
    if not d:
        return []
    modes = ("streaming", "before_first_token", "backlogged")
    L = ["## Disconnect, and the health check while behind", "",
         "The client closes its connection → the upstream sees every answer of the stream "
         "closed (ms; the worst slot of each trial). *Streaming*: after 3 tokens of a 100 "
         "tokens/s answer. *Before first token*: the model is still thinking, nothing is being "
         f"written. *Backlogged*: {r['plan'].get('backlog_streams')} clients with 4 KB receive "
         f"windows stopped reading {r['plan'].get('backlog_seconds')} s ago while their "
         "upstreams went on at 1000 tokens/s in all, so the server is behind them by "
         "thousands of tokens; then they leave one at a time. *Never closed*: still open "
         "3 s later.", ""]
    L += _table(("server", "situation", "trials", "p50", "p99", "max", "never closed"), (
        (NAMES.get(n, n), mode.replace("_", " "), x.get("trials"),
         *(_f(x[q], 3) for q in ("p50", "p99", "max")), x["never_closed"])
        for n, by in d.items() for mode, x in by.items() if mode in modes))
    hz = {n: by["backlogged"] for n, by in d.items() if _get(by, "backlogged", "healthz_ms")}
    if hz:
        L += ["The health check (`GET /healthz`; LiteLLM's `/health/liveliness`) while those "
              "streams are backlogged, and with nothing running (ms):", ""]
        L += _table(("server", "n", "p50", "p99", "max", "idle p50", "idle max"), (
            (NAMES.get(n, n), x["healthz_ms"]["n"],
             *(_f(x["healthz_ms"][q], 3) for q in ("p50", "p99", "max")),
             *(_f(_get(x, "healthz_idle_ms", q), 3) for q in ("p50", "max")))
            for n, x in hz.items()))
    return L


def _memory(r: dict[str, Any]) -> list[str]:
    mem = r.get("memory") or {}
    if not mem:
        return []
    return ["## Memory", "",
            "A fresh server: RSS idle, after one stream, and with many open slow streams "
            "(first token after 100 ms, then one every 10 s); then every client leaves at "
            "once.", "",
            *_table(("server", "idle MB", "after one stream MB", "streams open", "with them MB",
                     "KB per stream", "every upstream closed after the clients left (s)"), (
                (NAMES.get(n, n), _f(x["idle_kb"] / 1024, 1),
                 _f(x["after_one_stream_kb"] / 1024, 1), x["streams_open"],
                 _f(x["loaded_kb"] / 1024, 1), _f(x["kb_per_stream"], 1),
                 f"{x['all_upstreams_closed_after_clients_left_s']}"
                 + (f" ({x['upstream_answers_left_open']} still open)"
                    if x.get("upstream_answers_left_open") else ""))
                for n, x in mem.items()))]


def _merge(r: dict[str, Any]) -> list[str]:
    m = r.get("merge") or {}
    if not m:
        return []
    return ["## The merge loop under nine fast slots", "",
            "One stream of nine slots; the upstreams send as fast as they can (and, second "
            "row, at 1000 tokens/s each). `python -m bench.probed` runs Chorus with a trio "
            "instrument that times the stream's merge task from the moment it is runnable to "
            "the moment it runs: how long it waited behind the producers. *CPU* counts the "
            "work it waited behind (the server thread's CPU time meanwhile); *wall* also counts "
            "the moments the OS gave the core to another process. The token lag is the same "
            "question seen from outside (it includes the upstream's own socket buffers once "
            "the server is saturated).", "",
            *_table(("upstreams", "tokens", "merge wake-ups", "CPU wait p50 ms", "p99", "max",
                     "wall wait p99 ms", "max", "token lag p50 ms", "max"), (
                (label.replace("_", " "), x["tokens"], _get(x, "probe", "wakeups") or "—",
                 *(_f(_get(x, "probe", k), 3) for k in (
                     "cpu_p50_ms", "cpu_p99_ms", "cpu_max_ms", "wall_p99_ms", "wall_max_ms")),
                 _f(x["token_lag_ms"]["p50"], 1), _f(x["max_token_lag_ms"], 1))
                for label, x in m.items()))]
