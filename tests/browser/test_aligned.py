"""The aligned view: one row per prompt across the panes, remembered across reloads, with
Stop and resume working as in the columns."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser

from ..conftest import Server
from .chorus_page import ChorusPage
from .conftest import RunInBrowser

pytestmark = pytest.mark.browser

CELL_TOPS = """(t) => [...document.querySelectorAll(`.turn-row[data-turn="${t}"] .turn`)]
  .map((e) => Math.round(e.getBoundingClientRect().top))"""

# Whether each row's Edit button shows (computed style: a row out of view is skipped).
EDIT_SHOWN = """() => [...document.querySelectorAll('.turn-row .row-prompt .edit')]
  .map((button) => getComputedStyle(button).display !== 'none')"""


async def test_turns_align_in_rows_stop_and_resume_work_and_the_choice_is_kept(
    chorus: Server, in_browser: RunInBrowser
) -> None:
    def scenario(browser: Browser) -> None:
        with ChorusPage(browser, chorus.url, models=["demo/long", "demo/steady"]) as ui:
            ui.open()
            toggle = ui.page.locator("#layout-btn")
            assert toggle.get_attribute("aria-pressed") == "false"
            toggle.click()
            assert toggle.get_attribute("aria-pressed") == "true"
            assert ui.page.get_attribute("#panes", "data-layout") == "aligned"

            first = ui.send("First question")
            ui.wait_states("streaming", "streaming")
            row = ui.page.locator('.turn-row[data-turn="0"]')
            assert row.locator(".row-prompt .user-msg").inner_text() == "First question"
            assert row.locator(".turn").count() == 2
            tops = ui.page.evaluate(CELL_TOPS, 0)
            assert len(tops) == 2
            assert tops[0] == tops[1]  # side by side

            # Reload mid-stream: the view is remembered and the stream resumes.
            ui.page.wait_for_function(
                "() => document.querySelector('.turn[data-slot=\"0\"] .answer')"
                ".textContent.length > 40")
            with ui.page.expect_request(lambda r: "/events" in r.url) as resumed:
                ui.reload()
            assert int(resumed.value.all_headers()["last-event-id"]) > 0
            assert ui.page.get_attribute("#panes", "data-layout") == "aligned"
            ui.wait_states("streaming", "done")
            ui.stop_pane(0)  # Stop sits in the pane's head, above the rows
            ui.wait_states("stopped", "done")
            snap = ui.snapshot(first)
            assert [s["state"] for s in snap["slots"]] == ["stopped", "done"]
            for slot in (0, 1):
                assert ui.answer_html(slot) == ui.shown(snap["slots"][slot])

            # A second prompt makes a second row, below the first, still side by side.
            ui.send("Second question")
            ui.wait_states("streaming", None)
            ui.stop_pane(0)
            ui.wait_states("stopped", "done")
            assert ui.page.locator(".turn-row").count() == 2
            assert ui.page.evaluate(EDIT_SHOWN) == [False, True]  # the last prompt's only
            below = ui.page.evaluate(CELL_TOPS, 1)
            assert below[0] == below[1]
            # One scroller for all rows: scrolling moves every pane's answers together.
            assert ui.page.locator(".pane-body").count() == 0
            ui.page.evaluate("document.getElementById('panes').scrollTop = 0")
            top = ui.page.evaluate(CELL_TOPS, 1)
            moved = ui.page.evaluate(
                "() => { const p = document.getElementById('panes');"
                " p.scrollTop = 150; return p.scrollTop; }")
            assert moved > 0
            assert ui.page.evaluate(CELL_TOPS, 1) == [y - moved for y in top]

            # Back to columns: the same turns, one column per model.
            toggle.click()
            assert ui.page.get_attribute("#panes", "data-layout") == "columns"
            assert ui.pane(0).locator(".turn").count() == 2
            ui.reload()
            assert ui.page.get_attribute("#panes", "data-layout") == "columns"
            assert ui.errors == []

    await in_browser(scenario)
