"""Every terminal test keeps its log and settings in a directory of its own."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def chorus_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``$CHORUS_HOME`` for the test (and the processes it starts); logging on."""
    home = tmp_path / "chorus-home"
    monkeypatch.setenv("CHORUS_HOME", str(home))
    for name in ("CHORUS_LOG", "XDG_DATA_HOME", "NO_COLOR"):
        monkeypatch.delenv(name, raising=False)
    return home
