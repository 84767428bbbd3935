"""Images attached to a prompt: by the file picker or a paste, shown as removable chips,
sent as data: URL image parts to every pane whose model takes images, left out (and said
so) for a model that takes none, and kept as history for the next turn while the page is
open."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from playwright.sync_api import Browser, Request

from ..conftest import Server, StartServer
from .chorus_page import ChorusPage
from .conftest import RunInBrowser

pytestmark = pytest.mark.browser

IMAGES = """
[server]
resume_grace = 10.0

[providers.demo]
type = "demo"
images = ["seer", "looker"]

[providers.demo.options.presets]
seer = { ttft = 0.05, rate = 80.0, tokens = 30 }
looker = { ttft = 0.05, rate = 80.0, tokens = 30 }
textonly = { ttft = 0.05, rate = 80.0, tokens = 30 }
"""

# The smallest valid PNG: one transparent pixel.
PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChw"
                       "GA60e6kgAAAABJRU5ErkJggg==")
DATA_URL = "data:image/png;base64," + base64.b64encode(PNG).decode()

PASTE = """(b64) => {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const data = new DataTransfer();
  data.items.add(new File([bytes], 'pasted.png', {type: 'image/png'}));
  document.getElementById('prompt').dispatchEvent(
    new ClipboardEvent('paste', {clipboardData: data, bubbles: true, cancelable: true}));
}"""


@pytest.fixture
async def seeing(start_server: StartServer) -> Server:
    return await start_server(IMAGES)


def user_messages(body: dict[str, Any], slot: int) -> list[Any]:
    return [m["content"] for m in body["models"][slot]["messages"] if m["role"] == "user"]


def image_urls(content: Any) -> list[str]:
    if isinstance(content, str):
        return []
    return [part["image_url"]["url"] for part in content if part["type"] == "image_url"]


def is_create(request: Request) -> bool:
    return request.method == "POST" and request.url.endswith("/v1/streams")


async def test_an_image_goes_to_the_models_that_take_images_and_stays_in_their_history(
    seeing: Server, in_browser: RunInBrowser
) -> None:
    def scenario(browser: Browser) -> None:
        models = ["demo/seer", "demo/looker", "demo/textonly"]
        with ChorusPage(browser, seeing.url, models=models) as ui:
            ui.open()
            page = ui.page
            chips = page.locator("#attachments .attachment")
            # The file picker, then a paste: two chips, each removable by its own name.
            page.set_input_files("#attach-input", files=[
                {"name": "dot.png", "mimeType": "image/png", "buffer": PNG}])
            chips.first.wait_for()
            page.evaluate(PASTE, base64.b64encode(PNG).decode())
            page.wait_for_function(
                "() => document.querySelectorAll('#attachments .attachment').length === 2")
            assert chips.locator(".attachment-name").all_inner_texts() == ["dot.png", "pasted.png"]
            assert chips.first.locator("img").get_attribute("src") == DATA_URL
            page.get_by_role("button", name="Remove image pasted.png").click()
            assert chips.count() == 1

            with page.expect_request(is_create) as sent:
                ui.page.fill("#prompt", "What is this?")
                ui.page.press("#prompt", "Enter")
            body = sent.value.post_data_json
            assert chips.count() == 0  # the tray empties once the prompt is sent
            assert [image_urls(user_messages(body, s)[-1]) for s in range(3)] == [
                [DATA_URL], [DATA_URL], []]
            assert user_messages(body, 2)[-1] == "What is this?"
            ui.wait_states("done", "done", "done")
            for slot in (0, 1):
                assert ui.turns(slot).last.locator(".answer").inner_text().startswith(
                    "I was given 1 image.")
                assert ui.turns(slot).last.locator(".turn-images img").count() == 1
            assert "I was given" not in ui.turns(2).last.locator(".answer").inner_text()
            assert ui.turns(2).last.locator(".images-note").inner_text() == (
                "This model takes no images: it was sent the prompt without the 1 image.")

            # The next turn carries the image in its history, and the model sees it again.
            with page.expect_request(is_create) as sent:
                ui.page.fill("#prompt", "And now?")
                ui.page.press("#prompt", "Enter")
            body = sent.value.post_data_json
            assert [image_urls(m) for m in user_messages(body, 0)] == [[DATA_URL], []]
            assert [image_urls(m) for m in user_messages(body, 2)] == [[], []]
            ui.wait_states("done", "done", "done")
            assert ui.turns(0).last.locator(".answer").inner_text().startswith(
                "I was given 1 image.")

            # Images are not written to localStorage: after a reload the turn says so.
            stored = ui.stored_text()
            assert "data:image" in str(body)
            assert "data:image" not in stored
            assert "dataUrl" not in stored
            ui.reload()
            note = ui.turns(0).first.locator(".images-note")
            assert note.inner_text() == ("Images are not kept after a reload: later turns "
                                         "send this prompt without them.")
            assert ui.errors == []

    await in_browser(scenario)


async def test_an_image_over_5_mb_is_refused_with_a_message(
    seeing: Server, in_browser: RunInBrowser
) -> None:
    def scenario(browser: Browser) -> None:
        with ChorusPage(browser, seeing.url, models=["demo/seer"]) as ui:
            ui.open()
            big = PNG + bytes(6 * 1024 * 1024)
            ui.page.set_input_files("#attach-input", files=[
                {"name": "huge.png", "mimeType": "image/png", "buffer": big}])
            ui.page.locator("#toast").wait_for()
            assert ui.page.inner_text("#toast") == (
                "huge.png is 6 MB: images up to 5 MB can be attached.")
            ui.page.set_input_files("#attach-input", files=[
                {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"hello"}])
            ui.page.wait_for_function(
                "() => document.getElementById('toast').textContent"
                " === 'notes.txt is not an image.'")
            assert ui.page.locator("#attachments .attachment").count() == 0
            assert ui.page.locator("#attachments").is_hidden()

    await in_browser(scenario)
