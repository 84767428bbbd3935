"""Picking the best answer of a turn, continuing every model from it, and blind rounds
(names hidden and panes shuffled until the pick, then a tally per model)."""

from __future__ import annotations

import json

import pytest
from playwright.sync_api import Browser

from ..conftest import Server
from .chorus_page import ChorusPage
from .conftest import RunInBrowser

pytestmark = pytest.mark.browser

PANE_ORDER = "() => [...document.querySelectorAll('.pane')].map((p) => +p.dataset.slot)"
# Resolves once a frame has been drawn after the call.
NEXT_FRAME = "() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))"


async def test_the_preferred_answer_becomes_every_models_history(
    brisk_chorus: Server, in_browser: RunInBrowser
) -> None:
    def scenario(browser: Browser) -> None:
        with ChorusPage(browser, brisk_chorus.url, models=["demo/steady", "demo/thinker"]) as ui:
            ui.open()
            first = ui.send("Which is best?")
            ui.wait_states("done", "done")
            best = ui.turns(1).last.locator("button.pick")
            answer = ui.turns(1).last.locator(".answer").bounding_box()
            assert answer is not None
            # The bar that marks the pick, just left of the answer: drawn, not clipped by
            # the turn's box (it is a content-visibility box, which clips its painting).
            bar = {"x": answer["x"] - 3, "y": answer["y"], "width": 3, "height": 20}
            unpicked = ui.page.screenshot(clip=bar)
            best.click()
            assert best.get_attribute("aria-pressed") == "true"
            ui.page.evaluate(NEXT_FRAME)  # drawn
            assert ui.page.screenshot(clip=bar) != unpicked
            assert best.inner_text().endswith("Preferred")
            assert ui.turns(0).last.locator("button.pick").get_attribute("aria-pressed") == "false"
            assert ui.turns(0).last.locator("button.share").is_hidden()

            ui.turns(1).last.locator("button.share").click()
            chosen = ui.snapshot(first)["slots"][1]["text"]
            with ui.page.expect_request(lambda r: r.url.endswith("/v1/streams")) as sent:
                ui.page.fill("#prompt", "Go on from there")
                ui.page.press("#prompt", "Enter")
            body = sent.value.post_data_json
            assert body is not None
            shared = [{"role": "user", "content": "Which is best?"},
                      {"role": "assistant", "content": chosen},
                      {"role": "user", "content": "Go on from there"}]
            assert [t["messages"] for t in body["models"]] == [shared, shared]
            ui.wait_states("done", "done")

            # The pick is kept with the conversation.
            ui.reload()
            assert ui.turns(1).first.locator("button.pick").get_attribute("aria-pressed") == "true"
            assert ui.turns(1).last.locator("button.pick").get_attribute("aria-pressed") == "false"
            assert ui.errors == []

    await in_browser(scenario)


async def test_a_blind_round_hides_and_shuffles_until_the_pick_then_counts_it(
    chorus: Server, in_browser: RunInBrowser
) -> None:
    def scenario(browser: Browser) -> None:
        models = ["demo/steady", "demo/thinker", "demo/long"]
        with ChorusPage(browser, chorus.url, models=models) as ui:
            ui.open()
            ui.page.click("#settings-btn")
            assert "No blind picks yet." in ui.page.inner_text("#tally")
            ui.page.check("#set-blind")
            ui.page.keyboard.press("Escape")

            ui.send("Blind test")
            order = ui.stored_conversation()["blind"][0]
            assert sorted(order) == [0, 1, 2]
            assert ui.page.evaluate(PANE_ORDER) == order  # shown in the shuffled order
            ui.page.wait_for_function(
                "() => document.querySelector('.pane[data-slot=\"2\"] .answer')"
                ".textContent.length > 20")
            ui.stop_pane(2)
            ui.wait_states("done", "done", "stopped")
            panes = ui.page.locator("#panes")
            # No model's name shows anywhere in the panes, nor in their accessible names.
            assert "demo/" not in panes.inner_text()
            labels = ui.page.evaluate(
                "() => [...document.querySelectorAll('#panes [aria-label]')]"
                ".map((e) => e.getAttribute('aria-label')).join(' ')")
            assert "demo/" not in labels
            names = ui.page.locator(".pane .blind-name").all_inner_texts()
            assert names == ["Model A", "Model B", "Model C"]

            winner = order[1]  # "Model B"
            ui.turns(winner).last.locator("button.pick").click()
            assert ui.page.evaluate(PANE_ORDER) == [0, 1, 2]  # revealed, in slot order
            assert ui.page.locator(".pane .model-name:not(.blind-name)").all_inner_texts() == models
            tally = json.loads(ui.page.evaluate("localStorage.getItem('chorus:tally')"))
            assert tally == {m: {"picked": int(i == winner), "rounds": 1}
                             for i, m in enumerate(models)}
            # Changing the pick after the reveal does not count again.
            ui.turns(order[0]).last.locator("button.pick").click()
            assert json.loads(ui.page.evaluate("localStorage.getItem('chorus:tally')")) == tally

            ui.page.click("#settings-btn")
            rows = ui.page.locator("#tally-rows tr").all_inner_texts()
            assert rows[0].split() == [models[winner], "1", "1"]
            assert len(rows) == 3
            ui.page.click("#tally-reset")
            assert "No blind picks yet." in ui.page.inner_text("#tally")
            assert ui.page.evaluate("localStorage.getItem('chorus:tally')") is None
            assert ui.errors == []

    await in_browser(scenario)
