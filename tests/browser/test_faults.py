"""Faults a pane must absorb without holding up the others: a model that never sends a
first token, a model that fails in the middle of a list."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser

from ..conftest import Server, StartServer
from .chorus_page import ChorusPage
from .conftest import CONFIG, RunInBrowser

pytestmark = pytest.mark.browser


async def test_a_model_that_never_starts_does_not_lock_send_and_the_next_send_stops_it(
    chorus: Server, in_browser: RunInBrowser
) -> None:
    def scenario(browser: Browser) -> None:
        with ChorusPage(browser, chorus.url, models=["demo/steady", "demo/hang"]) as ui:
            ui.open()
            first = ui.send("Anyone there?")
            ui.wait_states("streaming", "waiting")
            assert not ui.page.locator("#send").is_visible()  # one is still writing

            ui.wait_states("done", "waiting")
            # Only a pane with no token at all is left: Send is offered again, and so is
            # Stop all.
            ui.page.locator("#send").wait_for(state="visible")
            assert ui.page.locator("#stop-all").is_visible()

            second = ui.send("Let us move on")
            ui.wait_states(None, "waiting")
            ui.page.locator('.turn[data-slot="1"][data-state="stopped"]').wait_for()
            snap = ui.snapshot(first)
            assert [s["state"] for s in snap["slots"]] == ["done", "stopped"]
            assert snap["slots"][1]["stop_reason"] == "user"
            # The stuck turn gave no answer, so it is left out of the next turn's history.
            ui.wait_states("done", "waiting")
            body = ui.snapshot(second)
            assert [s["state"] for s in body["slots"]] == ["done", "running"]
            assert ui.pane(1).locator(".turn").count() == 2
            ui.page.keyboard.press("Escape")
            ui.wait_states("done", "stopped")
            assert ui.errors == []

    await in_browser(scenario)


async def test_a_model_failing_mid_list_leaves_no_empty_bullet(
    chorus: Server, in_browser: RunInBrowser
) -> None:
    def scenario(browser: Browser) -> None:
        with ChorusPage(browser, chorus.url, models=["demo/flaky"]) as ui:
            ui.open()
            stream = ui.send("Make a list")
            ui.wait_states("error")
            slot = ui.snapshot(stream)["slots"][0]
            assert slot["state"] == "error"
            # The failure came right after a list marker: the text ends "…\n- ".
            assert slot["text"].rstrip(" ").endswith("\n-")
            answer = ui.pane(0).locator(".answer")
            assert answer.locator("li").count() == 0
            assert ui.answer_html(0) == ui.shown(slot)
            assert ui.answer_html(0) != ui.rendered(slot["text"])  # which had the bullet
            assert ui.pane(0).locator(".error-box").is_visible()
            assert ui.errors == []

    await in_browser(scenario)


async def test_a_refused_stream_shows_its_error_in_every_pane(
    start_server: StartServer, in_browser: RunInBrowser
) -> None:
    """The stream is created from the request worker: a refusal still reaches each pane as
    the server's error, type, status and message."""
    chorus = await start_server(CONFIG.replace("[server]\n", "[server]\nmax_body = 300\n"))

    def scenario(browser: Browser) -> None:
        with ChorusPage(browser, chorus.url, models=["demo/steady", "demo/steady"]) as ui:
            ui.open()
            with ui.page.expect_response(ui.is_create) as info:
                ui.page.fill("#prompt", "A question long enough to make the body too large. " * 4)
                ui.page.press("#prompt", "Enter")
            assert info.value.status == 413
            ui.wait_states("error", "error")
            for slot in (0, 1):
                box = ui.pane(slot).locator(".error-box")
                assert box.locator(".error-type").inner_text() == "payload_too_large"
                assert "413" in box.inner_text()
                assert "300" in box.inner_text()  # the message names the limit
            assert ui.errors == []

    await in_browser(scenario)
