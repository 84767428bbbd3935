"""A pane's figures: estimated while the model streams, the server's once it ends."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Browser

from ..conftest import Server
from .chorus_page import ChorusPage
from .conftest import RunInBrowser

pytestmark = pytest.mark.browser

# While streaming: an estimated rate, no input count yet (a dash), an estimated output count.
LIVE = re.compile(r"≈(\d+(?:\.\d)?) tok/s.*in \N{EN DASH} · out ≈(\d+)", re.S)


async def test_rate_and_token_count_update_while_streaming_then_take_the_servers(
    chorus: Server, in_browser: RunInBrowser
) -> None:
    def scenario(browser: Browser) -> None:
        with ChorusPage(browser, chorus.url, models=["demo/long"]) as ui:
            ui.open()
            stream = ui.send("Go on")
            stats = ui.pane(0).locator(".stats")
            counts = []
            for at_least in (20, 60):
                ui.page.wait_for_function(
                    "(n) => /out ≈(\\d+)/.test(document.querySelector('.stats').textContent)"
                    " && +/out ≈(\\d+)/.exec(document.querySelector('.stats').textContent)[1]"
                    " >= n", arg=at_least)
                text = stats.inner_text()
                live = LIVE.search(text)
                assert live, text
                assert float(live.group(1)) > 0
                answer = ui.page.locator(".answer").text_content() or ""
                counts.append(int(live.group(2)))
                # An estimate from the text's length (about 4 characters a token).
                assert abs(int(live.group(2)) - len(answer) / 4) <= 40
            assert counts[1] > counts[0]
            rate = ui.pane(0).locator(".stat-rate")
            assert "Estimated" in (rate.get_attribute("title") or "")

            ui.stop_pane(0)
            ui.wait_states("stopped")
            slot = ui.snapshot(stream)["slots"][0]
            text = stats.inner_text()
            usage, timing = slot["usage"], slot["timing"]
            mark = "≈" if usage["estimated"] else ""
            assert f"out {mark}{usage['output_tokens']}" in text, text
            rate_text = rate.inner_text()
            assert not rate_text.startswith("≈")
            if timing["tokens_per_s"] is not None:
                assert float(rate_text.split()[0]) == pytest.approx(
                    timing["tokens_per_s"], abs=0.51)
            assert rate.get_attribute("title") == ""
            assert ui.errors == []

    await in_browser(scenario)


async def test_the_reasoning_word_count_matches_the_servers_reasoning(
    chorus: Server, in_browser: RunInBrowser
) -> None:
    def scenario(browser: Browser) -> None:
        with ChorusPage(browser, chorus.url, models=["demo/thinker"]) as ui:
            ui.open()
            stream = ui.send("Think first")
            ui.wait_states("done")
            reasoning = ui.snapshot(stream)["slots"][0]["reasoning"]
            # Counted chunk by chunk as it arrived, it must equal a count of the whole.
            size = ui.pane(0).locator(".reasoning-size").inner_text()
            assert size == f" · {len(reasoning.split())} words"
            assert ui.errors == []

    await in_browser(scenario)
