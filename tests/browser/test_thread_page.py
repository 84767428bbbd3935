"""The conversation page in Chromium: one thread, speakers named in their colours, who
speaks now, Skip and Stop."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser

from ..conftest import Server
from .chorus_page import ChorusPage
from .conftest import RunInBrowser

pytestmark = pytest.mark.browser


async def test_a_conversation_reads_as_one_thread_with_skip_and_stop(
    chorus: Server, in_browser: RunInBrowser
) -> None:
    def scenario(browser: Browser) -> None:
        with ChorusPage(browser, chorus.url) as ui:
            page = ui.page
            page.goto("/static/thread.html")
            page.fill("#participants", "Ada=demo/long, Bo=demo/long")
            page.fill("#rounds", "2")
            page.fill("#topic", "Is P = NP?")
            with page.expect_response(ChorusPage.is_create) as created:
                page.click("#start")
            stream_id = created.value.json()["id"]

            first = page.locator('.thread-turn[data-slot="0"]').first
            first.locator(".thread-text").filter(has_text="simulated").wait_for()
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

            page.click("#stop")
            page.locator("#now").filter(has_text="The conversation has ended.").wait_for()
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
