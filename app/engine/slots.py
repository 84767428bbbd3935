"""What one slot is: its plan (``SlotPlan``) and what has happened to it (``SlotState``).

A slot's plan is resolved by the API layer from a request target: which provider, which
model name inside it, the history and parameters, and the fallbacks to try in order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import trio

from providers import ChatRequest, Provider, Timeouts

from .events import DONE, ERROR, STOPPED, ModelStopped, SlotError, SlotTiming, SlotUsage, Terminal

# Slot states, as the snapshot and the stop API report them (and DONE, ERROR, STOPPED).
QUEUED = "queued"
RUNNING = "running"
__all__ = ["DONE", "ERROR", "QUEUED", "RUNNING", "STOPPED", "Route", "SlotPlan", "SlotState"]


@dataclass(frozen=True, slots=True)
class Route:
    """One model a slot may run: the public ref and how to reach it."""

    ref: str  # "provider/model", as clients name it
    provider: Provider
    request: ChatRequest  # ``request.model`` is the name inside the provider
    limiter: trio.CapacityLimiter
    timeouts: Timeouts
    retries: int = 2


@dataclass(frozen=True, slots=True)
class SlotPlan:
    slot: int
    label: str
    routes: tuple[Route, ...]  # the model first, then its fallbacks

    @property
    def model(self) -> str:
        return self.routes[0].ref


@dataclass(slots=True)
class SlotState:
    """Mutable record of one slot. The slot task writes ``state``; the merge task writes
    the terminal outcome once it is logged (``finish``). The slot's text lives only in the
    log."""

    plan: SlotPlan
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    state: str = QUEUED
    model: str = ""
    stop_reason: str | None = None
    outcome: Terminal | None = None  # the slot's terminal event, once logged
    turn: int | None = None  # a conversation's turn this state runs; its events carry it
    ended: trio.Event = field(default_factory=trio.Event)

    def __post_init__(self) -> None:
        self.model = self.plan.model

    @property
    def slot(self) -> int:
        return self.plan.slot

    def stop(self, reason: str) -> bool:
        """Ask the slot to stop; ``False`` if it has already ended (stop is idempotent)."""
        if self.ended.is_set():
            return False
        if self.stop_reason is None:
            self.stop_reason = reason
        self.scope.cancel()
        return True

    def finish(self, event: Terminal) -> None:
        """Record the slot's terminal event: it is in the log, the slot has ended."""
        self.outcome = event
        self.state = event.outcome
        if isinstance(event, ModelStopped):
            self.stop_reason = event.reason
        self.ended.set()

    @property
    def usage(self) -> SlotUsage | None:
        return None if self.outcome is None else self.outcome.usage

    @property
    def timing(self) -> SlotTiming | None:
        return None if self.outcome is None else self.outcome.timing

    @property
    def error(self) -> SlotError | None:
        return getattr(self.outcome, "error", None)

    @property
    def finish_reason(self) -> str | None:
        return getattr(self.outcome, "finish_reason", None)

    def summary(self) -> dict[str, object]:
        return {"slot": self.slot, "model": self.model, "state": self.state}
