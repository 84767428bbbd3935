"""Every terminal test keeps its log and settings in a directory of its own; ``tmux`` is a
real terminal, closed after the test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

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
