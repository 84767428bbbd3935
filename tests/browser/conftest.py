"""Headless Chromium for the browser tests, and a Chorus server set up for them.

Playwright's async API needs asyncio, so the sync API runs in one thread of its own that
owns the browser for the whole session; a test hands it a function and awaits the result
with ``trio.to_thread.run_sync`` while the server keeps running in the trio loop.
"""

from __future__ import annotations

import concurrent.futures
import os
import queue
import shutil
import subprocess
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from providers.demo import _words

from ..conftest import Server, StartServer

CHROMIUM = os.environ.get("CHORUS_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

# Demo models for the tests. `hostile` answers with markup that must stay inert.
HOSTILE = """Hostile answer.

<img src=x onerror="window.__pwned = 'img'">

<script>window.__pwned = 'script'</script>

[click me](javascript:window.__pwned='link') and [data](data:text/html,hi) and [rel](/v1/models)

![tracker](https://tracker.invalid/pixel.png?leak=secret)

<a href="javascript:window.__pwned='a'">raw link</a> <svg onload="window.__pwned='svg'"></svg>

<iframe src="javascript:window.__pwned='iframe'"></iframe> **still bold** [fine](https://example.com/)
"""

STEADY = "{ ttft = 0.1, rate = 40.0, tokens = 90 }"
THINKER = "{ ttft = 0.1, rate = 60.0, tokens = 60, reasoning = 30 }"


def demo_config(steady: str = STEADY, thinker: str = THINKER) -> str:
    """The browser tests' server config; ``steady`` and ``thinker`` can be set apart."""
    return f"""
[server]
resume_grace = 10.0

[providers.demo]
type = "demo"

[providers.demo.options.presets]
steady = {steady}
long = {{ ttft = 0.1, rate = 30.0, tokens = 600 }}
broken = {{ ttft = 0.1, rate = 40.0, tokens = 200, fail_after = 12 }}
limited = {{ error = 429 }}
thinker = {thinker}
[providers.demo.options.presets.hostile]
ttft = 0.0
rate = 0.0
tokens = {len(_words(HOSTILE))}
text = '''{HOSTILE}'''
"""


CONFIG = demo_config()
# The same models, steady and thinker four times as fast: for tests that look only at
# finished answers, never at one mid-stream.
BRISK = demo_config(steady="{ ttft = 0.05, rate = 160.0, tokens = 90 }",
                    thinker="{ ttft = 0.05, rate = 240.0, tokens = 60, reasoning = 30 }")

Job = Callable[[Any], Any]


class BrowserThread:
    """A thread that owns Playwright and one Chromium, and runs jobs handed to it."""

    def __init__(self) -> None:
        self._jobs: queue.Queue[tuple[Job, concurrent.futures.Future[Any]] | None] = queue.Queue()
        self._ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._main, name="playwright", daemon=True)
        self._thread.start()
        self._ready.result(timeout=60)

    def _main(self) -> None:
        from playwright.sync_api import sync_playwright

        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
                self._ready.set_result(None)
                while (job := self._jobs.get()) is not None:
                    fn, future = job
                    if not future.set_running_or_notify_cancel():
                        continue
                    try:
                        future.set_result(fn(browser))
                    except BaseException as exc:  # handed to the test, re-raised there
                        future.set_exception(exc)
                browser.close()
        except BaseException as exc:
            if not self._ready.done():
                self._ready.set_exception(exc)

    def submit(self, fn: Job) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._jobs.put((fn, future))
        return future

    def close(self) -> None:
        self._jobs.put(None)
        self._thread.join(timeout=20)


@pytest.fixture(scope="session")
def browser_thread() -> Iterator[BrowserThread]:
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM}")
    bt = BrowserThread()
    yield bt
    bt.close()


RunInBrowser = Callable[[Job], Awaitable[Any]]

HERE = Path(__file__).resolve().parent
AXE = HERE / "node_modules" / "axe-core" / "axe.min.js"


@pytest.fixture(scope="session")
def axe_script() -> Path:
    """axe-core's browser build, installed from tests/browser/package-lock.json on first use
    (``npm ci --prefix tests/browser``). A missing npm or a failed install fails the test:
    an accessibility check that quietly does not run would prove nothing."""
    if not AXE.is_file():
        npm = shutil.which("npm")
        if npm is None:
            pytest.fail("npm is needed to install axe-core: npm ci --prefix tests/browser")
        done = subprocess.run(
            [npm, "ci", "--prefix", str(HERE), "--no-audit", "--no-fund"],
            capture_output=True, text=True, timeout=300, check=False)
        if done.returncode != 0 or not AXE.is_file():
            pytest.fail(f"npm ci --prefix tests/browser failed ({done.returncode}):\n"
                        f"{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return AXE


@pytest.fixture
def in_browser(browser_thread: BrowserThread) -> RunInBrowser:
    """``await in_browser(fn)`` runs ``fn(browser)`` in the browser thread."""

    async def run(fn: Job) -> Any:
        future = browser_thread.submit(fn)
        return await trio.to_thread.run_sync(future.result)

    return run


@pytest.fixture
async def chorus(start_server: StartServer) -> Server:
    return await start_server(CONFIG)


@pytest.fixture
async def brisk_chorus(start_server: StartServer) -> Server:
    return await start_server(BRISK)


class CuttableProxy:
    """A TCP relay in front of the server whose connections can all be cut at once: the
    browser sees the network drop mid-stream, as on a flaky link."""

    def __init__(self, target: str) -> None:
        host, _, port = target.removeprefix("http://").partition(":")
        self.target = (host, int(port))
        self.url = ""
        self.cuts = 0
        self._scopes: set[trio.CancelScope] = set()

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
                    ) -> None:
        self._token = trio.lowlevel.current_trio_token()
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.url = f"http://127.0.0.1:{listeners[0].socket.getsockname()[1]}"
        task_status.started()
        await trio.serve_listeners(self._relay, listeners)

    async def _relay(self, client: trio.SocketStream) -> None:
        with trio.CancelScope() as scope:
            self._scopes.add(scope)
            try:
                server = await trio.open_tcp_stream(*self.target)
                async with client, server, trio.open_nursery() as nursery:
                    nursery.start_soon(self._pipe, client, server)
                    nursery.start_soon(self._pipe, server, client)
            finally:
                self._scopes.discard(scope)

    @staticmethod
    async def _pipe(source: trio.SocketStream, sink: trio.SocketStream) -> None:
        try:
            while data := await source.receive_some(65536):
                await sink.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        with trio.CancelScope(shield=True):
            await trio.aclose_forcefully(sink)

    def cut(self) -> None:
        """Drops every open connection. Called from the browser thread, so it hops into the
        trio loop: cancel scopes are not thread-safe."""
        trio.from_thread.run_sync(self._cut, trio_token=self._token)

    def _cut(self) -> None:
        self.cuts += 1
        for scope in list(self._scopes):
            scope.cancel()


@pytest.fixture
async def flaky_link(chorus: Server, nursery: trio.Nursery) -> CuttableProxy:
    proxy = CuttableProxy(chorus.url)
    await nursery.start(proxy.serve)
    return proxy
