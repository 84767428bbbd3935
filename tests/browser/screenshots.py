"""Screenshots of the page for the docs: light and dark, desktop and phone width.

Run by hand from the repository root:

    .venv/bin/python -m tests.browser.screenshots [--out docs/img]

It starts Chorus in-process on a free loopback port with three simulated models (a
Markdown answer, a reasoning model, one that fails mid-answer), asks them one question
and saves ``ui-{desktop,phone}-{light,dark}.png``; then the comparing views at desktop
width: ``ui-aligned.png`` (two prompts, one row each), ``ui-blind.png`` (a blind round
before the pick) and ``ui-versions.png`` (a regenerated answer at version 2/2, and a pick);
and ``ui-attachment.png`` (an image attached, sent to two models, one of which takes none)
and ``ui-picker-facts.png`` (the picker's list with context, price and description).
``--extras`` makes only these last two. ``thread-desktop-{light,dark}.png`` show the
conversation page: the writer and the reasoner in turn, picked by a manager (whose second
pick falls back to round-robin); ``--thread`` makes only these.
"""

from __future__ import annotations

import argparse
import json
import struct
import tomllib
import zlib
from functools import partial
from pathlib import Path

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve
from playwright.sync_api import Browser, BrowserContext, Page, ViewportSize, sync_playwright

from app import create_app
from app.config import build_config
from providers.demo import _words

from .conftest import ARGS, CHROMIUM

ROOT = Path(__file__).resolve().parents[2]
PROMPT = "How do I stop a long-running task cleanly in Python?"

WRITER = """## Short answer

Give the task a **cancellation point** and check it often:

- pass a `threading.Event` (or an async cancel scope) into the work;
- check it between steps, not only at the end;
- release what you hold in a `finally` block.

```python
def worker(stop: threading.Event) -> None:
    while not stop.is_set():
        do_one_step()
```

| Approach | Stops at once | Cleans up |
|---|:-:|:-:|
| `Event` flag | no | yes |
| cancel scope | yes | yes |
"""

THINKER = """Stopping works best when it is *cooperative*: the task decides where it may stop.

1. Put the work in a loop with a clear step.
2. Check a stop flag at each step.
3. Keep cleanup in `finally`, so it runs on every path.

With **trio** or **anyio**, a cancel scope does this for you: every `await` is a
checkpoint, and leaving the scope closes the connections it opened.
"""

CONFIG = f"""
[providers.demo]
type = "demo"
images = ["writer", "reasoner"]

[providers.demo.prices.writer]
input = 0.15
output = 0.60

[providers.demo.prices.reasoner]
input = 1.10
output = 4.40

[providers.demo.model_info.writer]
context = 128000
description = "Clear, structured answers with code."

[providers.demo.model_info.reasoner]
context = 200000
description = "Thinks first, then answers."

[providers.demo.options.presets.writer]
ttft = 0.35
rate = 70.0
tokens = {len(_words(WRITER))}
text = '''{WRITER}'''

[providers.demo.options.presets.reasoner]
ttft = 0.6
rate = 55.0
reasoning = 36
tokens = {len(_words(THINKER))}
text = '''{THINKER}'''

[providers.demo.options.presets.moderator]
ttft = 0.1
rate = 0.0
tokens = 1
text = "Reasoner"

[providers.demo.options.presets.unreliable]
ttft = 0.25
rate = 40.0
tokens = 200
fail_after = 22
"""

MODELS = ["demo/writer", "demo/reasoner", "demo/unreliable"]
ENDED = ("() => [...document.querySelectorAll('.pane')]"
         ".every((p) => ['done', 'error', 'stopped'].includes(p.dataset.state))")
SIZES: dict[str, ViewportSize] = {"desktop": {"width": 1280, "height": 800},
                                  "phone": {"width": 390, "height": 844}}


def open_page(browser: Browser, url: str, viewport: ViewportSize, scheme: str,
              **settings: object) -> tuple[BrowserContext, Page]:
    """A fresh context on the page, its settings seeded with MODELS and ``settings``."""
    seed = json.dumps(json.dumps({"models": MODELS, **settings}))
    context = browser.new_context(viewport=viewport, device_scale_factor=1,
                                  color_scheme="dark" if scheme == "dark" else "light")
    context.add_init_script(script=f"localStorage.setItem('chorus:settings', {seed});")
    page = context.new_page()
    page.goto(url)
    page.wait_for_selector("body[data-models]", state="attached")
    return context, page


def ask(page: Page, prompt: str) -> None:
    page.fill("#prompt", prompt)
    page.press("#prompt", "Enter")
    page.wait_for_function(ENDED, timeout=30_000)


def save(page: Page, path: Path) -> Path:
    page.wait_for_timeout(300)  # let the last frame paint
    page.screenshot(path=str(path))
    return path


def picture(size: int = 96) -> bytes:
    """A small PNG (a colour gradient) to attach: written here, so no file is needed."""
    rows = b"".join(b"\0" + bytes(c for x in range(size)
                                   for c in (40 + x * 2, 90 + y, 200 - x, 255))
                    for y in range(size))

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", size, size, 8, 6, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def shoot_extras(browser: Browser, url: str, out: Path) -> list[Path]:
    desktop = SIZES["desktop"]
    saved = []
    models = {"models": ["demo/writer", "demo/unreliable"]}
    context, page = open_page(browser, url, desktop, "light", **models)
    files = [{"name": "gradient.png", "mimeType": "image/png", "buffer": picture()}]
    page.set_input_files("#attach-input", files=files)
    page.fill("#prompt", "What colours are in this picture?")
    page.press("#prompt", "Enter")
    page.wait_for_function(ENDED, timeout=30_000)
    page.set_input_files("#attach-input", files=files)  # a chip waiting in the composer
    page.fill("#prompt", "And this one?")
    saved.append(save(page, out / "ui-attachment.png"))
    context.close()

    context, page = open_page(browser, url, desktop, "light")
    page.fill("#model-search", "er")  # writer and reasoner, with their facts
    page.locator(".option-desc").first.wait_for()
    saved.append(save(page, out / "ui-picker-facts.png"))
    context.close()
    return saved


def shoot_thread(browser: Browser, url: str, out: Path) -> list[Path]:
    saved = []
    for scheme in ("light", "dark"):
        context = browser.new_context(viewport=SIZES["desktop"], device_scale_factor=1,
                                      color_scheme=scheme)
        page = context.new_page()
        page.goto(url + "static/thread.html")
        page.fill("#participants", "Writer=demo/writer, Reasoner=demo/reasoner")
        page.fill("#rounds", "1")
        page.fill("#manager", "demo/moderator")
        page.fill("#topic", PROMPT)
        page.click("#start")
        page.locator("#now").filter(has_text="The conversation has ended.").wait_for(
            timeout=30_000)
        saved.append(save(page, out / f"thread-desktop-{scheme}.png"))
        context.close()
    return saved


def shoot(url: str, out: Path, only: str = "") -> list[Path]:
    saved = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        if only != "extras":
            saved += shoot_thread(browser, url, out)
        if only != "thread":
            saved += shoot_extras(browser, url, out)
        if only:
            browser.close()
            return saved
        for size, viewport in SIZES.items():
            for scheme in ("light", "dark"):
                context, page = open_page(browser, url, viewport, scheme)
                ask(page, PROMPT)
                saved.append(save(page, out / f"ui-{size}-{scheme}.png"))
                context.close()
        desktop = SIZES["desktop"]

        context, page = open_page(browser, url, desktop, "light", layout="aligned")
        ask(page, PROMPT)
        ask(page, "And in a thread pool?")
        saved.append(save(page, out / "ui-aligned.png"))
        context.close()

        context, page = open_page(browser, url, desktop, "dark", blind=True)
        ask(page, PROMPT)
        saved.append(save(page, out / "ui-blind.png"))
        context.close()

        context, page = open_page(browser, url, desktop, "light")
        ask(page, PROMPT)
        page.locator('.pane[data-slot="0"] button.regen').click()
        page.wait_for_function(ENDED, timeout=30_000)
        page.locator('.turn[data-slot="0"] button.pick').click()
        saved.append(save(page, out / "ui-versions.png"))
        context.close()
        browser.close()
    return saved


async def main(out: Path, only: str) -> None:
    app = create_app(build_config(tomllib.loads(CONFIG), {}))
    hc = HypercornConfig()
    hc.bind = ["127.0.0.1:0"]
    hc.accesslog = None
    hc.errorlog = None
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(partial(serve, app, hc))
        for path in await trio.to_thread.run_sync(shoot, binds[0] + "/", out, only):
            print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    parser.add_argument("--extras", dest="only", action="store_const", const="extras",
                        default="", help="only the attachment and picker screenshots")
    parser.add_argument("--thread", dest="only", action="store_const", const="thread",
                        help="only the conversation page's screenshots")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    trio.run(main, args.out.resolve(), args.only)
