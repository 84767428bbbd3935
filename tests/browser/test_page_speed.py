"""The page-speed benchmark (bench/page.py) at a tiny size: 2 panes, 3 turns.

It runs as it does for real (``python -m bench.page``: a loopback upstream and Chorus as
subprocesses, the real page in headless Chromium) and must produce, for every turn, stamped
words seen in the page, their delays, the main-thread time per token and the long tasks;
then the summary and the page of docs built from them.

And what made the page fast must keep it usable: a pane still shows the newest text while a
model streams, leaves a reader who scrolled up where they are, and a send brings them
back. And it must stay fast as the chat grows: finished turns are never written to
again, and they are skipped out of view in groups, so the boxes the browser checks each
frame stay few.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from playwright.sync_api import Browser

from bench.page import answer_words, main_thread_kinds, pct, stamped

from ..conftest import Server, StartServer
from .chorus_page import ChorusPage
from .conftest import CHROMIUM, RunInBrowser

pytestmark = pytest.mark.browser
ROOT = Path(__file__).resolve().parents[2]


def test_stamps_go_after_words_and_never_into_markup() -> None:
    assert stamped("score ", 3, 12).startswith("score §")
    assert stamped("score ", 3, 12).endswith("x3.12 ")
    assert stamped("sorted\n", 1, 2).endswith("x1.2\n")
    for markup in ("```python\n", "| a |", "$x$ ", "## ", "|\n"):
        assert stamped(markup, 1, 1) == markup
    assert not any(stampable for word, stampable in answer_words() if "\\" in word)


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert pct(values, 50) == 50.0
    assert pct(values, 99) == 99.0
    assert pct([7.0], 99) == 7.0
    assert pct([], 50) is None


def test_a_tiny_run_measures_every_turn(tmp_path: Path) -> None:
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM}")
    out, doc = tmp_path / "page.json", tmp_path / "page-speed.md"
    subprocess.run([sys.executable, "-m", "bench.page", "--panes", "2", "--turns", "3",
                    "--out", str(out), "--doc", str(doc)],
                   cwd=ROOT, check=True, timeout=240, capture_output=True)
    figures = json.loads(out.read_text())
    turns, summary = figures["turns"], figures["summary"]
    assert [t["turn"] for t in turns] == [1, 2, 3]
    for t in turns:
        assert t["tokens"] == 2 * len(answer_words())
        # Every stamped word of both panes was seen in the page, none before it was sent.
        sent = sum(1 for i, (w, ok) in enumerate(answer_words()) if ok and i % 3 == 0
                   and stamped(w, 1, i) != w)
        assert t["stamps"] == 2 * sent
        # The upstream stamps with the system clock and the page reads timeOrigin + now():
        # two readings of one clock that may disagree by a few milliseconds, never by more.
        assert t["lag_min_ms"] >= -20
        assert t["task_ms_per_token"] > 0
        # A long task is one over 50 ms (PerformanceObserver ``longtask``): the longest is one.
        assert (t["longtasks"] == 0) == (t["longtask_max_ms"] == 0.0)
        assert t["longtask_max_ms"] == 0.0 or t["longtask_max_ms"] >= 50
    assert summary["page_errors"] == []
    assert summary["stamps"] == sum(t["stamps"] for t in turns)
    assert summary["longtasks"] == sum(t["longtasks"] for t in turns)
    assert summary["cpu_ratio_last_over_first"] == pytest.approx(
        turns[-1]["task_ms_per_token"] / turns[0]["task_ms_per_token"], rel=0.01)
    assert set(summary["goals_met"]) == {"lag_p99_le_50ms", "cpu_ratio_le_1_5"}
    # Four answers per pane (three turns and the profiled one) are left in the page.
    assert summary["elements_at_end"] > 2 * 4 * 100
    text = doc.read_text()
    assert "python -m bench.page" in text
    assert f"{summary['lag_p99_ms']} ms" in text
    assert f"| {summary['elements_at_end']} |" in text


def test_trace_self_time_is_the_threads_cpu_time_not_the_wall_clock() -> None:
    """A span's time waiting for a core is not work: Paint that took 9 ms of wall clock
    but 3 ms of the thread's CPU counts 3, less its child's CPU time."""
    main = {"pid": 1, "tid": 7}
    trace = {"traceEvents": [
        {**main, "ph": "M", "name": "thread_name", "args": {"name": "CrRendererMain"}},
        {**main, "ph": "X", "name": "Paint", "ts": 0, "dur": 9000, "tdur": 3000},
        {**main, "ph": "X", "name": "Layout", "ts": 1000, "dur": 4000, "tdur": 1000},
        {"pid": 1, "tid": 8, "ph": "X", "name": "Paint", "ts": 0, "dur": 5000, "tdur": 5000},
    ]}
    assert main_thread_kinds(trace) == [
        {"event": "Paint", "ms": 2.0, "share": 0.667},
        {"event": "Layout", "ms": 1.0, "share": 0.333},
    ]


# Where pane 0's newest answer ends, against its scroller's visible box (viewport pixels).
NEWEST = """() => {
  const body = document.querySelector('.pane[data-slot="0"] .pane-body');
  const answers = body.querySelectorAll('.answer');
  const box = body.getBoundingClientRect();
  return { overflow: body.scrollHeight - body.clientHeight, top: box.top, bottom: box.bottom,
           end: answers[answers.length - 1].getBoundingClientRect().bottom,
           chars: answers[answers.length - 1].textContent.length };
}"""


def newest_in_view(at: dict[str, float]) -> bool:
    return at["top"] < at["end"] <= at["bottom"] + 1


async def test_a_pane_keeps_the_newest_text_in_view_and_a_send_brings_the_reader_back(
    chorus: Server, in_browser: RunInBrowser
) -> None:
    def scenario(browser: Browser) -> None:
        with ChorusPage(browser, chorus.url, models=["demo/steady"],
                        viewport={"width": 700, "height": 420}) as ui:
            ui.open()
            for n in (1, 2):
                ui.send(f"Question {n}")
                ui.wait_states("done")
            at = ui.page.evaluate(NEWEST)
            assert at["overflow"] > 200  # two answers are taller than the pane
            assert newest_in_view(at), at

            # While the model streams, each new piece of text is in view as it lands.
            ui.send("Question 3")
            seen = 0
            for _ in range(3):
                ui.page.wait_for_function(
                    f"() => ({NEWEST})().chars > {seen + 40}", timeout=10_000)
                at = ui.page.evaluate(NEWEST)
                assert newest_in_view(at), at
                seen = int(at["chars"])
            ui.wait_states("done")
            assert newest_in_view(ui.page.evaluate(NEWEST))

            # A reader who scrolls up while the model streams is left there: the text that
            # lands after does not pull the pane back to its end.
            ui.send("Question 4")
            ui.page.wait_for_function(f"() => ({NEWEST})().chars > 40", timeout=10_000)
            ui.page.evaluate("document.querySelector('.pane-body').scrollTop = -1e6")
            top = ui.page.evaluate("document.querySelector('.pane-body').scrollTop")
            seen = int(ui.page.evaluate(NEWEST)["chars"])
            ui.page.wait_for_function(f"() => ({NEWEST})().chars > {seen + 40}", timeout=10_000)
            assert ui.page.evaluate("document.querySelector('.pane-body').scrollTop") == top
            ui.wait_states("done")

            # A reader scrolled up to the first answer is brought back to the newest by a send.
            at = ui.page.evaluate(NEWEST)
            assert at["end"] > at["bottom"] + 100, at
            ui.send("Question 5")
            ui.page.wait_for_function(f"() => ({NEWEST})().chars > 40", timeout=10_000)
            assert newest_in_view(ui.page.evaluate(NEWEST))
            ui.wait_states("done")
            assert ui.errors == []

    await in_browser(scenario)


QUICK_CONFIG = """
[providers.demo]
type = "demo"

[providers.demo.options.presets]
quick = { ttft = 0.0, rate = 0.0, tokens = 30 }
"""

# From now on, every change in pane 0's turns but its last, by kind.
WATCH_FINISHED = """() => {
  window.__changes = [];
  const turns = [...document.querySelectorAll('.pane[data-slot="0"] .turn')].slice(0, -1);
  const observer = new MutationObserver((records) => window.__changes.push(
    ...records.map((r) => `${r.type} ${r.attributeName ?? ''} ${r.target.nodeName}`)));
  for (const turn of turns) {
    observer.observe(turn, {subtree: true, childList: true, characterData: true,
                            attributes: true});
  }
  return turns.length;
}"""

# How many boxes of pane 0 the browser skips while out of view (content-visibility: auto).
SKIPPABLE = """() => [...document.querySelectorAll('.pane[data-slot="0"] .pane-content *')]
  .filter((node) => getComputedStyle(node).contentVisibility === 'auto').length"""

# Each turn's content-visibility in pane 0: a turn that became such a box made Chromium
# lay out the pane's whole conversation again.
TURN_VISIBILITY = """() => [...document.querySelectorAll('.pane[data-slot="0"] .turn')]
  .map((turn) => getComputedStyle(turn).contentVisibility)"""


# Every fetch() the page's main thread makes, as "METHOD path".
WATCH_MAIN_FETCHES = """(() => {
  window.__fetches = [];
  const fetch = window.fetch;
  window.fetch = function (input, init) {
    const url = new URL(input instanceof Request ? input.url : input, location.href);
    window.__fetches.push(`${init?.method ?? 'GET'} ${url.pathname}`);
    return fetch.call(this, input, init);
  };
})();"""


async def test_a_stream_is_created_from_the_request_worker(
    start_server: StartServer, in_browser: RunInBrowser
) -> None:
    """The request that carries every pane's history is encoded and sent by a worker, not
    by the thread that draws, started with the page; the page's Trusted Types policy admits
    that worker only."""
    chorus = await start_server(QUICK_CONFIG)

    def scenario(browser: Browser) -> None:
        with ChorusPage(browser, chorus.url, models=["demo/quick", "demo/quick"]) as ui:
            ui.context.add_init_script(script=WATCH_MAIN_FETCHES)
            # The worker starts with the page, so the first send does not wait for it.
            with ui.page.expect_event("worker") as started:
                ui.open()
            assert started.value.url.endswith("/static/request-worker.js")
            for n in (1, 2):
                ui.send(f"Question {n}")
                ui.wait_states("done", "done")
            fetches = ui.page.evaluate("window.__fetches")
            assert "GET /v1/models" in fetches
            assert not any(f.startswith("POST /v1/streams") for f in fetches), fetches
            assert [w.url.rsplit("/", 1)[-1] for w in ui.page.workers] == ["request-worker.js"]
            refused = ui.page.evaluate("""() => {
              try { new Worker('/static/api.js'); return false; } catch (e) { return true; }
            }""")
            assert refused
            assert ui.errors == []

    await in_browser(scenario)


async def test_a_page_whose_worker_cannot_load_sends_from_the_main_thread(
    start_server: StartServer, in_browser: RunInBrowser
) -> None:
    chorus = await start_server(QUICK_CONFIG)

    def scenario(browser: Browser) -> None:
        with ChorusPage(browser, chorus.url, models=["demo/quick", "demo/quick"]) as ui:
            ui.context.route("**/static/request-worker.js",
                             lambda route: route.fulfill(status=404, body="gone"))
            ui.context.add_init_script(script=WATCH_MAIN_FETCHES)
            ui.open()
            for n in (1, 2):
                ui.send(f"Question {n}")
                ui.wait_states("done", "done")
            fetches = ui.page.evaluate("window.__fetches")
            assert fetches.count("POST /v1/streams") == 2, fetches
            assert ui.errors == []

    await in_browser(scenario)


# Frames counted by requestAnimationFrame; each group that closes is noted with the frame
# it closed in and whether any pane was then running an answer, and the keydown that sent
# with its frame.
WATCH_CLOSING = """() => {
  window.__frame = 0;
  const tick = () => { window.__frame += 1; requestAnimationFrame(tick); };
  requestAnimationFrame(tick);
  window.__closed = [];
  new MutationObserver((records) => {
    for (const r of records) {
      if (r.target.classList.contains('closed')) window.__closed.push({
        slot: r.target.closest('.pane').dataset.slot, frame: window.__frame,
        running: document.querySelectorAll('.pane[aria-busy="true"]').length});
    }
  }).observe(document.querySelector('#panes'),
             {subtree: true, attributes: true, attributeFilter: ['class']});
  document.addEventListener('keydown', () => { window.__sentIn = window.__frame; },
                            {capture: true});
}"""


# How far each pane's scroller is from its end, in whole pixels.
FROM_END = """() => [...document.querySelectorAll('.pane-body')]
  .map((b) => Math.max(0, Math.round(b.scrollHeight - b.scrollTop - b.clientHeight)))"""


async def test_a_full_group_closes_once_the_answers_are_done(
    start_server: StartServer, in_browser: RunInBrowser
) -> None:
    """Closing a group lays the conversations out again: not on the send that starts the
    next group, nor while answers stream, but all panes' together when they are done."""
    chorus = await start_server(QUICK_CONFIG)

    def scenario(browser: Browser) -> None:
        with ChorusPage(browser, chorus.url, models=["demo/quick"] * 3,
                        viewport={"width": 900, "height": 420}) as ui:
            ui.open()
            for n in range(1, 9):
                ui.send(f"Question {n}")
                ui.wait_states("done", "done", "done")
            ui.page.evaluate(WATCH_CLOSING)
            ui.page.wait_for_function("() => window.__frame > 2")
            ui.send("Question 9")
            ui.wait_states("done", "done", "done")
            ui.page.wait_for_function("() => window.__closed.length === 3")
            closed = ui.page.evaluate("window.__closed")
            sent_in = ui.page.evaluate("window.__sentIn")
            assert sorted(c["slot"] for c in closed) == ["0", "1", "2"]
            assert all(c["running"] == 0 and c["frame"] > sent_in for c in closed), closed
            assert len({c["frame"] for c in closed}) == 1, closed
            assert ui.page.locator(".turn-group.closed").count() == 3
            # Each pane is still at its end: a closed group keeps the height it had.
            ui.page.wait_for_timeout(100)
            assert ui.page.evaluate(FROM_END) == [0, 0, 0]
            ui.send("Question 10")
            ui.wait_states("done", "done", "done")
            assert ui.page.evaluate(FROM_END) == [0, 0, 0]
            assert ui.errors == []

    await in_browser(scenario)


async def test_finished_turns_are_left_alone_and_skipped_in_groups(
    start_server: StartServer, in_browser: RunInBrowser
) -> None:
    chorus = await start_server(QUICK_CONFIG)

    def scenario(browser: Browser) -> None:
        with ChorusPage(browser, chorus.url, models=["demo/quick", "demo/quick"]) as ui:
            ui.open()
            for n in range(1, 11):
                ui.send(f"Question {n}")
                ui.wait_states("done", "done")
            # 10 turns: a closed group of 8, skipped as one box, and the open group's two
            # turns, each a box of its own.
            assert ui.page.locator('.pane[data-slot="0"] .turn').count() == 10
            assert ui.page.evaluate(SKIPPABLE) == 3
            assert ui.page.evaluate(WATCH_FINISHED) == 9
            before = ui.page.evaluate(TURN_VISIBILITY)
            assert before == ["visible"] * 8 + ["auto"] * 2
            ui.send("Question 11")
            ui.wait_states("done", "done")
            ui.page.wait_for_timeout(300)  # a few frames and a figures tick
            assert ui.page.evaluate("window.__changes") == []
            assert ui.page.evaluate(TURN_VISIBILITY) == [*before, "auto"]
            assert ui.page.evaluate(SKIPPABLE) == 4
            assert ui.errors == []

    await in_browser(scenario)
