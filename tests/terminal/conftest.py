"""Every terminal test keeps its log and settings in a directory of its own; ``tmux`` is a
real terminal, closed after the test; ``chorus`` runs the command line as a script would.

``chorus`` runs ``main()`` in a worker thread (its own ``trio.run``), so the servers of the
test keep running in the test's loop.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import trio

from app.cli import main
from app.config import WELL_KNOWN

from .tmux import Tmux


@pytest.fixture(autouse=True)
def chorus_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``$CHORUS_HOME`` for the test (and the processes it starts); logging on."""
    home = tmp_path / "chorus-home"
    monkeypatch.setenv("CHORUS_HOME", str(home))
    for name in ("CHORUS_LOG", "XDG_DATA_HOME", "NO_COLOR"):
        monkeypatch.delenv(name, raising=False)
    return home


@pytest.fixture
async def tmux() -> AsyncIterator[Tmux]:
    terminal = Tmux()
    try:
        yield terminal
    finally:
        with trio.CancelScope(shield=True):
            await terminal.close()


DEMO = '[providers.demo]\ntype = "demo"\nretries = 0\n'
QUICK = "demo/ttft=0,rate=0,tokens=3"

Result = tuple[int, str, str]  # exit code, stdout, stderr
Chorus = Callable[..., Awaitable[Result]]


@pytest.fixture
def chorus(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Chorus:
    """``await chorus("ask", …, stdin="…")``: run the command line, as a script would."""
    for name in ("CHORUS_CONFIG", "CHORUS_API_KEY", *(w[1] for w in WELL_KNOWN.values())):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("COLUMNS", "80")

    async def run(*argv: str, stdin: str = "", **env: str) -> Result:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        for key, value in env.items():
            monkeypatch.setenv(key, value)

        def command() -> int:
            try:
                return main(list(argv))
            except SystemExit as exc:  # argparse's usage errors
                return int(exc.code or 0)

        with trio.fail_after(10):
            code = await trio.to_thread.run_sync(command)
        out, err = capsys.readouterr()
        return code, out, err

    return run
