"""A conversation's manager: the model asked, before each turn, who speaks next.

One short request per turn (``transcript.manager_messages``); its answer is only read for
a name, so it is never logged. A failure or a timeout is an empty answer: the turn then
goes round-robin (``Conversation._pick``), and the conversation never stops for it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from contextlib import aclosing
from dataclasses import dataclass, replace

import trio

from providers import Message, TextDelta, Usage

from .events import SlotUsage
from .slots import Route
from .transcript import Said, manager_messages

log = logging.getLogger("chorus.conversation")

MANAGER_TIMEOUT = 60.0  # seconds a pick may take when the manager's provider sets no total


@dataclass(frozen=True, slots=True)
class ManagerPlan:
    routes: tuple[Route, ...]
    system: str | None = None


class Tally:
    """The manager's usage over every pick: tokens as reported, else estimated."""

    def __init__(self) -> None:
        self.input: int | None = None
        self.output = 0
        self.estimated = False

    def add_input(self, tokens: int | None) -> None:
        if tokens is not None:
            self.input = (self.input or 0) + tokens

    def add_output(self, reported: int | None, text: str) -> None:
        if reported is None:
            self.estimated = True
            reported = math.ceil(len(text) / 4)
        self.output += reported

    def total(self) -> SlotUsage:
        return SlotUsage(self.input, self.output, self.estimated)


async def ask(manager: ManagerPlan, names: list[str], opening: Sequence[Message],
              said: Sequence[Said], tally: Tally) -> str:
    """The manager's answer text; empty when it failed (a pick then falls back)."""
    route = manager.routes[0]
    request = replace(route.request, messages=manager_messages(
        manager.system, names, opening, said))
    parts: list[str] = []
    reported: int | None = None
    limit = route.timeouts.total if route.timeouts.total is not None else MANAGER_TIMEOUT
    try:
        with trio.move_on_after(limit):
            async with route.limiter, aclosing(route.provider.stream(request)) as events:
                async for event in events:
                    if isinstance(event, TextDelta):
                        parts.append(event.text)
                    elif isinstance(event, Usage):
                        tally.add_input(event.input_tokens)
                        if event.output_tokens is not None:
                            reported = event.output_tokens
    except Exception:
        log.warning("the conversation's manager failed; the turn goes round-robin",
                    exc_info=True)
    answer = "".join(parts)
    tally.add_output(reported, answer)
    return answer
