"""The conversation page in Chromium: one thread, speakers named in their colours, who
speaks now, Skip and Stop; the thread rebuilt after a reload; each turn's figures; the
manager's picks."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import Browser, Page

from ..conftest import Server, StartServer
from .chorus_page import ChorusPage
from .conftest import RunInBrowser

pytestmark = pytest.mark.browser

# Each turn's shown text, and the snapshot's text of that turn rendered as a whole.
RENDERED = """async (texts) => {
  const m = await import('/static/markdown.js');
  const shown = [...document.querySelectorAll('.thread-turn .thread-text')];
  return {
    shown: shown.map((n) => n.textContent),
    whole: texts.map((t) => {
      const box = document.createElement('div');
      box.append(m.renderMarkdown(t));
      return box.textContent;
    }),
  };
}"""

# The manager always names Bo: a real pick, except right after Bo spoke, when it falls back.
UNKNOWN = "\u2013"  # what a figure not known yet shows (an en dash)

PICKER = """
[server]
resume_grace = 10.0

[providers.demo]
type = "demo"

[providers.demo.options.presets]
steady = { ttft = 0.1, rate = 40.0, tokens = 60 }
picker = { ttft = 0.0, rate = 0.0, tokens = 1, text = "Bo" }
fast = { ttft = 0.0, rate = 3000.0, tokens = 600 }
"""

# Counts the renderer's pushes and the animation frames while the page runs.
COUNT_DRAWS = """async () => {
  const m = await import('/static/markdown.js');
  const push = m.MarkdownStream.prototype.push;
  window.__pushes = 0;
  m.MarkdownStream.prototype.push = function (text) {
    window.__pushes += 1;
    return push.call(this, text);
  };
  window.__frames = 0;
  const tick = () => { window.__frames += 1; requestAnimationFrame(tick); };
  requestAnimationFrame(tick);
}"""


def open_form(page: Page) -> None:
    page.goto("/static/thread.html")
    # Until the module has taken the form, a click would submit it the browser's way.
    page.wait_for_selector("body[data-ready]", state="attached")


def start(page: Page, participants: str, rounds: int, manager: str = "") -> str:
    """Starts a conversation from the form; its stream id."""
    open_form(page)
    return start_stream(page, participants, rounds, manager)


def start_stream(page: Page, participants: str, rounds: int, manager: str = "") -> str:
    """Fills the loaded page's form and starts the conversation; its stream id."""
    page.fill("#participants", participants)
    page.fill("#rounds", str(rounds))
    page.fill("#manager", manager)
    page.fill("#topic", "Is P = NP?")
    with page.expect_response(ChorusPage.is_create) as created:
        page.click("#start")
    stream_id: str = created.value.json()["id"]
    return stream_id


def wait_ended(page: Page) -> None:
    page.locator("#now").filter(has_text="The conversation has ended.").wait_for(
        timeout=30_000)


async def test_a_conversation_reads_as_one_thread_with_skip_and_stop(
    chorus: Server, in_browser: RunInBrowser
) -> None:
    def scenario(browser: Browser) -> None:
        with ChorusPage(browser, chorus.url) as ui:
            page = ui.page
            stream_id = start(page, "Ada=demo/long, Bo=demo/long", 2)

            first = page.locator('.thread-turn[data-slot="0"]').first
            first.locator(".thread-text strong").filter(has_text="simulated").wait_for()
            assert page.locator("#now").inner_text() == "Now speaking: Ada"
            assert first.locator(".thread-speaker").inner_text() == "Ada"

            page.click("#skip")
            page.locator('.thread-turn[data-state="stopped"]').wait_for()
            assert first.locator(".thread-end").inner_text() == "Skipped."
            second = page.locator('.thread-turn[data-slot="1"]')
            second.locator(".thread-text").filter(has_text="simulated").wait_for()
            assert page.locator("#now").inner_text() == "Now speaking: Bo"
            colours = [t.evaluate("n => getComputedStyle(n).borderLeftColor")
                       for t in (first, second)]
            assert colours[0] != colours[1]
            names = [t.locator(".thread-speaker").evaluate("n => getComputedStyle(n).color")
                     for t in (first, second)]
            assert names[0] != names[1]

            page.click("#stop")
            wait_ended(page)
            assert second.get_attribute("data-state") == "stopped"
            assert second.locator(".thread-end").inner_text() == "Stopped."
            assert page.locator(".thread-turn").count() == 2
            assert page.locator("#start").is_visible()
            assert not page.locator("#skip").is_visible()

            snap = ui.snapshot(stream_id)
            assert [(t["name"], t["state"], t["stop_reason"]) for t in snap["turns"]] == [
                ("Ada", "stopped", "skip"), ("Bo", "stopped", "user")]
            assert ui.errors == []

    await in_browser(scenario)


async def test_answers_render_as_safe_markdown(
    chorus: Server, in_browser: RunInBrowser
) -> None:
    def scenario(browser: Browser) -> None:
        with ChorusPage(browser, chorus.url) as ui:
            page = ui.page
            start(page, "Mallory=demo/hostile", 1)
            wait_ended(page)
            text = page.locator(".thread-text")
            assert text.locator("strong").filter(has_text="still bold").count() == 1
            assert text.locator("img, script, iframe, svg").count() == 0
            assert text.locator("a[href^='javascript:'], a[href^='data:']").count() == 0
            assert page.evaluate("window.__pwned === undefined")
            assert ui.errors == []

    await in_browser(scenario)


async def test_a_reload_mid_turn_rebuilds_the_thread_and_follows_it_to_the_end(
    start_server: StartServer, in_browser: RunInBrowser
) -> None:
    server = await start_server(PICKER)  # turns of 1.6 s: two more after the reload

    def scenario(browser: Browser) -> None:
        with ChorusPage(browser, server.url) as ui:
            page = ui.page
            stream_id = start(page, "Ada=demo/steady, Bo=demo/steady", 2)
            second = page.locator('.thread-turn[data-turn="1"]')
            second.locator(".thread-text").filter(has_text="simulated").wait_for()
            assert second.get_attribute("data-state") == "streaming"

            creates = sum(1 for url in ui.requests if url.endswith("/v1/streams"))
            page.reload()
            # Rebuilt from the events: the first turn is there again, whole.
            page.locator('.thread-turn[data-turn="0"][data-state="done"]').wait_for()
            assert page.locator("#stop").is_visible()
            wait_ended(page)
            assert sum(1 for url in ui.requests if url.endswith("/v1/streams")) == creates

            snap = ui.snapshot(stream_id)
            assert [t["state"] for t in snap["turns"]] == ["done"] * 4
            assert page.locator(".thread-turn").count() == 4
            texts: dict[str, Any] = page.evaluate(RENDERED, [t["text"] for t in snap["turns"]])
            assert texts["shown"] == texts["whole"]
            assert [page.locator(f'.thread-turn[data-turn="{i}"] .thread-speaker').inner_text()
                    for i in range(4)] == ["Ada", "Bo", "Ada", "Bo"]
            assert ui.errors == []

    await in_browser(scenario)


async def test_each_turn_shows_its_figures_and_the_managers_pick(
    start_server: StartServer, in_browser: RunInBrowser
) -> None:
    server = await start_server(PICKER)

    def scenario(browser: Browser) -> None:
        with ChorusPage(browser, server.url) as ui:
            page = ui.page
            stream_id = start(page, "Ada=demo/steady, Bo=demo/steady", 2, "demo/picker")
            first = page.locator('.thread-turn[data-turn="0"]')
            first.locator(".thread-text").filter(has_text="simulated").wait_for()
            live = first.locator(".thread-figures").inner_text()
            assert "≈" in live, live
            assert live.endswith(" tokens"), live
            wait_ended(page)

            snap = ui.snapshot(stream_id)
            assert [t["name"] for t in snap["turns"]] == ["Bo", "Ada", "Bo", "Ada"]
            picks = [page.locator(f'.thread-turn[data-turn="{i}"] .thread-pick').inner_text()
                     for i in range(4)]
            assert picks == ["picked by the manager", "round-robin: the pick fell back"] * 2
            for i, turn in enumerate(snap["turns"]):
                figures = page.locator(f'.thread-turn[data-turn="{i}"] .thread-figures')
                text = figures.inner_text()
                assert "≈" not in text, text
                assert UNKNOWN not in text, text
                assert text.startswith("TTFT "), text
                assert text.endswith(f" · {turn['usage']['output_tokens']} tokens"), text
                shown_rate = re.search(r" · ([0-9.]+) tok/s · ", text)
                assert shown_rate, text
                assert abs(float(shown_rate[1]) - turn["timing"]["tokens_per_s"]) <= 0.5
            assert ui.errors == []

    await in_browser(scenario)


async def test_the_main_page_links_to_the_conversation_page(
    chorus: Server, in_browser: RunInBrowser
) -> None:
    def scenario(browser: Browser) -> None:
        with ChorusPage(browser, chorus.url, models=["demo/steady"]) as ui:
            ui.open()
            ui.page.click("#thread-link")
            ui.page.wait_for_url("**/static/thread.html")
            ui.page.locator("#talk").wait_for()
            assert ui.errors == []

    await in_browser(scenario)


async def test_a_fast_turn_is_drawn_at_most_once_a_frame(
    start_server: StartServer, in_browser: RunInBrowser
) -> None:
    server = await start_server(PICKER)

    def scenario(browser: Browser) -> None:
        with ChorusPage(browser, server.url) as ui:
            page = ui.page
            open_form(page)
            page.evaluate(COUNT_DRAWS)
            stream_id = start_stream(page, "Ada=demo/fast, Bo=demo/fast", 1)
            wait_ended(page)
            pushes, frames = page.evaluate("[window.__pushes, window.__frames]")
            replay = page.request.get(f"/v1/streams/{stream_id}/events",
                                      headers={"Accept": "text/event-stream"})
            deltas = replay.text().count("event: delta\n")
            # Many deltas come within one frame at 3,000 tokens a second; each turn's text
            # is handed to the renderer once a frame, and once more as it ends.
            assert deltas > frames + 2
            # At least one push a turn: the wrapper saw the page's own pushes.
            assert 2 <= pushes <= frames + 2
            assert ui.errors == []

    await in_browser(scenario)
