"""The page at GET /, end to end: real server, real models (demo), headless Chromium.

Each test checks the page against the server's own account of the stream (its snapshot),
not only against what the page shows.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import Browser

from ..conftest import Server, StartServer
from .chorus_page import ChorusPage
from .conftest import BRISK, CuttableProxy, RunInBrowser

pytestmark = pytest.mark.browser


def slot_states(snapshot: dict[str, Any]) -> list[str]:
    return [s["state"] for s in snapshot["slots"]]


async def test_two_models_stream_into_two_panes_at_once(
    chorus: Server, in_browser: RunInBrowser
) -> None:
    def scenario(browser: Browser) -> None:
        with ChorusPage(browser, chorus.url) as ui:
            ui.open()
            ui.clear_models()
            ui.pick("stead")  # search as you type, Enter picks the first match
            ui.pick("think")
            ui.pick("stead")  # the same model twice is two slots
            assert ui.chips() == ["demo/steady", "demo/thinker", "demo/steady"]
            ui.page.locator(".chip-remove").last.click()
            assert ui.chips() == ["demo/steady", "demo/thinker"]

            stream = ui.send("Hello there")
            ui.wait_states("streaming", "streaming")  # both at the same moment
            ui.wait_states("done", "done")

            snap = ui.snapshot(stream)
            assert slot_states(snap) == ["done", "done"]
            for slot in (0, 1):
                text = snap["slots"][slot]["text"]
                assert text
                assert ui.answer_html(slot) == ui.shown(snap["slots"][slot])

            # Reasoning is shown apart from the answer, collapsed.
            reasoning = ui.pane(1).locator("details.reasoning")
            assert reasoning.count() == 1
            assert reasoning.get_attribute("open") is None
            assert snap["slots"][1]["reasoning"].split()[0] in reasoning.text_content()
            assert ui.pane(0).locator("details.reasoning").count() == 0

            stats = ui.pane(0).locator(".stats").inner_text()
            assert re.search(r"TTFT \d+ ms", stats), stats
            assert re.search(r"\d+(\.\d)? tok/s", stats), stats
            usage = snap["slots"][0]["usage"]
            assert f"out {'≈' if usage['estimated'] else ''}{usage['output_tokens']}" in stats

            # The choice and the conversation survive a reload.
            ui.reload()
            assert ui.chips() == ["demo/steady", "demo/thinker"]
            assert ui.answer_html(0) == ui.shown(snap["slots"][0])

            # Copy gives the answer's Markdown source.
            ui.context.grant_permissions(["clipboard-read", "clipboard-write"])
            ui.pane(0).locator(".turn-foot .copy").click()
            assert ui.page.evaluate("navigator.clipboard.readText()") == snap["slots"][0]["text"]

            # Second turn, typed with Shift+Enter for a new line: each slot is sent its own
            # history.
            ui.page.click("#prompt")
            ui.page.keyboard.type("And again")
            ui.page.keyboard.press("Shift+Enter")
            ui.page.keyboard.type("on two lines")
            assert ui.page.input_value("#prompt") == "And again\non two lines"
            with ui.page.expect_request(lambda r: r.url.endswith("/v1/streams")) as sent:
                ui.page.keyboard.press("Enter")
            body = sent.value.post_data_json
            assert body is not None
            for slot, target in enumerate(body["models"]):
                assert target["messages"] == [
                    {"role": "user", "content": "Hello there"},
                    {"role": "assistant", "content": snap["slots"][slot]["text"]},
                    {"role": "user", "content": "And again\non two lines"},
                ]
            ui.wait_states("done", "done")
            assert ui.pane(0).locator(".turn").count() == 2
            assert ui.pane(0).locator(".user-msg").last.inner_text() == "And again\non two lines"

            # A new chat clears the panes; the old one can be reopened from History.
            ui.page.click("#new-chat")
            assert ui.pane(0).locator(".turn").count() == 0
            ui.page.click("#history-btn")
            ui.page.locator(".history-open", has_text="Hello there").click()
            assert ui.pane(1).locator(".turn").count() == 2
            assert ui.errors == []
            assert ui.foreign_requests() == []

    await in_browser(scenario)


async def test_stop_one_pane_while_the_other_finishes_then_esc_stops_all(
    chorus: Server, in_browser: RunInBrowser
) -> None:
    def scenario(browser: Browser) -> None:
        with ChorusPage(browser, chorus.url, models=["demo/steady", "demo/long"]) as ui:
            ui.open()
            stream = first_stream = ui.send("Count slowly")
            ui.wait_states("streaming", "streaming")
            assert ui.page.locator("#stop-all").is_visible()
            assert not ui.page.locator("#send").is_visible()

            ui.stop_pane(1)
            ui.wait_states(None, "stopped")
            snap = ui.snapshot(stream)
            assert snap["slots"][1]["state"] == "stopped"
            assert snap["slots"][1]["stop_reason"] == "user"
            assert snap["slots"][0]["state"] == "running"  # the other one goes on

            ui.wait_states("done", "stopped")
            snap = ui.snapshot(stream)
            assert slot_states(snap) == ["done", "stopped"]
            assert ui.answer_html(1) == ui.shown(snap["slots"][1])
            assert "Stopped" in ui.pane(1).locator(".turn-note").inner_text()

            # Esc stops every slot, upstream included.
            stream = ui.send("Once more")
            ui.wait_states("streaming", "streaming")
            ui.page.keyboard.press("Escape")
            ui.wait_states("stopped", "stopped")
            assert slot_states(ui.snapshot(stream)) == ["stopped", "stopped"]

            # Regenerate asks one model again, with that pane's history only.
            first = ui.snapshot(first_stream)["slots"][0]["text"]
            with ui.page.expect_request(lambda r: r.url.endswith("/v1/streams")) as sent:
                ui.pane(0).locator("button.regen").click()
            history = [
                {"role": "user", "content": "Count slowly"},
                {"role": "assistant", "content": first},
                {"role": "user", "content": "Once more"},
            ]
            body = sent.value.post_data_json
            assert body is not None
            assert body["models"] == [{"model": "demo/steady", "messages": history}]
            ui.wait_states("done", "stopped")
            assert ui.pane(0).locator(".turn").count() == 2
            assert ui.errors == []

    await in_browser(scenario)


async def test_an_erroring_model_shows_its_error_while_the_others_finish(
    chorus: Server, in_browser: RunInBrowser
) -> None:
    def scenario(browser: Browser) -> None:
        models = ["demo/broken", "demo/steady", "demo/limited"]
        with ChorusPage(browser, chorus.url, models=models) as ui:
            ui.open()
            stream = ui.send("Try it")
            # A rate-limited model retries before its first token: the pane says so,
            # with the typing indicator still up.
            ui.wait_states(None, None, "retrying")
            assert ui.pane(2).locator(".typing").is_visible()
            assert "Retrying" in ui.pane(2).locator(".turn-note").inner_text()

            ui.wait_states("error", "streaming", None)
            error = ui.pane(0).locator(".error-box")
            assert error.locator(".error-type").inner_text() == "upstream"
            assert ui.answer_length(0) > 0  # what came before the failure stays

            ui.wait_states("error", "done", "error")
            assert ui.pane(2).locator(".error-type").inner_text() == "rate_limit"
            snap = ui.snapshot(stream)
            assert slot_states(snap) == ["error", "done", "error"]
            assert snap["slots"][0]["error"]["type"] == "upstream"
            assert ui.errors == []

    await in_browser(scenario)


async def test_hostile_markdown_renders_inert(chorus: Server, in_browser: RunInBrowser) -> None:
    def scenario(browser: Browser) -> None:
        with ChorusPage(browser, chorus.url, models=["demo/hostile"]) as ui:
            ui.open()
            ui.send("Be nasty")
            ui.wait_states("done")
            answer = ui.pane(0).locator(".answer")
            assert ui.page.evaluate("window.__pwned") is None
            for tag in ("img", "script", "iframe", "svg", "object", "embed", "style"):
                assert answer.locator(tag).count() == 0, tag
            hrefs = [a.get_attribute("href") for a in answer.locator("a").all()]
            assert hrefs == ["https://tracker.invalid/pixel.png?leak=secret",
                             "https://example.com/"]
            text = answer.inner_text()
            assert '<img src=x onerror="window.__pwned = \'img\'">' in text
            assert "<script>window.__pwned = 'script'</script>" in text
            assert answer.locator(".md-link-refused").all_inner_texts() == [
                "click me", "data", "rel"]
            assert answer.locator("strong").inner_text() == "still bold"
            # The image is a link, never fetched: nothing left the server's origin.
            assert ui.foreign_requests() == []
            assert ui.errors == []

    await in_browser(scenario)


async def test_reload_mid_stream_resumes_without_gaps_or_duplicates(
    chorus: Server, in_browser: RunInBrowser
) -> None:
    def scenario(browser: Browser) -> None:
        with ChorusPage(browser, chorus.url, models=["demo/long", "demo/steady"]) as ui:
            ui.open()
            stream = ui.send("Tell me a long story")
            ui.page.wait_for_function(
                "() => [...document.querySelectorAll('.pane .answer')]"
                ".every((a) => a.textContent.length > 40)")
            before = ui.answer_length(0)
            with ui.page.expect_request(lambda r: "/events" in r.url) as resumed:
                ui.reload()
            assert int(resumed.value.all_headers()["last-event-id"]) > 0
            ui.wait_states("streaming", None)
            assert ui.answer_length(0) >= before  # restored, then continued

            ui.stop_pane(0)  # the long one need not run to its end
            ui.wait_states("stopped", "done")
            snap = ui.snapshot(stream)
            stored = ui.stored_conversation()
            for slot in (0, 1):
                text = snap["slots"][slot]["text"]
                assert stored["panes"][slot]["turns"][-1]["answer"] == text
                assert ui.answer_html(slot) == ui.shown(snap["slots"][slot])
            assert stored["runs"] == []
            assert ui.errors == []

    await in_browser(scenario)


async def test_a_network_drop_mid_stream_resumes_with_last_event_id(
    chorus: Server, flaky_link: CuttableProxy, in_browser: RunInBrowser
) -> None:
    def scenario(browser: Browser) -> None:
        with ChorusPage(browser, flaky_link.url, models=["demo/long", "demo/steady"]) as ui:
            ui.open()
            stream = ui.send("Keep going")
            ui.page.wait_for_function(
                "() => document.querySelector('.pane .answer').textContent.length > 40")
            with ui.page.expect_request(lambda r: "/events" in r.url, timeout=15_000) as again:
                flaky_link.cut()  # EventSource reconnects by itself
            headers = again.value.all_headers()
            assert int(headers["last-event-id"]) > 0
            ui.wait_states("streaming", "done")
            ui.stop_pane(0)
            ui.wait_states("stopped", "done")
            snap = ui.snapshot(stream)
            for slot in (0, 1):
                assert ui.answer_html(slot) == ui.shown(snap["slots"][slot])
            assert ui.errors == []

    await in_browser(scenario)


async def test_a_server_with_api_keys_is_used_with_the_key_from_settings(
    start_server: StartServer, in_browser: RunInBrowser
) -> None:
    server = await start_server(BRISK, env={"CHORUS_API_KEYS": "k-123"})

    def scenario(browser: Browser) -> None:
        with ChorusPage(browser, server.url, models=["demo/steady", "demo/thinker"]) as ui:
            ui.open()
            assert ui.page.get_attribute("body", "data-models") == "failed"
            assert "API key" in ui.page.inner_text("#toast")

            ui.page.click("#settings-btn")
            ui.page.fill("#set-api-key", "k-123")
            ui.page.press("#set-api-key", "Tab")  # a change saves it and reloads the models
            ui.page.wait_for_selector("body[data-models=ready]", state="attached")
            ui.page.keyboard.press("Escape")

            with ui.page.expect_request(lambda r: "/events" in r.url) as events:
                stream = ui.send("With a key")
            assert events.value.all_headers()["authorization"] == "Bearer k-123"
            ui.wait_states("done", "done")
            snap = ui.page.request.get(f"/v1/streams/{stream}",
                                       headers={"Authorization": "Bearer k-123"}).json()
            assert slot_states(snap) == ["done", "done"]
            ui.reload()  # the key is remembered
            assert ui.page.get_attribute("body", "data-models") == "ready"
            assert ui.errors == []

    await in_browser(scenario)


async def test_the_prompt_grows_with_its_text_up_to_a_limit_and_shrinks_when_sent(
    chorus: Server, in_browser: RunInBrowser
) -> None:
    def scenario(browser: Browser) -> None:
        with ChorusPage(browser, chorus.url, models=["demo/steady"]) as ui:
            ui.open()
            prompt = ui.page.locator("#prompt")

            def height() -> float:
                return float(prompt.evaluate("(el) => el.getBoundingClientRect().height"))

            one_line = height()
            prompt.fill("a\nb\nc\nd")
            four_lines = height()
            assert four_lines > one_line + 40
            prompt.fill("\n".join("line" for _ in range(60)))
            limit = ui.page.evaluate("innerHeight * 0.3")
            assert four_lines < height() <= limit + 1
            ui.page.fill("#prompt", "Short again")
            ui.page.press("#prompt", "Enter")
            ui.page.wait_for_function("() => !document.querySelector('#prompt').value")
            assert height() == one_line
            assert ui.errors == []

    await in_browser(scenario)
