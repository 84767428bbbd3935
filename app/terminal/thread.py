"""``chorus ask --conversation``: the turns printed as a thread, live, as they come.

A conversation's text arrives one turn at a time, so it is printed in order, never
redrawn: a header with the speaker's name, then the text as it streams. That works the
same on a terminal, in a pipe and in the scrollback. Ctrl-C stops the conversation (the
current turn's upstream closes) as ``interrupts`` says.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from .interrupts import stop_on_ctrl_c
from .sources import RequestRefused, Source, SourceError

COLORS = ("36", "35", "33", "32", "34", "31")  # each speaker's colour, by slot, in turn
ENDED = {"model.done", "model.error", "model.stopped"}


def conversation_body(models: Sequence[str], prompt: str, rounds: int,
                      system: str | None, params: dict[str, Any]) -> dict[str, Any]:
    """The ``POST /v1/streams`` body: each model a participant (``system`` for all)."""
    participants = [{"model": m, **({"system": system} if system else {})} for m in models]
    return {"mode": "conversation", "participants": participants, "rounds": rounds,
            "messages": [{"role": "user", "content": prompt}], "params": params}


@dataclass(slots=True)
class Thread:
    """Prints events as a thread; counts how the turns ended."""

    out: TextIO
    color: bool = False
    ended: dict[str, int] = field(default_factory=dict)
    done: bool = False  # ``stream.done`` arrived

    def apply(self, kind: str, data: dict[str, Any]) -> None:
        if kind == "turn.start":
            header = f"{data['name']} · turn {data['turn'] + 1}"
            if self.color:
                header = f"\x1b[1;{COLORS[data['slot'] % len(COLORS)]}m{header}\x1b[0m"
            self.out.write(f"\n{header}\n")
        elif kind == "delta":
            self.out.write(data["text"])
        elif kind in ENDED:
            self.ended[kind] = self.ended.get(kind, 0) + 1
            if kind == "model.error":
                self.out.write(f"\n[error: {data['error']['message']}]")
            elif kind == "model.stopped":
                self.out.write(f"\n[stopped: {data['reason']}]")
            self.out.write("\n")
        elif kind == "stream.done":
            self.done = True
        self.out.flush()

    def exit_code(self) -> int:
        return 1 if self.ended.get("model.error") or not self.done else 0


async def run(source: Source, out: TextIO, err: TextIO, *, color: bool = False) -> int:
    """Print ``source``'s conversation to its end (or Ctrl-C); the exit code."""
    thread = Thread(out, color)
    async with stop_on_ctrl_c(source) as interrupt:
        try:
            async for _, kind, data in source.events():
                thread.apply(kind, data)
        except SourceError as exc:
            err.write(f"chorus: {exc}\n")
            return 2 if isinstance(exc, RequestRefused) else 1
    if interrupt.interrupted:
        err.write("chorus: stopped (Ctrl-C)\n")
        return 130
    if not thread.done:
        err.write("chorus: the stream broke off before its end\n")
    return thread.exit_code()
