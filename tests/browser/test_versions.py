"""Versions of a turn: Regenerate and an edited prompt keep the earlier answers, shown
one at a time (1/2, with arrows); the version on screen is the one the next turn builds on."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Browser

from ..conftest import Server
from .chorus_page import ChorusPage
from .conftest import RunInBrowser

pytestmark = pytest.mark.browser


def stop_after(ui: ChorusPage, chars: int) -> None:
    """Stops slot 0 (demo/long) once its answer is longer than ``chars``."""
    ui.page.wait_for_function(
        "(n) => document.querySelector('.turn[data-slot=\"0\"]:last-of-type .answer')"
        "?.textContent.length > n", arg=chars)
    ui.stop_pane(0)
    ui.wait_states("stopped", "done")


def streams_request(ui: ChorusPage, action: Any) -> tuple[dict[str, Any], str]:
    """Runs ``action()``; returns the body of the POST /v1/streams it makes and the id of
    the stream made."""
    with ui.page.expect_response(ui.is_create) as made:
        action()
    body = made.value.request.post_data_json
    assert body is not None
    return dict(body), str(made.value.json()["id"])


async def test_regenerate_and_edit_keep_earlier_answers_as_versions(
    chorus: Server, in_browser: RunInBrowser
) -> None:
    def scenario(browser: Browser) -> None:
        with ChorusPage(browser, chorus.url, models=["demo/long", "demo/thinker"]) as ui:
            ui.open()
            first = ui.send("Question one")
            stop_after(ui, 20)
            nav = ui.turns(0).last.locator(".versions")
            assert nav.is_hidden()  # one version: no arrows

            body, again = streams_request(
                ui, lambda: ui.pane(0).locator("button.regen").click())
            assert body["models"][0]["messages"] == [{"role": "user", "content": "Question one"}]
            texts = [ui.snapshot(first)["slots"][0]["text"]]
            stop_after(ui, len(texts[0]) + 40)
            texts.append(ui.snapshot(again)["slots"][0]["text"])
            assert len(texts[1]) > len(texts[0])
            assert ui.answer_html(0) == ui.rendered(texts[1], "stopped")
            nav = ui.turns(0).last.locator(".versions")
            assert nav.locator(".versions-label").inner_text() == "2/2"
            assert ui.turns(1).last.locator(".versions").is_hidden()

            # Back to the first answer: shown again, exactly as it was.
            nav.get_by_label("Previous version").click()
            nav = ui.turns(0).last.locator(".versions")
            assert nav.locator(".versions-label").inner_text() == "1/2"
            assert ui.answer_html(0) == ui.rendered(texts[0], "stopped")
            # Focus stays on the arrows (the first is disabled now, so it is the other one).
            assert ui.page.evaluate(
                "document.activeElement.getAttribute('aria-label')") == "Next version"
            ui.reload()  # versions and the choice are kept
            assert ui.turns(0).last.locator(".versions-label").inner_text() == "1/2"

            # The next turn builds on the version on screen.
            ui.page.fill("#prompt", "Question two")
            body, _ = streams_request(ui, lambda: ui.page.press("#prompt", "Enter"))
            assert body["models"][0]["messages"][:2] == [
                {"role": "user", "content": "Question one"},
                {"role": "assistant", "content": texts[0]}]
            stop_after(ui, 0)

            # Edit the last prompt: every pane is asked again, the old turn stays a version.
            ui.turns(1).last.locator("button.edit").click()
            assert ui.page.input_value("#prompt") == "Question two"
            assert ui.page.locator("#editing").is_visible()
            ui.page.fill("#prompt", "Question two, put better")
            body, _ = streams_request(ui, lambda: ui.page.press("#prompt", "Enter"))
            for target in body["models"]:
                assert target["messages"][-1] == {"role": "user",
                                                  "content": "Question two, put better"}
                assert len(target["messages"]) == 3
            stop_after(ui, 0)
            assert ui.page.locator("#editing").is_hidden()
            for slot in (0, 1):
                turn = ui.turns(slot).last
                assert turn.locator(".user-msg").inner_text() == "Question two, put better"
                assert turn.locator(".versions-label").inner_text() == "2/2"
            assert ui.turns(0).count() == 2
            ui.turns(1).last.get_by_label("Previous version").click()
            assert ui.turns(1).last.locator(".user-msg").inner_text() == "Question two"
            assert ui.errors == []

    await in_browser(scenario)
