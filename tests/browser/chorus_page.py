"""The Chorus page as the browser tests drive it (Playwright's sync API, browser thread)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from playwright.sync_api import Browser, Response, ViewportSize

DESKTOP: ViewportSize = {"width": 1280, "height": 800}
PHONE: ViewportSize = {"width": 390, "height": 844}

# What the page shows for a whole answer at once: the renderer's output, with the page's
# own additions (code blocks as focusable regions; a cut-off answer without its held-back
# trailing markup).
RENDER = """async ([text, state]) => {
  const [m, a11y, pane] = await Promise.all([
    import('/static/markdown.js'), import('/static/a11y.js'), import('/static/pane.js')]);
  const box = document.createElement('div');
  box.append(m.renderMarkdown(pane.shownAnswer({answer: text, state})));
  a11y.labelCode(box);
  return box.innerHTML;
}"""


# Every WCAG 2.2 A/AA rule axe has, and its best practices.
# The page saves at once when it is hidden (app.js): a statement that makes it do so.
FLUSH_SAVES = " dispatchEvent(new PageTransitionEvent('pagehide'));"
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"]
AXE_RUN = """async (tags) => {
  const result = await axe.run(document, {runOnly: {type: 'tag', values: tags},
                                          resultTypes: ['violations']});
  return result.violations.map((v) => `${v.id} (${v.impact}): ` +
    v.nodes.slice(0, 4).map((n) => n.target.join(' ') + ' ' + n.failureSummary).join(' | '));
}"""


class ChorusPage:
    """One browser context on a Chorus server. ``models`` seeds the saved model choice."""

    def __init__(self, browser: Browser, base_url: str, *, models: list[str] | None = None,
                 viewport: ViewportSize = DESKTOP, color_scheme: str = "light",
                 bypass_csp: bool = False) -> None:
        self.base_url = base_url
        # bypass_csp lets a test inject a checker (axe) the page's own policy would refuse.
        self.context = browser.new_context(
            base_url=base_url, viewport=viewport, bypass_csp=bypass_csp,
            color_scheme="dark" if color_scheme == "dark" else "light")
        self.context.set_default_timeout(15_000)
        if models is not None:
            seed = json.dumps(json.dumps({"models": models}))
            self.context.add_init_script(
                script=f"if (!localStorage.getItem('chorus:settings'))"
                       f" localStorage.setItem('chorus:settings', {seed});")
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        self.page.on("request", lambda request: self.requests.append(request.url))

    def __enter__(self) -> ChorusPage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.context.close()

    def open(self) -> None:
        self.page.goto("/")
        self.wait_ready()

    def reload(self) -> None:
        self.page.reload()
        self.wait_ready()

    def wait_ready(self) -> None:
        """Waits until the page has its model list (body[data-models] is set then)."""
        self.page.wait_for_selector("body[data-models]", state="attached")

    # Picking models

    def chips(self) -> list[str]:
        return self.page.locator(".chip .chip-ref").all_inner_texts()

    def clear_models(self) -> None:
        while self.page.locator(".chip-remove").count():
            self.page.locator(".chip-remove").last.click()

    def pick(self, query: str) -> None:
        search = self.page.locator("#model-search")
        search.fill(query)
        search.press("Enter")

    # Sending and stopping

    def send(self, text: str) -> str:
        """Types a message, presses Enter; returns the id of the stream it created."""
        with self.page.expect_response(self.is_create) as info:
            self.page.fill("#prompt", text)
            self.page.press("#prompt", "Enter")
        response = info.value
        assert response.status == 201, response.text()
        return str(response.json()["id"])

    @staticmethod
    def is_create(response: Response) -> bool:
        """The response that creates a stream."""
        return response.request.method == "POST" and urlsplit(response.url).path == "/v1/streams"

    def pane(self, slot: int) -> Any:
        return self.page.locator(f'.pane[data-slot="{slot}"]')

    def stop_pane(self, slot: int) -> None:
        self.pane(slot).locator("button.stop").click()

    # Waiting and reading

    def wait_states(self, *states: str | None, timeout: float = 15_000) -> None:
        """Waits until pane i is in states[i] (None: any state), all at the same moment."""
        self.page.wait_for_function(
            """(states) => states.every((s, i) => s === null ||
                 document.querySelector(`.pane[data-slot="${i}"]`)?.dataset.state === s)""",
            arg=list(states), timeout=timeout)

    def state(self, slot: int) -> str:
        return str(self.pane(slot).get_attribute("data-state"))

    def turns(self, slot: int) -> Any:
        """A slot's turns, in the columns or in the aligned view."""
        return self.page.locator(f'.turn[data-slot="{slot}"]')

    def answer_html(self, slot: int) -> str:
        return str(self.turns(slot).last.locator(".answer").inner_html())

    def answer_length(self, slot: int) -> int:
        return int(self.page.evaluate(
            "(i) => [...document.querySelectorAll(`.turn[data-slot='${i}'] .answer`)]"
            ".pop()?.textContent.length ?? 0", slot))

    def rendered(self, text: str, state: str = "done") -> str:
        """What the page shows for a whole text at once, for a turn ended in ``state``."""
        return str(self.page.evaluate(RENDER, [text, state]))

    def shown(self, slot: dict[str, Any]) -> str:
        """What the page shows for a slot of the server's snapshot."""
        return self.rendered(slot["text"], slot["state"])

    def axe_violations(self, axe_script: Path) -> list[str]:
        """axe-core's violations on the page as it is now (needs ``bypass_csp``)."""
        if not self.page.evaluate("typeof window.axe === 'object'"):
            self.page.add_script_tag(path=str(axe_script))
        return list(self.page.evaluate(AXE_RUN, AXE_TAGS))

    def assert_axe_clean(self, axe_script: Path) -> None:
        """No axe-core violation on the page as it is now, in the light scheme and in the
        dark one (the page themes itself in CSS alone, so switching the emulated scheme
        restyles it as a fresh load in that scheme would)."""
        found = []
        for scheme in ("dark", "light"):
            self.page.emulate_media(color_scheme=scheme)
            found += [f"[{scheme}] {v}" for v in self.axe_violations(axe_script)]
        assert not found, "\n".join(found)

    def snapshot(self, stream_id: str) -> dict[str, Any]:
        response = self.page.request.get(f"/v1/streams/{stream_id}")
        assert response.ok, response.text()
        result: dict[str, Any] = response.json()
        return result

    def stored_conversation(self) -> dict[str, Any]:
        """The open conversation as stored (saves flushed first), read back as the page
        reads it after a reload: its head and its turns' entries put together."""
        result: dict[str, Any] = self.page.evaluate(
            "async () => {" + FLUSH_SAVES + " const store = await import('/static/store.js');"
            " return store.loadConversation(store.currentConversationId()); }")
        return result

    def stored_text(self) -> str:
        """Every entry the page keeps in localStorage, raw (saves flushed first)."""
        text: str = self.page.evaluate(
            "() => {" + FLUSH_SAVES + " return Object.keys(localStorage)"
            ".filter((k) => k.startsWith('chorus:'))"
            ".map((k) => k + '=' + localStorage.getItem(k)).join('\\n'); }")
        return text

    def foreign_requests(self) -> list[str]:
        """Requests that left the Chorus server's origin."""
        origin = urlsplit(self.base_url).netloc
        return [u for u in self.requests
                if urlsplit(u).scheme in ("http", "https", "ws", "wss")
                and urlsplit(u).netloc != origin]
