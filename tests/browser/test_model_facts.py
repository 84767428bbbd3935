"""What the page says about models from GET /v1/models: context length, price and
description in the picker, a cost per answer where a price is known (estimated while
streaming, then from the server's usage), and the server's notes, until dismissed."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Browser

from ..conftest import Server, StartServer
from .chorus_page import ChorusPage
from .conftest import RunInBrowser

pytestmark = pytest.mark.browser

PRICED = """
[server]
resume_grace = 10.0

[providers.demo]
type = "demo"
images = ["writer"]
prices = { "writer" = { input = 0.15, output = 0.60 } }
model_info = { "writer" = { context = 128000, description = "Writes at length." } }

[providers.demo.options.presets]
writer = { ttft = 0.05, rate = 40.0, tokens = 120 }
plain = { ttft = 0.05, rate = 80.0, tokens = 20 }
"""

COST = re.compile(r"^(≈?)\$(\d+(?:\.\d+)?)$")


@pytest.fixture
async def priced(start_server: StartServer) -> Server:
    return await start_server(PRICED)


async def test_the_picker_shows_context_price_and_description(
    priced: Server, in_browser: RunInBrowser
) -> None:
    def scenario(browser: Browser) -> None:
        with ChorusPage(browser, priced.url, models=[]) as ui:
            ui.open()
            ui.page.fill("#model-search", "demo/")
            options = ui.page.locator(".model-option")
            writer = options.filter(has_text="demo/writer")
            assert writer.locator(".option-facts").inner_text() == (
                "128k context · $0.15 in / $0.60 out per M tokens")
            assert writer.locator(".option-desc").inner_text() == "Writes at length."
            plain = options.filter(has_text="demo/plain")
            assert plain.locator(".option-facts").inner_text() == "no images"
            assert plain.locator(".option-desc").count() == 0
            assert ui.errors == []

    await in_browser(scenario)


async def test_an_answer_shows_its_cost_estimated_while_streaming_then_from_usage(
    priced: Server, in_browser: RunInBrowser
) -> None:
    def scenario(browser: Browser) -> None:
        with ChorusPage(browser, priced.url, models=["demo/writer", "demo/plain"]) as ui:
            ui.open()
            stream = ui.send("Tell me a long story")
            cost = ui.turns(0).last.locator(".stat-cost")
            ui.wait_states("streaming", None)  # writing: the cost is an estimate
            ui.page.wait_for_function(
                "() => document.querySelector('.turn[data-slot=\"0\"] .stat-cost')"
                "?.textContent.startsWith('≈$')")
            ui.wait_states("done", "done")
            usage = ui.snapshot(stream)["slots"][0]["usage"]
            usd = (usage["input_tokens"] * 0.15 + usage["output_tokens"] * 0.60) / 1e6
            match = COST.match(cost.inner_text())
            assert match, cost.inner_text()
            assert match[1] == ("≈" if usage["estimated"] else "")
            assert float(match[2]) == pytest.approx(usd, rel=0.05)  # two significant digits
            # No price, no cost.
            assert ui.turns(1).last.locator(".stat-cost").count() == 0
            assert ui.errors == []

    await in_browser(scenario)


async def test_the_servers_notes_show_in_the_picker_until_dismissed(
    start_server: StartServer, in_browser: RunInBrowser
) -> None:
    # Another provider configured: the demo models are left out, and /v1/models says so.
    server = await start_server('[providers.up]\ntype = "openai"\n'
                                'base_url = "http://127.0.0.1:9/v1"\n')
    async with server.client() as client:
        notes = (await client.get("/v1/models")).json()["notes"]
    assert notes

    def scenario(browser: Browser) -> None:
        with ChorusPage(browser, server.url, models=[]) as ui:
            ui.open()
            box = ui.page.locator("#picker-notes")
            assert box.is_visible()
            assert box.locator("li").all_inner_texts() == notes
            ui.page.get_by_role("button", name="Dismiss the server's note").click()
            assert box.is_hidden()
            ui.reload()
            assert box.is_hidden()  # dismissed once, not shown again

    await in_browser(scenario)
