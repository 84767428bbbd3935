"""A pane's own settings (temperature, max tokens, system prompt) go to that slot only, as
its target's `params` and the system message of its `messages`."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser

from ..conftest import Server
from .chorus_page import ChorusPage
from .conftest import RunInBrowser

pytestmark = pytest.mark.browser


async def test_a_panes_own_settings_are_sent_for_its_slot_only(
    brisk_chorus: Server, in_browser: RunInBrowser
) -> None:
    def scenario(browser: Browser) -> None:
        with ChorusPage(browser, brisk_chorus.url, models=["demo/steady", "demo/steady"]) as ui:
            ui.open()
            tune = ui.pane(1).locator("button.tune")
            assert tune.get_attribute("aria-expanded") == "false"
            tune.click()
            form = ui.pane(1).locator(".pane-settings")
            form.get_by_label("Temperature").fill("0.3")
            form.get_by_label("Max tokens").fill("5")
            form.get_by_label("System prompt").fill("Be terse.")
            form.get_by_label("System prompt").press("Tab")  # a change is saved
            assert "its own are set" in (tune.get_attribute("aria-label") or "")
            assert "its own" not in (ui.pane(0).locator("button.tune").get_attribute(
                "aria-label") or "")

            with ui.page.expect_request(lambda r: r.url.endswith("/v1/streams")) as sent:
                stream = ui.send("Hello")
            body = sent.value.post_data_json
            assert body is not None
            assert body["models"] == [
                {"model": "demo/steady", "messages": [{"role": "user", "content": "Hello"}]},
                {"model": "demo/steady",
                 "messages": [{"role": "system", "content": "Be terse."},
                              {"role": "user", "content": "Hello"}],
                 "params": {"temperature": 0.3, "max_tokens": 5}},
            ]
            ui.wait_states("done", "done")
            slots = ui.snapshot(stream)["slots"]
            assert slots[1]["usage"]["output_tokens"] == 5  # the server applied it
            assert slots[1]["finish_reason"] == "length"
            assert slots[0]["usage"]["output_tokens"] > 5
            assert "Cut off" in ui.turns(1).last.locator(".turn-note").inner_text()

            # Kept with the conversation.
            ui.reload()
            ui.pane(1).locator("button.tune").click()
            form = ui.pane(1).locator(".pane-settings")
            assert form.get_by_label("Max tokens").input_value() == "5"
            assert form.get_by_label("System prompt").input_value() == "Be terse."
            assert ui.errors == []

    await in_browser(scenario)
