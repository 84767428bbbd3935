"""A real terminal for the tests: a detached tmux server of our own, running one command.

Each ``Tmux`` has its own socket (``-S``, removed by ``close``) and ignores any user config,
so tests never touch another tmux. ``screen()`` is what a person would see; the command's
exit code is printed after it (``EXIT=n``) and read back from the screen.
"""

from __future__ import annotations

import os
import re
import secrets
import shlex
import sys
import tempfile
from collections.abc import Callable, Sequence

import trio

CHORUS = [sys.executable, "-m", "app"]  # the command line, as a terminal user runs it
POLL = 0.05  # seconds between two looks at the screen
# How long a screen may take to come: generous, as a busy machine may take seconds just to
# start Python; a wait ends as soon as the screen is there.
WITHIN = 20.0


class Tmux:
    def __init__(self, width: int = 200, height: int = 50) -> None:
        self.socket = os.path.join(tempfile.gettempdir(),
                                   f"chorus-tmux-{secrets.token_hex(6)}.sock")
        self.width = width
        self.height = height

    async def tmux(self, *args: str) -> str:
        result = await trio.run_process(["tmux", "-S", self.socket, "-f", "/dev/null", *args],
                                        capture_stdout=True, capture_stderr=True)
        return result.stdout.decode()

    async def start(self, argv: Sequence[str], env: dict[str, str] | None = None) -> None:
        command = f"{shlex.join(argv)}; echo EXIT=$?; sleep 60"
        options = [f"-e{key}={value}" for key, value in (env or {}).items()]
        await self.tmux("new-session", "-d", "-x", str(self.width), "-y", str(self.height),
                        "-s", "t", *options, command)

    async def screen(self, *, history: bool = False) -> str:
        return await self.tmux("capture-pane", "-p", "-t", "t", *(["-S", "-500"] if history
                                                                  else []))

    async def keys(self, *keys: str) -> None:
        await self.tmux("send-keys", "-t", "t", *keys)

    async def wait_for(self, ready: Callable[[str], bool], within: float = WITHIN) -> str:
        """The screen, as soon as ``ready(screen)``; fails after ``within`` seconds."""
        screen = ""
        try:
            with trio.fail_after(within):
                while True:
                    screen = await self.screen()
                    if ready(screen):
                        return screen
                    await trio.sleep(POLL)
        except trio.TooSlowError:
            raise AssertionError(f"the screen never got there:\n{screen}") from None

    async def exit_code(self, within: float = WITHIN) -> tuple[int, str]:
        """Wait for the command to end: its exit code and everything it left on screen."""
        await self.wait_for(lambda s: "EXIT=" in s, within)
        screen = await self.screen(history=True)
        match = re.search(r"EXIT=(\d+)", screen)
        assert match is not None
        return int(match.group(1)), screen

    async def close(self) -> None:
        await trio.run_process(["tmux", "-S", self.socket, "kill-server"], check=False,
                               capture_stdout=True, capture_stderr=True)
        await trio.Path(self.socket).unlink(missing_ok=True)
