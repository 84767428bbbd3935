"""Running ``chorus ask``: read a source's events into the board, draw it, print the end.

On a terminal the board is drawn live on the alternate screen (so the answers are left in
the scrollback once, complete); elsewhere, or with ``--json``, nothing is redrawn. Ctrl-C
stops every slot as ``interrupts`` says; either way what arrived is printed.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from dataclasses import dataclass
from typing import TextIO

import trio

from app.engine.wire import escape_surrogates

from .board import Board
from .interrupts import stop_on_ctrl_c
from .render import render_final, render_live
from .sources import RequestRefused, Source, SourceError

FRAME = 1 / 30  # the screen is redrawn at most this often…
TICK = 0.25  # …and at least this often while models run, so the clocks move


@dataclass(frozen=True, slots=True)
class View:
    live: bool = False  # redraw the board on the terminal while it fills
    json: bool = False  # print each event as one JSON line
    color: bool = False
    reasoning: bool = False  # print the models' reasoning with the answers


@dataclass(slots=True)
class Outcome:
    board: Board
    interrupted: bool = False
    failure: SourceError | None = None

    def exit_code(self) -> int:
        if self.interrupted:
            return 130
        if isinstance(self.failure, RequestRefused):
            return 2
        if self.failure is not None:
            return 1
        return self.board.exit_code(interrupted=False)


class Screen:
    """The terminal's alternate screen, cursor hidden, for the live board; left (the
    terminal given back as it was) however the run ends."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def __enter__(self) -> Screen:
        self.out.write("\x1b[?1049h\x1b[?25l")
        self.out.flush()
        return self

    def draw(self, lines: list[str]) -> None:
        self.out.write("\x1b[H" + "\x1b[K\r\n".join(lines) + "\x1b[K\x1b[J")
        self.out.flush()

    def __exit__(self, *exc: object) -> None:
        self.out.write("\x1b[?25h\x1b[?1049l")
        self.out.flush()


class _Redraw:
    def __init__(self) -> None:
        self._changed = trio.Event()

    def notify(self) -> None:
        self._changed.set()

    async def wait(self) -> None:
        """Until the board changed, or ``TICK`` passed."""
        with trio.move_on_after(TICK):
            await self._changed.wait()
        self._changed = trio.Event()


async def run(source: Source, view: View, out: TextIO, err: TextIO) -> Outcome:
    """Read ``source`` to its end (or Ctrl-C), showing it per ``view``, then print the
    answers side by side and how the run ended."""
    outcome = await follow(source, view, out)
    report(outcome, view, out, err)
    return outcome


async def follow(source: Source, view: View, out: TextIO) -> Outcome:
    """Read ``source`` into a board to its end (or Ctrl-C), drawing it live per ``view``."""
    outcome = Outcome(Board())
    redraw = _Redraw()
    live = view.live and not view.json
    with Screen(out) if live else contextlib.nullcontext() as screen:
        async with stop_on_ctrl_c(source) as interrupt, trio.open_nursery() as nursery:
            if screen is not None:
                nursery.start_soon(_draw, outcome.board, screen, redraw, view)
            try:
                async for event_id, kind, data in source.events():
                    outcome.board.apply(kind, data, trio.current_time())
                    if view.json:
                        out.write(escape_surrogates(json.dumps(
                            {"id": event_id, "event": kind, "data": data},
                            ensure_ascii=False)) + "\n")
                        out.flush()
                    redraw.notify()
            except SourceError as exc:
                outcome.failure = exc
            nursery.cancel_scope.cancel()
    outcome.interrupted = interrupt.interrupted
    return outcome


async def _draw(board: Board, screen: Screen, redraw: _Redraw, view: View) -> None:
    while True:
        size = shutil.get_terminal_size()
        screen.draw(render_live(board, size.columns, size.lines, trio.current_time(),
                                color=view.color))
        await redraw.wait()
        await trio.sleep(FRAME)  # a frame-rate cap: a burst of events is drawn once


def report(outcome: Outcome, view: View, out: TextIO, err: TextIO) -> None:
    """The answers side by side (unless ``--json``), then on ``err`` why it ended early."""
    board = outcome.board
    if not view.json and board.columns:
        width = shutil.get_terminal_size().columns
        lines = render_final(board, width, trio.current_time(), color=view.color,
                             reasoning=view.reasoning)
        out.write("\n".join(lines) + "\n")
        out.flush()
    ending(outcome, err)


def ending(outcome: Outcome, err: TextIO) -> None:
    """Why the run ended early, if it did."""
    if outcome.failure is not None:
        err.write(f"chorus: {outcome.failure}\n")
    elif outcome.interrupted:
        err.write("chorus: stopped (Ctrl-C)\n")
    elif not outcome.board.ended:
        err.write("chorus: the stream broke off before its end\n")
    err.flush()
