"""Conversation mode: the stream's speakers take turns, one after another, in one log.

Each turn is one ``run_slot`` of the speaker's resolved routes (so the same limits,
timeouts, retries, fallbacks and cancel scope as a parallel slot), with the transcript so
far as its history, and its own small merge into the stream's log. Only a turn's
``turn.start`` and its own events are logged, never the transcript: bytes on the wire grow
with the text said, not with the conversation's length.

Stops (``Stream.stop``): all slots ends the conversation (the current turn is stopped and
no other begins); some slots leave those speakers out (cutting their turn if they speak);
a skip ends the current turn only. A turn's error leaves its speaker out, or ends the
conversation with ``stop_on_error``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

import trio

from providers import Message

from .events import (
    DONE,
    ERROR,
    STOPPED,
    Counts,
    Delta,
    ManagerPick,
    ModelError,
    SlotEvent,
    SlotUsage,
    TurnStart,
)
from .log import EventLog
from .manager import ManagerPlan, Tally, ask
from .merge import merge
from .runner import SlotHook, run_slot
from .slots import QUEUED, RUNNING, SlotPlan, SlotState
from .transcript import Said, named, speaker_messages

SKIP = "skip"  # a turn's stop reason when it was skipped


@dataclass(frozen=True, slots=True)
class Speaker:
    plan: SlotPlan  # its routes, resolved once per stream; ``label`` is its name
    system: str | None = None


@dataclass(frozen=True, slots=True)
class ConversationPlan:
    speakers: tuple[Speaker, ...]
    opening: tuple[Message, ...]
    rounds: int = 1
    order: tuple[int, ...] = ()  # a permutation of the speakers; empty: as listed
    manager: ManagerPlan | None = None
    stop_on_error: bool = False

    @property
    def turn_order(self) -> tuple[int, ...]:
        return self.order or tuple(range(len(self.speakers)))


def with_history(plan: SlotPlan, messages: tuple[Message, ...]) -> SlotPlan:
    """``plan`` with each route sending ``messages``: a turn's plan, nothing looked up."""
    return replace(plan, routes=tuple(
        replace(r, request=replace(r.request, messages=messages)) for r in plan.routes))


class Conversation:
    """One conversation's turns, run by ``Stream.run`` in place of the parallel slots.

    ``participants`` are the stream's slot states: each shows its speaker's latest turn
    (``running`` while it speaks, then that turn's outcome)."""

    def __init__(self, plan: ConversationPlan, participants: Sequence[SlotState],
                 channel_size: int) -> None:
        self.plan = plan
        self.participants = participants
        self.channel_size = channel_size
        self.turns: list[SlotState] = []
        self.said: list[Said] = []
        self.left_out: set[int] = set()
        self.halted: str | None = None  # why the conversation was ended early
        self.current: SlotState | None = None
        self.stopped: SlotState | None = None  # the turn the last stop cut
        self.manager_scope: trio.CancelScope | None = None
        self.manager_usage = Tally()
        self.ended = trio.Event()

    @property
    def names(self) -> list[str]:
        return [s.plan.label for s in self.plan.speakers]

    async def run(self, log: EventLog, hook: SlotHook | None) -> None:
        order = self.plan.turn_order
        last: int | None = None
        try:
            for position in range(self.plan.rounds * len(order)):
                if self.halted is not None:
                    break
                if self.plan.manager is not None:
                    if len(self.left_out) == len(order):
                        break
                    slot = await self._pick(log, last)
                    if slot is None:
                        break
                else:
                    slot = order[position % len(order)]
                    if slot in self.left_out:
                        continue
                await self._turn(log, hook, slot)
                last = slot
        finally:
            self.current = None
            for p in self.participants:
                if not p.ended.is_set():
                    if p.state in (QUEUED, RUNNING):
                        p.state = STOPPED
                    p.ended.set()
            self.ended.set()

    async def _turn(self, log: EventLog, hook: SlotHook | None, slot: int) -> None:
        speaker = self.plan.speakers[slot]
        messages = speaker_messages(slot, speaker.system, self.plan.opening, self.said)
        state = SlotState(with_history(speaker.plan, messages), turn=len(self.turns))
        participant = self.participants[slot]
        participant.state = RUNNING
        self.turns.append(state)
        self.current = state
        await log.append([TurnStart(len(self.turns) - 1, slot, state.model,
                                    speaker.plan.label)])
        start = log.last_id
        send, receive = trio.open_memory_channel[SlotEvent](self.channel_size)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run_slot, state, send, hook)
            await merge(receive, log, {slot: state})
        self.current = None
        text = "".join(e.event.text for e in await log.since(start)
                       if isinstance(e.event, Delta))
        self.said.append(Said(slot, speaker.plan.label, text))
        participant.state, participant.model = state.state, state.model
        participant.outcome = state.outcome
        participant.stop_reason = state.stop_reason
        if isinstance(state.outcome, ModelError):
            if self.plan.stop_on_error:
                self.halted = self.halted or ERROR
            else:
                self.left_out.add(slot)

    async def _pick(self, log: EventLog, last: int | None) -> int | None:
        """The manager's choice of the next speaker, or round-robin from ``last``."""
        manager = self.plan.manager
        assert manager is not None
        names = self.names
        choice: int | None = None
        with trio.CancelScope() as self.manager_scope:
            answer = await ask(manager, names, self.plan.opening, self.said,
                               self.manager_usage)
            choice = named(answer, names)
        self.manager_scope = None
        if self.halted is not None:
            return None
        fallback = choice is None or choice == last or choice in self.left_out
        if fallback:
            choice = self._next_after(last)
        assert choice is not None
        await log.append([ManagerPick(len(self.turns), choice, fallback)])
        return choice

    def _next_after(self, last: int | None) -> int:
        order = self.plan.turn_order
        at = -1 if last is None else order.index(last)
        for step in range(1, len(order) + 1):
            slot = order[(at + step) % len(order)]
            if slot not in self.left_out:
                return slot
        raise AssertionError("no speaker left to pick")  # the caller checked there is one

    def total_manager_usage(self) -> SlotUsage | None:
        return None if self.plan.manager is None else self.manager_usage.total()

    def counts(self) -> Counts:
        states = [t.state for t in self.turns]
        return Counts(states.count(DONE), states.count(ERROR), states.count(STOPPED))

    # -- stops ----------------------------------------------------------------------------

    def stop(self, slots: Iterable[int] | None, reason: str) -> None:
        current = self.current
        if slots is None:
            if self.halted is None:
                self.halted = reason
            if self.manager_scope is not None:
                self.manager_scope.cancel()
            if current is not None:
                current.stop(reason)
                self.stopped = current
            return
        chosen = set(slots)
        self.left_out |= chosen
        if current is not None and current.slot in chosen:
            current.stop(reason)
            self.stopped = current

    def skip(self) -> None:
        current = self.current
        if current is not None:
            current.stop(SKIP)
            self.stopped = current

    async def wait_stopped(self, whole: bool) -> None:
        """Until the stop just asked has taken effect: the whole conversation, or the
        turn it cut."""
        if whole:
            await self.ended.wait()
        elif self.stopped is not None:
            await self.stopped.ended.wait()
