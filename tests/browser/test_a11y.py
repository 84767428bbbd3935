"""The page for keyboard and screen-reader users: where focus goes, contrast, target sizes,
and axe-core's WCAG 2.2 AA and best-practice rules, light and dark, desktop and phone."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Browser

from ..conftest import Server, StartServer
from .chorus_page import DESKTOP, PHONE, ChorusPage
from .conftest import RunInBrowser

pytestmark = pytest.mark.browser

ACTIVE_ELEMENT = """() => {
  const a = document.activeElement;
  return a === document.body ? 'body' : a.id || a.className + ' ' + (a.dataset.slot ?? '');
}"""


async def test_focus_stays_in_a_stopped_pane_and_returns_to_a_drawers_button(
    chorus: Server, in_browser: RunInBrowser
) -> None:
    def scenario(browser: Browser) -> None:
        with ChorusPage(browser, chorus.url, models=["demo/long", "demo/steady"]) as ui:
            ui.open()
            ui.send("Write at length")
            ui.wait_states("streaming", None)
            ui.pane(0).locator("button.stop").focus()
            ui.page.keyboard.press("Enter")
            ui.wait_states("stopped", None)
            assert ui.page.evaluate(ACTIVE_ELEMENT) == "pane 0"
            # Tab moves on from there, into the pane's own controls.
            ui.page.keyboard.press("Tab")
            assert ui.page.evaluate(ACTIVE_ELEMENT) != "body"

            for drawer in ("history", "settings"):
                ui.page.locator(f"#{drawer}-btn").focus()
                ui.page.keyboard.press("Enter")
                ui.page.locator(f"#{drawer}").wait_for(state="visible")
                assert ui.page.evaluate(f"document.getElementById('{drawer}')"
                                        ".contains(document.activeElement)")
                ui.page.keyboard.press("Escape")
                ui.page.locator(f"#{drawer}").wait_for(state="hidden")
                assert ui.page.evaluate(ACTIVE_ELEMENT) == f"{drawer}-btn"
                assert ui.page.get_attribute(f"#{drawer}-btn", "aria-expanded") == "false"
            ui.page.click("#settings-btn")
            ui.page.locator("#settings [data-close-drawer]").click()
            assert ui.page.evaluate(ACTIVE_ELEMENT) == "settings-btn"
            assert ui.errors == []

    await in_browser(scenario)


@pytest.mark.parametrize("size", ["desktop", "phone"])
async def test_axe_finds_no_violation(
    brisk_chorus: Server, in_browser: RunInBrowser, axe_script: Path, size: str
) -> None:
    def scenario(browser: Browser) -> None:
        # A code block and a list (steady), reasoning (thinker), an error (broken), and a
        # model that never starts (hang), so that Send and Stop all both show.
        models = ["demo/steady", "demo/thinker", "demo/broken", "demo/hang"]
        with ChorusPage(browser, brisk_chorus.url, models=models, bypass_csp=True,
                        viewport=DESKTOP if size == "desktop" else PHONE) as ui:
            ui.open()
            ui.assert_axe_clean(axe_script)  # before anything is sent
            ui.send("Show me everything")
            ui.wait_states("done", "done", "error", "waiting", timeout=30_000)
            ui.page.locator("#send").wait_for(state="visible")
            assert ui.page.locator("#stop-all").is_visible()
            ui.page.locator(".md pre").first.wait_for(state="attached")
            # Versions, a picked answer and a pane's own settings, open.
            ui.pane(1).locator("button.regen").click()
            ui.wait_states("done", "done", "error", "waiting", timeout=30_000)
            ui.turns(1).last.locator(".versions").wait_for()
            ui.turns(0).last.locator("button.pick").click()
            ui.pane(0).locator("button.tune").click()
            ui.assert_axe_clean(axe_script)
            ui.page.click("#settings-btn")
            ui.assert_axe_clean(axe_script)
            ui.page.keyboard.press("Escape")
            ui.page.click("#history-btn")
            ui.assert_axe_clean(axe_script)
            ui.page.keyboard.press("Escape")
            ui.page.click("#stop-all")
            ui.wait_states("done", "done", "error", "stopped")
            assert ui.errors == []

    await in_browser(scenario)


async def test_small_controls_are_24px_targets_and_code_blocks_take_focus(
    brisk_chorus: Server, in_browser: RunInBrowser
) -> None:
    def scenario(browser: Browser) -> None:
        with ChorusPage(browser, brisk_chorus.url, models=["demo/steady"],
                        viewport=PHONE) as ui:
            ui.open()
            ui.send("Some code please")
            ui.wait_states("done")
            for selector in (".pane-actions .regen", ".chip-remove", ".turn-foot .copy",
                             ".md-code-copy"):
                box = ui.page.locator(selector).first.bounding_box()
                assert box is not None, selector
                assert box["width"] >= 24, (selector, box)
                assert box["height"] >= 24, (selector, box)
            pre = ui.pane(0).locator(".md pre").first
            assert pre.get_attribute("tabindex") == "0"
            assert pre.get_attribute("role") == "group"
            assert pre.get_attribute("aria-label") == "Code, python"
            # Tab from the Copy button of the code block reaches the block itself.
            ui.pane(0).locator(".md-code-copy").first.focus()
            ui.page.keyboard.press("Tab")
            assert ui.page.evaluate("document.activeElement.tagName") == "PRE"
            assert ui.errors == []

    await in_browser(scenario)


EXTRAS = """
[server]
resume_grace = 10.0

[providers.demo]
type = "demo"
images = ["steady"]
prices = { "steady" = { input = 0.15, output = 0.60 } }
model_info = { "steady" = { context = 128000, description = "Steady and plain." } }

[providers.demo.options.presets]
steady = { ttft = 0.05, rate = 80.0, tokens = 40 }
plain = { ttft = 0.05, rate = 80.0, tokens = 20 }
"""
PNG = bytes.fromhex("89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c4890000000d"
                    "49444154789c63606060f80f0001040100a5b4b06c0000000049454e44ae426082")


async def test_axe_finds_no_violation_with_images_costs_model_facts_and_notes(
    start_server: StartServer, in_browser: RunInBrowser, axe_script: Path
) -> None:
    priced = await start_server(EXTRAS)
    noted = await start_server('[providers.up]\ntype = "openai"\n'
                               'base_url = "http://127.0.0.1:9/v1"\n')

    def scenario(browser: Browser) -> None:
        with ChorusPage(browser, priced.url, models=["demo/steady", "demo/plain"],
                        bypass_csp=True) as ui:
            ui.open()
            files = [{"name": "dot.png", "mimeType": "image/png", "buffer": PNG}]
            ui.page.set_input_files("#attach-input", files=files)
            ui.page.locator("#attachments .attachment").wait_for()
            ui.send("What is this?")
            ui.wait_states("done", "done")
            ui.turns(0).last.locator(".stat-cost").wait_for()
            ui.turns(1).last.locator(".images-note").wait_for()
            ui.page.set_input_files("#attach-input", files=files)  # a chip in the composer
            ui.page.locator("#attachments .attachment").wait_for()
            ui.page.fill("#model-search", "demo/")  # the list open, with its facts
            ui.page.locator(".option-facts").first.wait_for()
            ui.assert_axe_clean(axe_script)
        with ChorusPage(browser, noted.url, models=[], bypass_csp=True) as ui:
            ui.open()
            ui.page.locator("#picker-notes").wait_for()
            ui.assert_axe_clean(axe_script)

    await in_browser(scenario)


async def test_axe_finds_no_violation_on_the_conversation_page(
    chorus: Server, in_browser: RunInBrowser, axe_script: Path
) -> None:
    def scenario(browser: Browser) -> None:
        with ChorusPage(browser, chorus.url, bypass_csp=True) as ui:
            page = ui.page
            page.goto("/static/thread.html")
            page.wait_for_selector("body[data-ready]", state="attached")
            ui.assert_axe_clean(axe_script)  # the empty form
            # A code block and a list (steady), an error (broken), the manager's picks (a
            # manager whose quick answer names nobody: each pick falls back, and shows it).
            page.fill("#participants", "Ada=demo/steady, Bo=demo/broken, Cy=demo/long")
            page.fill("#manager", "demo/ttft=0,rate=0,tokens=3")
            page.fill("#topic", "Show me everything")
            page.click("#start")
            page.locator('.thread-turn[data-state="error"]').wait_for(timeout=30_000)
            page.locator(".thread-text pre").first.wait_for(state="attached")
            page.locator('.thread-turn[data-slot="2"] .thread-text').filter(
                has_text="simulated").wait_for()
            ui.assert_axe_clean(axe_script)  # mid-turn: Skip and Stop shown, figures estimated
            page.click("#stop")
            page.locator("#now").filter(has_text="The conversation has ended.").wait_for()
            ui.assert_axe_clean(axe_script)
            assert ui.errors == []

    await in_browser(scenario)
