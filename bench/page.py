"""Page speed: the browser page kept busy by many fast models, measured in headless Chromium.

A loopback upstream speaking the OpenAI protocol answers every request with the same
Markdown-heavy answer (headings, lists, a table, code, inline and display math), one word
per event at a fixed rate. Some words carry a stamp ``§<send time>x<request>.<seq>``: the
wall-clock moment the upstream wrote it, in units of 0.1 ms. In the page a MutationObserver
notes when each stamp first appears in the DOM (``performance.timeOrigin +
performance.now()``, the same machine clock as the upstream's ``time.time()``): the page
draws in animation frames, so that is the frame that paints it. Per turn, Chrome's own
main-thread task time (DevTools Protocol ``Performance.getMetrics``, TaskDuration, read
through Playwright's CDP session) gives the CPU per token, and a ``longtask``
PerformanceObserver counts tasks over 50 ms.

Run: ``python -m bench.page`` (9 panes, 200 tokens/s each, 50 turns; a few minutes). It
writes ``bench/page.json`` and ``docs/page-speed.md``. ``--panes``, ``--turns``, ``--rate``
make it smaller for a quick look; ``--upstream PORT`` runs only the upstream.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import h11
import trio

from bench.procs import ROOT, Proc, free_port
from providers.demo import _words

CHROMIUM = os.environ.get("CHORUS_CHROMIUM", "/usr/bin/chromium")
GOAL_LATENCY_MS = 50.0
GOAL_CPU_RATIO = 1.5
VENDOR = ("katex.js", "prism.js")  # the page's renderers of math and code
STAMP_EVERY = 3  # one word in this many carries a stamp (never inside math)

# The answer: every construct the renderer has, in proportions a technical answer has.
# Segments marked False are math: a stamp there would change the formula.
ANSWER: list[tuple[str, bool]] = [
    ("## Sorting a list of records\n\nTo sort the records by **score** and then by *name*, "
     "use a key function: the sort is `stable`, so equal keys keep their order. The cost is ",
     True), ("$O(n \\log n)$", False),
    (" comparisons, and the key is computed once per item.\n\n"
     "1. Load the records from the file.\n2. Build the key for each record.\n"
     "3. Sort, then write the result back.\n\n"
     "- a list of **dicts** works as well as a list of tuples;\n"
     "- [x] stable sort\n- [ ] in place, when memory is short\n\n"
     "```python\nfrom operator import itemgetter\n\n"
     "def ranked(records):\n    # highest score first, then by name\n"
     "    return sorted(records, key=lambda r: (-r['score'], r['name']))\n```\n\n"
     "| method | time | memory | stable |\n|:--|:-:|--:|:-:|\n"
     "| sorted() | fast | a copy | yes |\n| list.sort() | fast | in place | yes |\n"
     "| heapq.nlargest | for top k | small | no |\n\n"
     "The mean of the scores is ", True), ("$\\bar{x} = \\frac{1}{n}\\sum_{i=1}^{n} x_i$", False),
    (" and their spread is\n\n", True),
    ("$$\n\\sigma = \\sqrt{\\frac{1}{n-1}\\sum_{i=1}^{n} (x_i - \\bar{x})^2}\n$$\n\n", False),
    ("> Note: ~~sort twice~~ one sort with a tuple key is enough, see "
     "https://docs.python.org/3/howto/sorting.html for more.\n\n"
     "```js\nconst ranked = (rs) => [...rs].sort((a, b) => b.score - a.score ||\n"
     "  a.name.localeCompare(b.name));\n```\n\nThat is all it takes.\n", True),
]


def answer_words() -> list[tuple[str, bool]]:
    """The answer's words, each with whether a stamp may follow it."""
    return [(w, stampable) for text, stampable in ANSWER for w in _words(text)]


def stamp(request: int, seq: int) -> str:
    return f"§{int(time.time() * 10_000):x}x{request}.{seq}"


def stamped(word: str, request: int, seq: int) -> str:
    """``word`` with a stamp after its text (before its space or newline)."""
    body = word.rstrip(" \n")
    if not body or body.startswith(("```", "|", "$", "#")) or body.endswith("|"):
        return word  # markup: a stamp would change what it means
    return body + " " + stamp(request, seq) + word[len(body):]


class Upstream:
    """Answers ``POST /v1/chat/completions`` with the answer at ``rate`` words per second."""

    def __init__(self, rate: float) -> None:
        self.gap = 1.0 / rate
        self.requests = 0

    async def serve(self, port: int) -> None:
        await trio.serve_tcp(self.connection, port, host="127.0.0.1")

    async def connection(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                method, target = await self.read_request(conn, stream)
                if method is None:
                    return
                if method == b"POST" and target.endswith(b"/chat/completions"):
                    await self.answer(conn, stream)
                else:
                    body = json.dumps({"object": "list", "data": [{"id": "page"}]}).encode()
                    await send(conn, stream, h11.Response(status_code=200, headers=[
                        ("content-type", "application/json"),
                        ("content-length", str(len(body)))]))
                    await send(conn, stream, h11.Data(data=body))
                    await send(conn, stream, h11.EndOfMessage())
                if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    return
                conn.start_next_cycle()
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.RemoteProtocolError):
            return
        finally:
            await trio.aclose_forcefully(stream)

    async def read_request(self, conn: h11.Connection,
                           stream: trio.SocketStream) -> tuple[bytes | None, bytes]:
        """The method and target of the next request (its body is not needed), or None
        when the client has gone."""
        method: bytes | None = None
        target = b""
        while not isinstance(event := await next_event(conn, stream), h11.EndOfMessage):
            if isinstance(event, h11.ConnectionClosed):
                return None, b""
            if isinstance(event, h11.Request):
                method, target = event.method, event.target
        return method, target

    async def answer(self, conn: h11.Connection, stream: trio.SocketStream) -> None:
        self.requests += 1
        request = self.requests
        await send(conn, stream, h11.Response(status_code=200, headers=[
            ("content-type", "text/event-stream"), ("cache-control", "no-cache")]))
        start = trio.current_time()
        for seq, (word, stampable) in enumerate(answer_words()):
            await trio.sleep_until(start + seq * self.gap)
            text = stamped(word, request, seq) if stampable and seq % STAMP_EVERY == 0 else word
            await send(conn, stream, h11.Data(data=event_bytes({"content": text})))
        await send(conn, stream, h11.Data(data=event_bytes({}, finish="stop")))
        await send(conn, stream, h11.Data(data=b"data: [DONE]\n\n"))
        await send(conn, stream, h11.EndOfMessage())


def event_bytes(delta: dict[str, str], finish: str | None = None) -> bytes:
    chunk = {"id": "page", "object": "chat.completion.chunk", "model": "page",
             "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


async def next_event(conn: h11.Connection, stream: trio.SocketStream) -> Any:
    while (event := conn.next_event()) is h11.NEED_DATA:
        conn.receive_data(await stream.receive_some(65536))  # b"" at EOF: ConnectionClosed
    return event


async def send(conn: h11.Connection, stream: trio.SocketStream, event: Any) -> None:
    data = conn.send(event)
    if data:
        await stream.send_all(data)


# In the page: stamps as they first appear, and long tasks.
PROBE = r"""
(() => {
  const seen = (window.__stamps = new Map());
  const re = /§([0-9a-f]+)x(\d+\.\d+)/g;
  const scan = (text, now) => {
    if (!text || !text.includes('§')) return;
    for (const m of text.matchAll(re)) {
      if (!seen.has(m[2])) seen.set(m[2], [parseInt(m[1], 16) / 10, now]);
    }
  };
  new MutationObserver((records) => {
    const now = performance.timeOrigin + performance.now();
    for (const r of records) {
      if (r.type === 'characterData') scan(r.target.data, now);
      else for (const n of r.addedNodes) scan(n.textContent, now);
    }
  }).observe(document, {subtree: true, childList: true, characterData: true});
  // When a stamp reaches the page's JavaScript (the event feed's fetch() reader): the part
  // of the delay spent before the page, in the upstream, Chorus and the network stack.
  const arrived = (window.__arrived = new Map());
  const decoder = new TextDecoder();
  const read = ReadableStreamDefaultReader.prototype.read;
  ReadableStreamDefaultReader.prototype.read = function () {
    return read.call(this).then((r) => {
      const text = typeof r.value === 'string' ? r.value
        : r.value instanceof Uint8Array ? decoder.decode(r.value) : '';
      if (text.includes('§')) {
        const now = performance.timeOrigin + performance.now();
        for (const m of text.matchAll(re)) {
          if (!arrived.has(m[2])) arrived.set(m[2], now);
        }
      }
      return r;
    });
  };
  window.__longtasks = [];
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) window.__longtasks.push(e.duration);
  }).observe({type: 'longtask'});
})();
"""

TAKE = """() => {
  const out = {stamps: [...window.__stamps].map(([k, [sent, seen]]) =>
                 [sent, seen, window.__arrived.get(k) ?? null]),
               longtasks: window.__longtasks};
  window.__stamps.clear();
  window.__arrived.clear();
  window.__longtasks = [];
  return out;
}"""

FOCUS_PROMPT = "() => document.getElementById('prompt').focus()"

METRICS = ("TaskDuration", "ScriptDuration", "LayoutDuration", "RecalcStyleDuration")
FINDINGS = "<!-- findings: kept when the figures above are regenerated -->"


def chorus_config(upstream_port: int) -> str:
    return f"""\
[server]
resume_grace = 5.0
rate_limit = 0.0
max_streams = 200
max_streams_per_key = 200

[providers.fake]
type = "openai"
base_url = "http://127.0.0.1:{upstream_port}/v1"
models = ["page"]
retries = 0
"""


def run(panes: int, turns: int, rate: float, workdir: Path) -> dict[str, Any]:
    """Starts the upstream and Chorus, drives the page for ``turns`` turns, and returns
    the figures of every turn."""
    from playwright.sync_api import sync_playwright

    up_port = free_port()
    upstream = Proc("upstream", [sys.executable, "-m", "bench.page", "--upstream", str(up_port),
                                 "--rate", str(rate)], up_port, set(os.sched_getaffinity(0)),
                    log_path=workdir / "upstream.log").start()
    config = workdir / "chorus.toml"
    config.write_text(chorus_config(up_port))
    port = free_port()
    chorus = Proc("chorus", [sys.executable, "-m", "app", "serve", "--config", str(config),
                             "--port", str(port)], port, set(os.sched_getaffinity(0)),
                  log_path=workdir / "chorus.log")
    try:
        chorus.start()
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                        args=["--no-sandbox", "--disable-gpu"])
            try:
                return drive(browser, f"http://127.0.0.1:{port}", panes, turns)
            finally:
                browser.close()
    finally:
        chorus.stop()
        upstream.stop()


def drive(browser: Any, url: str, panes: int, turns: int) -> dict[str, Any]:
    words = len(answer_words())
    seed = json.dumps(json.dumps({"models": ["fake/page"] * panes}))
    context = browser.new_context(base_url=url, viewport={"width": 1600, "height": 1000})
    context.add_init_script(script=f"localStorage.setItem('chorus:settings', {seed});")
    context.add_init_script(script=PROBE)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto("/")
    page.wait_for_selector("body[data-models]", state="attached")
    cdp = context.new_cdp_session(page)
    cdp.send("Performance.enable", {"timeDomain": "threadTicks"})
    cdp.send("Profiler.enable")
    cdp.send("Profiler.setSamplingInterval", {"interval": 500})
    out: list[dict[str, Any]] = []
    profile: list[dict[str, Any]] = []
    kinds: list[dict[str, Any]] = []
    # One turn more than measured is profiled: where a late turn's main-thread time goes
    # (the profiler's own cost stays out of the measured turns).
    for turn in range(1, turns + 2):
        page.evaluate(TAKE)
        profiled = turn > turns
        if profiled:
            cdp.send("Profiler.start")
            browser.start_tracing(page=page, categories=["devtools.timeline"])
        before = metrics(cdp)
        # Typed through the keyboard into the focused prompt, not ``page.fill("#prompt")``:
        # Playwright's selector engine walks the whole DOM looking for shadow roots, a task
        # of 40 ms at turn 20 and more after, which the page would be charged for.
        page.evaluate(FOCUS_PROMPT)
        page.keyboard.insert_text(f"Turn {turn}: how do I sort records by score?")
        page.keyboard.press("Enter")
        page.wait_for_function("() => document.body.dataset.busy === 'true'",
                               timeout=10_000)
        page.wait_for_function("() => document.body.dataset.busy === 'false'",
                               timeout=120_000, polling=100)
        page.wait_for_timeout(50)  # the last frame
        after = metrics(cdp)
        if profiled:
            profile = self_times(cdp.send("Profiler.stop")["profile"])
            kinds = main_thread_kinds(json.loads(browser.stop_tracing()))
            break
        taken = page.evaluate(TAKE)
        lag = sorted(seen - sent for sent, seen, _ in taken["stamps"])
        before_page = sorted(at - sent for sent, _, at in taken["stamps"] if at is not None)
        in_page = sorted(seen - at for _, seen, at in taken["stamps"] if at is not None)
        tokens = words * panes
        cost = {k: after[k] - before[k] for k in METRICS}
        out.append({
            "turn": turn, "tokens": tokens, "stamps": len(lag),
            "lag_p50_ms": pct(lag, 50), "lag_p99_ms": pct(lag, 99),
            "lag_min_ms": round(lag[0], 1) if lag else None,
            "lag_max_ms": lag[-1] if lag else None, "lags_ms": [round(x, 1) for x in lag],
            "to_page_p50_ms": pct(before_page, 50), "to_page_p99_ms": pct(before_page, 99),
            "in_page_p50_ms": pct(in_page, 50), "in_page_p99_ms": pct(in_page, 99),
            "task_ms_per_token": 1000 * cost["TaskDuration"] / tokens,
            "script_ms_per_token": 1000 * cost["ScriptDuration"] / tokens,
            "layout_ms_per_token": 1000 * cost["LayoutDuration"] / tokens,
            "style_ms_per_token": 1000 * cost["RecalcStyleDuration"] / tokens,
            "longtasks": len(taken["longtasks"]),
            "longtask_max_ms": max(taken["longtasks"], default=0.0),
        })
        print(f"turn {turn}: lag p99 {out[-1]['lag_p99_ms']} ms, "
              f"{out[-1]['task_ms_per_token']:.3f} ms/token, {len(taken['longtasks'])} long tasks",
              file=sys.stderr)
    # The DOM the conversation left: the garbage collector traces all of it, and the browser
    # checks its boxes on every frame.
    nodes = page.evaluate("() => document.querySelectorAll('*').length")
    context.close()
    return {"turns": out, "errors": errors, "profile": profile, "kinds": kinds, "nodes": nodes}


def main_thread_kinds(trace: dict[str, Any], top: int = 12) -> list[dict[str, Any]]:
    """The page's main thread in a DevTools trace: self time by event name (Paint, Layout,
    FunctionCall, …), so the browser's own work is named, not just "(program)". The time
    is the thread's CPU time (``tdur``), not the wall-clock span (``dur``): on a loaded
    machine a span also counts the time the thread waited for a core, which made the same
    page's Paint vary twofold between runs."""
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    main = {(e["pid"], e["tid"]) for e in events
            if e.get("name") == "thread_name" and e["args"].get("name") == "CrRendererMain"}
    spans = sorted(((e["ts"], e["dur"], e.get("tdur", e["dur"]), e["name"]) for e in events
                    if e.get("ph") == "X" and (e.get("pid"), e.get("tid")) in main
                    and "dur" in e), key=lambda x: (x[0], -x[1]))
    spent: dict[str, float] = {}
    stack: list[tuple[float, str]] = []  # (end, name) of the open spans
    for ts, dur, cpu, name in spans:
        while stack and stack[-1][0] <= ts:
            stack.pop()
        if stack:  # time inside a child is not its parent's own
            parent = stack[-1][1]
            spent[parent] = spent.get(parent, 0.0) - cpu
        spent[name] = spent.get(name, 0.0) + cpu
        stack.append((ts + dur, name))
    busy = sum(spent.values())
    ranked = sorted(spent.items(), key=lambda kv: -kv[1])[:top]
    return [{"event": k, "ms": round(v / 1000, 1), "share": round(v / busy, 3)}
            for k, v in ranked]


def self_times(profile: dict[str, Any], top: int = 12) -> list[dict[str, Any]]:
    """The functions (and the browser's own work: "(program)", "(garbage collector)")
    that took the most main-thread time in a CPU profile, by self time."""
    by_id = {n["id"]: n for n in profile["nodes"]}
    spent: dict[str, float] = {}
    for node_id, delta in zip(profile["samples"], profile["timeDeltas"], strict=True):
        frame = by_id[node_id]["callFrame"]
        where = frame["url"].rsplit("/", 1)[-1]
        name = f"{frame['functionName'] or '(anonymous)'} {where}:{frame['lineNumber'] + 1}"
        name = name if where else frame["functionName"] or "(native, unnamed)"
        spent[name] = spent.get(name, 0.0) + delta / 1000
    busy = sum(v for k, v in spent.items() if k != "(idle)")
    ranked = sorted(((k, v) for k, v in spent.items() if k != "(idle)"), key=lambda kv: -kv[1])
    return [{"function": k, "ms": round(v, 1), "share": round(v / busy, 3)}
            for k, v in ranked[:top]]


def metrics(cdp: Any) -> dict[str, float]:
    got = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
    return {k: float(got.get(k, 0.0)) for k in METRICS}


def pct(values: list[float], q: float) -> float | None:
    """The q-th percentile of sorted ``values`` (nearest rank)."""
    if not values:
        return None
    k = max(0, min(len(values) - 1, math.ceil(q / 100 * len(values)) - 1))
    return round(values[k], 1)


def summarise(result: dict[str, Any], panes: int, turns: int, rate: float) -> dict[str, Any]:
    rows = result["turns"]
    lags = sorted(x for r in rows for x in r["lags_ms"])
    edge = max(1, min(3, len(rows) // 3))

    def mean(key: str, part: list[dict[str, Any]]) -> float:
        return statistics.fmean(r[key] for r in part)

    first, last = rows[0], rows[-1]
    summary = {
        "panes": panes, "turns": turns, "rate_per_pane": rate,
        "words_per_answer": len(answer_words()), "stamps": len(lags),
        "lag_p50_ms": pct(lags, 50), "lag_p99_ms": pct(lags, 99),
        "lag_max_ms": lags[-1] if lags else None,
        "to_page_p99_ms_first_last": [first["to_page_p99_ms"], last["to_page_p99_ms"]],
        "in_page_p99_ms_first_last": [first["in_page_p99_ms"], last["in_page_p99_ms"]],
        "within_50ms": round(sum(x <= GOAL_LATENCY_MS for x in lags) / max(1, len(lags)), 4),
        "longtasks": sum(r["longtasks"] for r in rows),
        "longtask_max_ms": max(r["longtask_max_ms"] for r in rows),
        "cpu_first_ms_per_token": round(first["task_ms_per_token"], 4),
        "cpu_last_ms_per_token": round(last["task_ms_per_token"], 4),
        "cpu_ratio_last_over_first": round(last["task_ms_per_token"]
                                           / first["task_ms_per_token"], 3),
        "cpu_ratio_last_over_first_mean3": round(
            mean("task_ms_per_token", rows[-edge:]) / mean("task_ms_per_token", rows[:edge]), 3),
        "last_turns_split_ms_per_token": {
            k: round(mean(k, rows[-edge:]), 4)
            for k in ("task_ms_per_token", "script_ms_per_token", "layout_ms_per_token",
                      "style_ms_per_token")},
        "first_turns_split_ms_per_token": {
            k: round(mean(k, rows[:edge]), 4)
            for k in ("task_ms_per_token", "script_ms_per_token", "layout_ms_per_token",
                      "style_ms_per_token")},
        "elements_at_end": result["nodes"],
        "page_errors": result["errors"],
        "last_turn_profile": result["profile"],
        "last_turn_main_thread": result["kinds"],
    }
    summary["goals_met"] = {
        "lag_p99_le_50ms": summary["lag_p99_ms"] is not None
        and summary["lag_p99_ms"] <= GOAL_LATENCY_MS,
        "cpu_ratio_le_1_5": summary["cpu_ratio_last_over_first"] <= GOAL_CPU_RATIO,
    }
    return summary


def doc(summary: dict[str, Any]) -> str:
    s = summary
    f, la = s["first_turns_split_ms_per_token"], s["last_turns_split_ms_per_token"]
    met = {k: "met" if ok else "**missed**" for k, ok in s["goals_met"].items()}
    longest = f"{s['longtask_max_ms']:.0f}"
    turns = f"turn 1 → {s['turns']}"
    to_page = " → ".join(str(x) for x in s["to_page_p99_ms_first_last"])
    in_page = " → ".join(str(x) for x in s["in_page_p99_ms_first_last"])
    load = " and ".join(str(x) for x in s["load_average"])
    rows = "\n".join(f"| `{p['function']}` | {p['ms']} | {100 * p['share']:.1f} % |"
                     for p in s["last_turn_profile"])
    kinds = "\n".join(f"| `{k['event']}` | {k['ms']} | {100 * k['share']:.1f} % |"
                      for k in s["last_turn_main_thread"])
    size = f"{s['panes']} panes, {s['rate_per_pane']:g} tokens/s each, {s['turns']} turns"
    p99 = f"{s['lag_p99_ms']} ms | ≤ 50 ms: {met['lag_p99_le_50ms']}"
    ratio = f"{s['cpu_ratio_last_over_first']} | ≤ 1.5: {met['cpu_ratio_le_1_5']}"
    return f"""# Page speed

How the browser page keeps up with many fast models over a long conversation, measured in
headless Chromium by `bench/page.py` (figures in `bench/page.json`):

```sh
.venv/bin/python -m bench.page   # {size}
```

A loopback upstream speaking the OpenAI protocol answers every pane with the same
Markdown-heavy answer ({s['words_per_answer']} words: headings, ordered, bullet and task
lists, a table, Python and JavaScript code, inline and display math), one word per event.
One word in {STAMP_EVERY} (never inside math) carries a stamp with the wall-clock moment
the upstream wrote it; a MutationObserver in the page notes when each stamp first appears
in the DOM, in the animation frame that paints it. Chrome's main-thread task time
(DevTools Protocol `Performance.getMetrics`, `TaskDuration`) is read before and after each
turn, and a `longtask` PerformanceObserver counts tasks over 50 ms. The upstream, Chorus
and Chromium share the machine's {s['cores']} cores; the load average was {load} (before,
after the run): above the core count, every process waited for a core.

| figure | value | goal |
|---|---|---|
| word drawn after the upstream sent it, p50 | {s['lag_p50_ms']} ms | |
| same, p99 ({s['stamps']} stamped words) | {p99} |
| same, worst | {s['lag_max_ms']} ms | |
| of which before the page read it (upstream, Chorus, network), p99, {turns} | {to_page} ms | |
| of which in the page (read to drawn), p99, {turns} | {in_page} ms | |
| words drawn within 50 ms | {100 * s['within_50ms']:.2f} % | |
| long tasks (> 50 ms), all turns | {s['longtasks']} (longest {longest} ms) | |
| main-thread CPU per token, turn 1 | {s['cpu_first_ms_per_token']:.3f} ms | |
| same, turn {s['turns']} | {s['cpu_last_ms_per_token']:.3f} ms | |
| turn {s['turns']} over turn 1 | {ratio} |
| last 3 turns over first 3 (less noise) | {s['cpu_ratio_last_over_first_mean3']} | |
| elements in the page after the last turn | {s['elements_at_end']} | |

Where the main thread's time goes, per token (first 3 turns → last 3 turns), as Chrome
counts it: script {f['script_ms_per_token']:.3f} → {la['script_ms_per_token']:.3f} ms,
style {f['style_ms_per_token']:.3f} → {la['style_ms_per_token']:.3f} ms, layout
{f['layout_ms_per_token']:.3f} → {la['layout_ms_per_token']:.3f} ms, all tasks
{f['task_ms_per_token']:.3f} → {la['task_ms_per_token']:.3f} ms.

One more turn, profiled (not counted above): its main-thread time by function (CPU
profile, self time; "(program)" is the browser's own work outside JavaScript: painting,
compositing, layout not forced by a script, event dispatch):

| function | ms | share |
|---|---|---|
{rows}

The same turn's main thread in a DevTools trace (`devtools.timeline`), self CPU time by
event:

| event | ms | share |
|---|---|---|
{kinds}
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.page",
                                     description="Page speed in headless Chromium.")
    parser.add_argument("--panes", type=int, default=9)
    parser.add_argument("--turns", type=int, default=50)
    parser.add_argument("--rate", type=float, default=200.0, help="words per second per pane")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "page.json")
    parser.add_argument("--doc", type=Path, default=ROOT / "docs" / "page-speed.md")
    parser.add_argument("--upstream", type=int, metavar="PORT", help="run only the upstream")
    args = parser.parse_args(argv)
    if args.upstream is not None:
        trio.run(Upstream(args.rate).serve, args.upstream)
        return 0
    if not 1 <= args.panes <= 9 or args.turns < 1 or args.rate <= 0:
        parser.error("--panes is 1 to 9, --turns and --rate are positive")
    missing = [name for name in VENDOR if not (ROOT / "app" / "static" / "vendor" / name).is_file()]
    if missing:
        # Without them the page shows code unhighlighted and formulas as TeX: far fewer
        # nodes, so its figures would not be the page's.
        parser.error(f"app/static/vendor/ lacks {', '.join(missing)}: run scripts/web-packages")
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="chorus-page-") as tmp:
        result = run(args.panes, args.turns, args.rate, Path(tmp))
    summary = summarise(result, args.panes, args.turns, args.rate)
    summary["load_average"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    summary["cores"] = os.cpu_count()
    turns = [{k: v for k, v in t.items() if k != "lags_ms"} for t in result["turns"]]
    args.out.write_text(json.dumps({"summary": summary, "turns": turns}, indent=1) + "\n")
    old = args.doc.read_text() if args.doc.exists() else ""
    kept = old[old.index(FINDINGS):] if FINDINGS in old else FINDINGS + "\n"
    args.doc.write_text(doc(summary) + "\n" + kept)
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
