"""``docs/benchmarks.md`` and its plots (``docs/img/bench-*.png``), from the raw figures.

The measured part of the page is generated; the findings (profile, optimisations) are kept
in ``bench/findings.md`` and included as they are, so a re-run never loses them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

# How each server under test is named on the page.
NAMES = {"direct": "direct (floor)", "chorus": "Chorus",
         "chorus-1": "Chorus, 1 slot", "chorus-3": "Chorus, 3 slots",
         "chorus-9": "Chorus, 9 slots",
         "chorus-oai": "Chorus, /v1/chat/completions", "litellm": "LiteLLM proxy",
         "relay": "bare relay (Quart-trio, Hypercorn, httpx)"}


def _f(value: Any, unit: str = "", digits: int = 2) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        value = f"{value:.{digits}f}"
    return f"{value}{unit}"


def _get(d: Any, *path: Any) -> Any:
    for key in path:
        if not isinstance(d, dict) or key not in d:
            return None
        d = d[key]
    return d


def _added(r: dict[str, Any], name: str, c: str, key: str, q: str) -> float | None:
    """``name``'s lag figure (``key``, quantile ``q``) at ``c`` streams minus the floor's."""
    v = _get(r, "latency", name, c, key, q)
    f = _get(r, "latency", "direct", c, key, q)
    return None if v is None or f is None else round(v - f, 3)


def targets(r: dict[str, Any]) -> list[tuple[str, str, Any, bool | None]]:
    """(figure, target, measured, met?) for the summary table."""
    rows: list[tuple[str, str, Any, bool | None]] = []

    def row(name: str, target: str, value: Any, limit: float | None) -> None:
        met = None if value is None or limit is None else value <= limit
        rows.append((name, target, value, met))

    c = "50" if "50" in (_get(r, "latency", "chorus-1") or {}) else None
    if c is None and _get(r, "latency", "chorus-1"):
        c = sorted(r["latency"]["chorus-1"], key=int)[-1]
    if c is not None:
        for key, label, p50, p99 in (("ttft_lag_ms", "added TTFT", 1.0, 5.0),
                                     ("chunk_lag_ms", "added latency per chunk", 0.3, 1.0)):
            for q, limit in (("p50", p50), ("p99", p99)):
                row(f"{label} {q}, {c} streams (minus floor)", f"≤ {limit} ms",
                    _added(r, "chorus-1", c, key, q), limit)
    sat = _get(r, "saturation", "chorus-1", "cpu_us_per_token")
    row("CPU per relayed upstream chunk at saturation", "≤ 60 µs", sat, 60)
    ll = _get(r, "saturation", "litellm", "tokens_per_s")
    ours = _get(r, "saturation", "chorus-1", "tokens_per_s")
    if ll and ours:
        rows.append(("throughput vs LiteLLM at saturation (times)", "≥ 10",
                     round(ours / ll, 1), ours / ll >= 10))
    row("9-slot wall time minus slowest slot alone", "≤ 5 ms",
        _get(r, "wall_time", "chorus_overhead_ms"), 5)
    for label, key in (("full_speed", "full speed"), ("1000_per_s", "1000 tokens/s each")):
        probe = _get(r, "merge", label, "probe", "cpu_max_ms")
        row(f"longest merge-loop wait behind producers (9 slots, {key}; CPU time)", "≤ 10 ms",
            probe, 10)
    row("stop → upstream closed, p99", "≤ 10 ms",
        _get(r, "stop", "idle", "upstream_closed_ms", "p99"), 10)
    row("stop → upstream closed, p99, under load", "≤ 10 ms",
        _get(r, "stop", "under_load", "upstream_closed_ms", "p99"), 10)
    for mode, label in (("streaming", "mid-answer"), ("before_first_token", "before first token"),
                        ("backlogged", "while behind")):
        d = _get(r, "disconnect", "chorus-9", mode) or {}
        value = None if d.get("never_closed") else d.get("max")
        row(f"disconnect → every upstream closed ({label}, 9 slots), max", "≤ 5 ms", value, 5)
    row("/healthz while streams are backlogged, max", "≤ 10 ms",
        _get(r, "disconnect", "chorus-9", "backlogged", "healthz_ms", "max"), 10)
    mem = _get(r, "memory", "chorus") or {}
    idle = mem.get("idle_kb")
    row("RSS idle", "≤ 60 MB", None if idle is None else round(idle / 1024, 1), 60)
    row("RSS per open idle stream", "≤ 64 KB", mem.get("kb_per_stream"), 64)
    return rows


def write(r: dict[str, Any], out: Path, json_path: Path) -> None:
    img = out / "img"
    img.mkdir(parents=True, exist_ok=True)
    plots = _plots(r, img)
    lines = _page(r, plots, out, json_path)
    (out / "benchmarks.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _page(r: dict[str, Any], plots: list[str], out: Path, json_path: Path) -> list[str]:
    m = r["machine"]
    v = m["versions"]
    try:
        json_rel = json_path.resolve().relative_to(out.resolve().parent)
    except ValueError:
        json_rel = json_path
    L = ["# Benchmarks", ""]
    L += ["Measured by one command, from the repository root (about 11 minutes; it installs "
          "LiteLLM into `bench/.venv-litellm` the first time):", "", "```",
          "make bench          # or: .venv/bin/python -m bench [--profile] [--no-litellm]",
          "```", "",
          f"This page was written by `{r['command']}` in {r['seconds']} s; the raw figures are "
          f"in [`{json_rel}`](../{json_rel}).", "",
          f"**Machine:** {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB, {m['os']}; "
          f"Python {v['python']}, trio {v['trio']}, Hypercorn {v.get('hypercorn')}, "
          f"Quart {v.get('quart')}, quart-trio {v.get('quart-trio')}, h11 {v['h11']}, "
          f"httpx {v['httpx']}. Load average from other work on the machine: "
          f"{_loads(m['load_average_at_start'])} at the start, "
          f"{_loads(m.get('load_average_at_end'))} at the end. "
          f"{_steal(m.get('steal_pct'))}", "",
          "**Setup.** The server under test runs alone on one core (CPU affinity), in its own "
          "process; the fake upstream (`bench/upstream.py`) and the load generator "
          "(`bench/client.py`, raw sockets) share the other core. Every upstream token carries "
          "its send time (`time.monotonic_ns()`, one clock for all processes); a *lag* is the "
          "client's receive time minus that stamp. The floor is the same client reading the "
          "fake upstream directly; *added* figures subtract the floor's figure. Chorus runs "
          "as shipped (`python -m app serve`) with `resume_grace = 0` and the per-key rate and "
          "stream caps lifted. LiteLLM's proxy runs from its own venv "
          "(`bench/.venv-litellm`), one worker, pointed at the same upstream. The bare relay "
          "(`bench/relay.py`) is Chorus's stack with nothing of Chorus: Quart-trio on "
          "Hypercorn, httpx's default client, each upstream read written on as it comes.", ""]
    for note in r.get("notes", []):
        L += [f"> **Note:** {note}", ""]
    L += ["## Targets", "", "| figure | target | measured | |", "|---|---|---|---|"]
    for name, target, value, met in targets(r):
        mark = "—" if met is None else ("met" if met else "**not met**")
        L.append(f"| {name} | {target} | {_f(value)} | {mark} |")
    L += [""]
    L += _bare_section(r)
    L += _latency_section(r)
    L += _saturation_section(r)
    L += _wall_section(r)
    L += _stop_section(r)
    L += _memory_section(r)
    L += _merge_section(r)
    L += _wire_section(r)
    L += _micro_section(r)
    L += _profile_section(r)
    L += ["## Plots", ""] + [f"![{p}](img/{p})" for p in plots] + [""]
    findings = HERE / "findings.md"
    if findings.exists():
        L += [findings.read_text(encoding="utf-8").rstrip(), ""]
    return L


def _bare_section(r: dict[str, Any]) -> list[str]:
    """Chorus beside its own frameworks doing nothing but relay, from the same run."""
    c = str(r["plan"].get("target_concurrency", 50))
    if not _get(r, "latency", "relay", c):
        return []
    names = [n for n in ("chorus-1", "chorus-oai", "relay") if _get(r, "latency", n, c)]

    def added(name: str, key: str, q: str) -> Any:
        return _added(r, name, c, key, q)

    def mb(name: str) -> Any:
        kb = _get(r, "memory", "chorus" if name == "chorus-1" else name, "idle_kb")
        return None if kb is None else round(kb / 1024, 1)

    rows = [(f"added TTFT p50 / p99, {c} streams (ms)",
             lambda n: f"{_f(added(n, 'ttft_lag_ms', 'p50'))} / "
                       f"{_f(added(n, 'ttft_lag_ms', 'p99'))}"),
            (f"added latency per chunk p50 / p99, {c} streams (ms)",
             lambda n: f"{_f(added(n, 'chunk_lag_ms', 'p50'))} / "
                       f"{_f(added(n, 'chunk_lag_ms', 'p99'))}"),
            ("time stolen by the hypervisor in those rounds (%)",
             lambda n: _f(_get(r, "latency", n, c, "steal_pct"), digits=1)),
            (f"server CPU per token, {c} streams (µs)",
             lambda n: _f(_get(r, "latency", n, c, "cpu_us_per_token"), digits=0)),
            ("CPU per upstream chunk at saturation (µs)",
             lambda n: _f(_get(r, "saturation", n, "cpu_us_per_token"), digits=1)),
            ("tokens/s relayed at saturation",
             lambda n: _f(_get(r, "saturation", n, "tokens_per_s"), digits=0)),
            ("RSS idle (MB)", lambda n: _f(mb(n), digits=1) if n != "chorus-oai" else "—")]
    L = ["## Beside the bare stack", "",
         "The same run's figures for Chorus and for its frameworks alone relaying the same "
         "answers (the bare relay: no parsing, merging, event log, metrics, stop or resume). "
         "The relay's column is what this stack costs on this machine when it does nothing "
         "but pass bytes on; Chorus does more per token and spends less, because its hot "
         "path goes around the frameworks' per-chunk machinery (see the findings below). "
         "The CPU figures are the steady comparison; the lags' tails follow the time the "
         "hypervisor stole during each server's rounds, shown beside them.", "",
         "| figure | " + " | ".join(NAMES.get(n, n) for n in names) + " |",
         "|---|" + "---|" * len(names)]
    for label, cell in rows:
        L.append(f"| {label} | " + " | ".join(cell(n) for n in names) + " |")
    return [*L, ""]


def _steal(pct: float | None) -> str:
    if pct is None:
        return ""
    return (f"Time stolen by the hypervisor (the cores had work, another guest ran): "
            f"{pct:.1f} % over the run.")


def _loads(values: Any) -> str:
    if not values:
        return "—"
    return " / ".join(f"{x:.2f}" for x in values) + " (1/5/15 min)"


def _latency_section(r: dict[str, Any]) -> list[str]:
    lat = r.get("latency") or {}
    if not lat:
        return []
    plan = r["plan"]
    L = ["## Latency under load", "",
         f"Closed loop: *c* upstream answers in flight at once (for Chorus with k slots, c/k "
         f"streams of k slots), each answer `{plan['latency_model']}` (first token after "
         f"20 ms, then 50 tokens at 25/s), restarted as soon as it ends, for "
         f"{plan['latency_seconds']} s. *TTFT lag*: the first token's lag; *chunk lag*: every "
         "later token's. Milliseconds. A server whose CPU per token times the token rate "
         "(25 per second per answer) exceeds its core falls behind, and its lags grow for as "
         "long as the run lasts; *incomplete* counts the streams still running when the run "
         "was cut "
         f"({plan['latency_grace']} s after the last start)."
         + _rounds_text(plan), "",
         "*Steal*: the share of the cores' time that the hypervisor gave to other guests "
         "during the runs (from /proc/stat, every core: the server's and the load's are "
         "both on a token's path). Each stolen slice pauses everything on its core, and "
         "lands in the tail.", "",
         "| server | c | streams run | TTFT lag p50 | p99 | chunk lag p50 | p99 | max | "
         "server CPU µs/token | steal % | incomplete |",
         "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, by_c in lat.items():
        for c, x in by_c.items():
            L.append(f"| {NAMES.get(name, name)} | {c} | {x['streams']} | "
                     f"{_f(x['ttft_lag_ms']['p50'], digits=3)} | "
                     f"{_f(x['ttft_lag_ms']['p99'], digits=3)} | "
                     f"{_f(x['chunk_lag_ms']['p50'], digits=3)} | "
                     f"{_f(x['chunk_lag_ms']['p99'], digits=3)} | "
                     f"{_f(x['chunk_lag_ms']['max'], digits=1)} | "
                     f"{_cpu(name, x)} | "
                     f"{_f(x.get('steal_pct'), digits=1)} | "
                     f"{x['streams'] - x['complete']} |")
    left = [(name, c, x) for name, by_c in lat.items() for c, x in by_c.items()
            if x.get("all_rounds")]
    if left:
        L += ["", "The rounds left out, and what pooling every round would have shown:", "",
              "| server | c | steal % of the rounds left out | chunk lag p99, all rounds | "
              "TTFT lag p99, all rounds | steal %, all rounds |",
              "|---|---|---|---|---|---|"]
        for name, c, x in left:
            a = x["all_rounds"]
            L.append(f"| {NAMES.get(name, name)} | {c} | "
                     f"{', '.join(_f(v, digits=1) for v in x['left_out_steal_pct'])} | "
                     f"{_f(a['chunk_lag_ms']['p99'], digits=3)} | "
                     f"{_f(a['ttft_lag_ms']['p99'], digits=3)} | "
                     f"{_f(a.get('steal_pct'), digits=1)} |")
    return [*L, ""]


def _rounds_text(plan: dict[str, Any]) -> str:
    rounds = plan.get("target_rounds", 1)
    spare = plan.get("target_spare_rounds", 0)
    if rounds + spare <= 1:
        return ""
    text = (f" At c = {plan['target_concurrency']}, where the targets are read, every server "
            f"runs {rounds + spare} such rounds, taking turns")
    if not spare:
        return text + (", and the table pools them: one round's p99 moves by 10-20 % from "
                       "one minute to the next on this machine.")
    text += (f", and the table pools the {rounds} in which the hypervisor stole the "
             "least CPU time (chosen by that share alone, never by the figures): on a "
             "shared virtual machine a round with a fifth of the time stolen had ten "
             "times the p99 of a round with none.")
    extra = plan.get("quiet_extra_rounds", 0)
    if extra:
        text += (f" The floor and Chorus with one slot, whose figures the targets are read "
                 f"from, run up to {extra} more rounds each while fewer than {rounds} of "
                 f"theirs had at most {plan.get('quiet_steal_pct')} % of the time stolen "
                 "(stolen time comes in spells).")
    return text + " The rounds left out are listed below the table."


def _cpu(name: str, x: dict[str, Any]) -> str:
    """CPU per token, where the window holds enough CPU time to mean something (/proc counts
    in 10 ms ticks)."""
    if name == "direct" or (x.get("server_cpu_s") or 0) < 0.5:
        return "—"
    return _f(x["cpu_us_per_token"], digits=0)


def _saturation_section(r: dict[str, Any]) -> list[str]:
    sat = r.get("saturation") or {}
    if not sat:
        return []
    L = ["## Throughput at saturation", "",
         f"{r['plan']['saturation_streams']} client streams whose upstreams send as fast as "
         "the socket takes tokens, for "
         f"{r['plan']['saturation_seconds']} s. CPU is the server process's (user + system, all "
         "threads) over the window, per token relayed to the client.", "",
         "| server | tokens/s relayed | server CPU s | CPU µs per upstream chunk |",
         "|---|---|---|---|"]
    for name, x in sat.items():
        cpu = "—" if name == "direct" else _f(x["cpu_us_per_token"], digits=1)
        L.append(f"| {NAMES.get(name, name)} | {_f(x['tokens_per_s'], digits=0)} | "
                 f"{'—' if name == 'direct' else x['server_cpu_s']} | {cpu} |")
    return [*L, ""]


def _wall_section(r: dict[str, Any]) -> list[str]:
    w = r.get("wall_time")
    if not w:
        return []
    return ["## Wall time of nine models", "",
            "Nine models with first tokens from 20 to 100 ms and 20 to 60 tokens at 100/s. "
            f"Median of {r['plan']['wall_repeats']} runs, request sent to last byte.", "",
            "| | ms |", "|---|---|",
            f"| slowest model alone, direct | {w['slowest_alone_ms']} |",
            f"| Chorus, the nine in one stream | {w['chorus_9_slots_ms']} |",
            f"| the nine at once, direct (nine connections) | {w.get('direct_parallel_ms')} |",
            f"| sequential fan-out (one after another, direct) | {w['sequential_ms']} |",
            f"| Chorus minus slowest alone | {w['chorus_overhead_ms']} |", "",
            "Where Chorus's extra time goes (median run): the nine upstream requests arrived "
            f"{w.get('upstream_requests_arrived_ms')} ms after the client sent its request, "
            "and the stream ended at the client "
            f"{w.get('last_token_to_stream_end_ms')} ms after the slowest model's last token.",
            ""]


def _stop_section(r: dict[str, Any]) -> list[str]:
    L = ["## Stop and disconnect", ""]
    s = r.get("stop") or {}
    if s:
        L += ["`POST /v1/streams/{id}/stop` sent → the fake upstream sees its connection "
              "closed (ms); *under load* with 20 other streams running.", "",
              "| | trials | failed | p50 | p99 | max | stop answered p50 |",
              "|---|---|---|---|---|---|---|"]
        for k, x in s.items():
            u = x["upstream_closed_ms"]
            L.append(f"| {k.replace('_', ' ')} | {x['trials']} | {x['failed']} | "
                     f"{_f(u['p50'], digits=3)} | {_f(u['p99'], digits=3)} | "
                     f"{_f(u['max'], digits=3)} | "
                     f"{_f(x['stop_answered_ms']['p50'], digits=3)} |")
        L += [""]
    d = r.get("disconnect") or {}
    if d:
        L += ["The client closes its connection → the upstream sees every answer of the "
              "stream closed (ms; the worst slot of each trial). *Mid-answer*: after 3 tokens "
              "of a 100 tokens/s answer. *Before first token*: the model is still thinking, "
              "nothing is being written. *Backlogged*: "
              f"{r['plan'].get('backlog_streams')} clients with 4 KB receive windows stopped "
              f"reading {r['plan'].get('backlog_seconds')} s ago while their upstreams went on "
              "at 1000 tokens/s in all (250/s per answer with 1 slot, 28/s with 9), so the "
              "server is behind them by thousands of tokens; then they leave one at a time; "
              "*full speed*: the same with upstreams as fast as they "
              "can go, so the server's core (and the fake upstream's) is saturated as well. "
              "*never closed*: still open 3 s later.", "",
              "| server | situation | trials | p50 | p99 | max | never closed |",
              "|---|---|---|---|---|---|---|"]
        for name, modes in d.items():
            for mode, x in modes.items():
                trials = x.get("trials", x.get("streams"))
                L.append(f"| {NAMES.get(name, name)} | {mode.replace('_', ' ')} | {trials} | "
                         f"{_f(x['p50'], digits=3)} | {_f(x['p99'], digits=3)} | "
                         f"{_f(x['max'], digits=3)} | {x['never_closed']} |")
        L += [""]
        hz = [(n, mode, _get(m, mode, "healthz_ms")) for n, m in d.items()
              for mode in ("backlogged", "backlogged_full_speed")]
        hz = [(n, mode, h) for n, mode, h in hz if h]
        if hz:
            L += ["The health check (`GET /healthz`; LiteLLM's `/health/liveliness`) while "
                  "those streams are backlogged (ms):", "",
                  "| server | situation | n | p50 | p99 | max | with nothing running: p50 | "
                  "max |", "|---|---|---|---|---|---|---|---|"]
            for n, mode, h in hz:
                i = _get(d, n, mode, "healthz_idle_ms") or {}
                L.append(f"| {NAMES.get(n, n)} | {mode.replace('_', ' ')} | {h['n']} | "
                         f"{_f(h['p50'], digits=3)} | {_f(h['p99'], digits=3)} | "
                         f"{_f(h['max'], digits=3)} | {_f(i.get('p50'), digits=3)} | "
                         f"{_f(i.get('max'), digits=3)} |")
            L += [""]
    return L


def _memory_section(r: dict[str, Any]) -> list[str]:
    mem = r.get("memory") or {}
    if not mem:
        return []
    L = ["## Memory", "",
         "A fresh server: RSS when idle, after one stream, and with many open slow streams "
         "(first token after 100 ms, then one every 10 s). Then every client leaves at once.",
         "", "| server | idle MB | after one stream MB | streams open | with them MB | "
         "KB per stream | every upstream closed after the clients left (s) |",
         "|---|---|---|---|---|---|---|"]
    for name, x in mem.items():
        L.append(f"| {NAMES.get(name, name)} | {x['idle_kb'] / 1024:.1f} | "
                 f"{x['after_one_stream_kb'] / 1024:.1f} | {x['streams_open']} | "
                 f"{x['loaded_kb'] / 1024:.1f} | {_f(x['kb_per_stream'], digits=1)} | "
                 f"{x['all_upstreams_closed_after_clients_left_s']}{_left(x)} |")
    return [*L, ""]


def _left(x: dict[str, Any]) -> str:
    left = x.get("upstream_answers_left_open")
    return f" ({left} still open)" if left else ""


def _merge_section(r: dict[str, Any]) -> list[str]:
    m = r.get("merge") or {}
    if not m:
        return []
    L = ["## The merge loop under nine full-speed slots", "",
         "One stream of nine slots; the upstreams send as fast as they can (and, second row, "
         "at 1000 tokens/s each). The probe (`CHORUS_MERGE_PROBE`, a trio instrument, off "
         "unless set) times the stream's merge task from the moment it is runnable to the "
         "moment it runs: how long it waited behind the producers. *CPU* counts the work it "
         "waited behind (the process's CPU time meanwhile); *wall* also counts the moments the "
         "OS gave the core to another process. The token lag is the same question seen from "
         "outside (it includes the upstream's own socket buffers once the server is saturated).",
         "",
         "| upstreams | tokens | merge wake-ups | CPU wait p50 ms | p99 | max | "
         "wall wait p99 ms | max | token lag p50 ms | max |",
         "|---|---|---|---|---|---|---|---|---|---|"]
    for label, x in m.items():
        p = x.get("probe") or {}
        L.append(f"| {label.replace('_', ' ')} | {x['tokens']} | {p.get('wakeups', '—')} | "
                 f"{_f(p.get('cpu_p50_ms'), digits=3)} | {_f(p.get('cpu_p99_ms'), digits=3)} | "
                 f"{_f(p.get('cpu_max_ms'), digits=3)} | {_f(p.get('wall_p99_ms'), digits=3)} | "
                 f"{_f(p.get('wall_max_ms'), digits=3)} | "
                 f"{_f(x['token_lag_ms']['p50'], digits=1)} | "
                 f"{_f(x['max_token_lag_ms'], digits=1)} |")
    return [*L, ""]


def _wire_section(r: dict[str, Any]) -> list[str]:
    w = r.get("wire") or {}
    if not w:
        return []
    lengths = list(next(iter(w.values())).keys())
    L = ["## Bytes on the wire", "",
         "Every byte the client received (headers, chunked framing, events) per byte of "
         "answer text, for answers of n tokens of 4 bytes at 1000 tokens/s. Flat with length: "
         "nothing is re-sent.", "",
         "| server | " + " | ".join(f"n = {n}" for n in lengths) + " |",
         "|---|" + "---|" * len(lengths)]
    for name, by_n in w.items():
        L.append(f"| {NAMES.get(name, name)} | "
                 + " | ".join(_f(by_n[n]["per_text_byte"])
                              + ("" if by_n[n]["complete"] else " (incomplete)")
                              for n in lengths) + " |")
    return [*L, ""]


def _micro_section(r: dict[str, Any]) -> list[str]:
    m = r.get("micro") or {}
    if not m:
        return []
    return ["## Chorus's own code, per token (in-process)", "",
            "`python -m bench.micro`: no sockets, CPU time on the server's core. The engine "
            "rows run a slot task, the channel, the merge task, the log and a reader "
            "(`Stream.follow`) with a provider that yields one token per scheduler step (a "
            "slow upstream: every token is its own event and write) or fifty (a full read).",
            "", "| piece | µs per token | writes |", "|---|---|---|",
            f"| OpenAI parser, one event per read | {m['parser_1_per_read_us']} | |",
            f"| OpenAI parser, ten events per read | {m['parser_10_per_read_us']} | |",
            *[f"| engine, {label} | {m[key]['us_per_token']} | {m[key]['writes']} "
              f"for {m[key]['tokens']} tokens |"
              for key, label in (("engine_1_slot_1_per_step", "1 slot, 1 token per step"),
                                 ("engine_9_slots_1_per_step", "9 slots, 1 token per step"),
                                 ("engine_1_slot_50_per_step", "1 slot, 50 tokens per step"))],
            ""]


def _profile_section(r: dict[str, Any]) -> list[str]:
    prof = r.get("profile") or {}
    if not prof:
        return []
    L = ["## Where Chorus's CPU goes (py-spy, this run)", "",
         "Samples of the Chorus process (`--profile`), grouped by the deepest frame that "
         "belongs to a known library; percentages of samples.", ""]
    for label, x in prof.items():
        if not x.get("samples"):
            continue
        L += [f"**{label}** ({x['samples']} samples):", "", "| group | % |", "|---|---|"]
        L += [f"| {g} | {v} |" for g, v in x["groups"].items()]
        L += ["", "Hottest frames (self time): " + "; ".join(
            f"`{f}` {v}%" for f, v in x["hottest"][:8]), ""]
    return L


def _plots(r: dict[str, Any], img: Path) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    made = []
    lat = r.get("latency") or {}
    if lat:
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        for ax, key, title in ((axes[0], "ttft_lag_ms", "first-token lag"),
                               (axes[1], "chunk_lag_ms", "per-chunk lag")):
            for i, (name, by_c) in enumerate(lat.items()):
                cs = list(by_c)
                for q, style in (("p50", "-o"), ("p99", ":x")):
                    ys = [max(by_c[c][key][q] or 1e-3, 1e-3) for c in cs]
                    ax.plot([int(c) for c in cs], ys, style, color=f"C{i}",
                            label=f"{NAMES.get(name, name)} {q}")
            ax.set_xscale("log")
            xs = sorted({int(c) for by_c in lat.values() for c in by_c})
            ax.set_xticks(xs, [str(x) for x in xs])
            ax.minorticks_off()
            ax.set_yscale("log")
            ax.set_xlabel("upstream answers in flight")
            ax.set_ylabel("ms (log)")
            ax.set_title(title)
            ax.grid(True, which="both", alpha=0.3)
        axes[1].legend(fontsize=6, ncol=2)
        fig.tight_layout()
        fig.savefig(img / "bench-latency.png", dpi=110)
        plt.close(fig)
        made.append("bench-latency.png")
    sat = r.get("saturation") or {}
    if sat:
        names = [n for n in sat if n != "direct"]
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
        axes[0].bar([NAMES.get(n, n) for n in names], [sat[n]["tokens_per_s"] or 0 for n in names])
        axes[0].set_title("tokens/s relayed at saturation")
        axes[1].bar([NAMES.get(n, n) for n in names],
                    [sat[n]["cpu_us_per_token"] or 0 for n in names], color="tab:orange")
        axes[1].set_title("server CPU µs per upstream chunk")
        for ax in axes:
            ax.tick_params(axis="x", labelsize=7, rotation=15)
            ax.grid(True, axis="y", alpha=0.3)
        fig.tight_layout()
        fig.savefig(img / "bench-throughput.png", dpi=110)
        plt.close(fig)
        made.append("bench-throughput.png")
    w = r.get("wall_time")
    if w:
        fig, ax = plt.subplots(figsize=(6, 3))
        labels = ["slowest alone", "Chorus, 9 at once", "sequential"]
        vals = [w["slowest_alone_ms"], w["chorus_9_slots_ms"], w["sequential_ms"]]
        ax.barh(labels, vals, color=["tab:gray", "tab:blue", "tab:red"])
        ax.set_xlabel("ms")
        ax.set_title("wall time, nine models")
        fig.tight_layout()
        fig.savefig(img / "bench-walltime.png", dpi=110)
        plt.close(fig)
        made.append("bench-walltime.png")
    d = r.get("disconnect") or {}
    if d:
        fig, ax = plt.subplots(figsize=(9, 3.6))
        modes = ["streaming", "before_first_token", "backlogged", "backlogged_full_speed"]
        width = 0.8 / len(d)
        for i, (name, x) in enumerate(d.items()):
            vals = []
            for mode in modes:
                m = x.get(mode, {})
                vals.append(3000.0 if m.get("never_closed") else (m.get("max") or 0.0))
            ax.bar([j + i * width for j in range(len(modes))], [max(v, 0.01) for v in vals],
                   width, label=NAMES.get(name, name))
        ax.set_xticks([j + width * (len(d) - 1) / 2 for j in range(len(modes))])
        ax.set_xticklabels(["mid-answer", "before first token", "backlogged",
                            "backlogged, full speed"])
        ax.set_yscale("log")
        ax.set_ylabel("ms to upstream closed (max; 3000 = never)")
        ax.legend(fontsize=7)
        ax.grid(True, axis="y", alpha=0.3)
        fig.tight_layout()
        fig.savefig(img / "bench-disconnect.png", dpi=110)
        plt.close(fig)
        made.append("bench-disconnect.png")
    wire = r.get("wire") or {}
    if wire:
        fig, ax = plt.subplots(figsize=(6, 3.4))
        for name, by_n in wire.items():
            ns = list(by_n)
            ax.plot([int(n) for n in ns], [by_n[n]["per_text_byte"] for n in ns], "-o",
                    label=NAMES.get(name, name))
        ax.set_xscale("log")
        ax.set_xlabel("answer length (tokens)")
        ax.set_ylabel("wire bytes per text byte")
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=7)
        ax.grid(True, alpha=0.3)
        fig.tight_layout()
        fig.savefig(img / "bench-wire.png", dpi=110)
        plt.close(fig)
        made.append("bench-wire.png")
    return made
