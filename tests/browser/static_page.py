"""Running the page's own modules in Chromium without a server.

Files come from app/static through Playwright's request routing on a made-up origin, so a
test can import any module (``/static/<name>``) and call it on plain data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, Route

from .conftest import BrowserThread

STATIC = Path(__file__).resolve().parents[2] / "app" / "static"
ORIGIN = "http://static-page.test"
TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html"}


def _serve(route: Route) -> None:
    path = route.request.url.removeprefix(ORIGIN)
    if path == "/":
        route.fulfill(body="<!doctype html><title>modules</title><body></body>",
                      content_type="text/html")
        return
    file = STATIC / path.removeprefix("/static/")
    if path.startswith("/static/") and file.is_file() and STATIC in file.resolve().parents:
        route.fulfill(body=file.read_bytes(), content_type=TYPES.get(file.suffix, "text/plain"))
    else:
        route.fulfill(status=404, body="")


def run_js(browser_thread: BrowserThread, body: str, arg: Any = None, *,
           module: str = "markdown.js", name: str = "md") -> Any:
    """Runs ``async (<name>, arg) => { body }`` in a fresh page, ``<name>`` being the
    module imported from ``/static/<module>``; returns what it returns."""

    def job(browser: Browser) -> Any:
        page = browser.new_page()
        try:
            page.route(f"{ORIGIN}/**", _serve)
            page.goto(ORIGIN + "/")
            return page.evaluate(
                f"async (arg) => {{ const mod = await import('/static/{module}');"
                f" return await (async ({name}, arg) => {{ {body} }})(mod, arg); }}", arg)
        finally:
            page.close()

    return browser_thread.submit(job).result(timeout=60)
