"""A stream's state read back from its events, for an instance that does not run it.

The running instance answers a snapshot or a stop from its ``SlotState`` objects; any
other instance has only the log. ``Fold`` replays the log's events (their JSON, as sent
to clients) into the same views: the snapshot of ``GET /v1/streams/{id}`` and the slot
summaries a stop answers with. Pure: no I/O, fed one event at a time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from app.engine.slots import QUEUED, RUNNING
from providers.sse import SSEDecoder

TERMINAL = {"model.done": "done", "model.error": "error", "model.stopped": "stopped"}


@dataclass
class SlotView:
    """One slot (or one conversation turn) as the events tell it."""

    slot: int
    model: str
    label: str
    state: str = QUEUED
    text: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    outcome: dict[str, Any] | None = None  # the terminal event's data

    def summary(self) -> dict[str, object]:
        return {"slot": self.slot, "model": self.model, "state": self.state}

    @property
    def ended(self) -> bool:
        return self.outcome is not None

    def view(self) -> dict[str, object]:
        out = self.outcome or {}
        return {
            "slot": self.slot, "model": self.model, "label": self.label, "state": self.state,
            "text": "".join(self.text), "reasoning": "".join(self.reasoning),
            "finish_reason": out.get("finish_reason"), "error": out.get("error"),
            "stop_reason": out.get("reason"), "usage": out.get("usage"),
            "timing": out.get("timing"),
        }

    def feed(self, kind: str, data: dict[str, Any]) -> None:
        if kind in ("delta", "reasoning"):
            (self.text if kind == "delta" else self.reasoning).append(data["text"])
        elif kind == "model.start":
            self.state, self.model = RUNNING, data["model"]
        elif kind == "model.retry":
            self.model = data["model"]
        elif kind in TERMINAL:
            self.state, self.outcome = TERMINAL[kind], data


class Fold:
    """Everything the events of one stream say so far."""

    def __init__(self) -> None:
        self.stream_id = ""
        self.created = 0
        self.last_id = 0
        self.done = False
        self.conversation = False
        self.slots: list[SlotView] = []
        self.turns: list[SlotView] = []
        self.names: dict[int, str] = {}
        # Each entry's wire is one whole SSE event of Chorus's own (``engine/wire.py``), so
        # the decoder is empty again after each and serves the whole stream.
        self._decoder = SSEDecoder()

    def feed(self, event_id: int, kind: str, data: dict[str, Any]) -> None:
        self.last_id = event_id
        if kind == "stream.start":
            self.stream_id, self.created = data["stream_id"], data["created"]
            self.conversation = data.get("mode") == "conversation"
            self.slots = [SlotView(s["slot"], s["model"], s["label"]) for s in data["slots"]]
            self.names = {p["slot"]: p["name"] for p in data.get("participants", ())}
        elif kind == "stream.done":
            self.done = True
        elif kind == "turn.start":
            self.turns.append(SlotView(data["slot"], data["model"], data["name"]))
        slot = data.get("slot")
        if kind.startswith(("model.", "delta", "reasoning")) and isinstance(slot, int):
            if slot < len(self.slots):
                self.slots[slot].feed(kind, data)
            turn = data.get("turn")
            if isinstance(turn, int) and turn < len(self.turns):
                self.turns[turn].feed(kind, data)

    def feed_wire(self, event_id: int, wire: bytes) -> None:
        (event,) = self._decoder.feed(wire)
        self.feed(event_id, event.event, json.loads(event.data))

    def unfinished(self) -> list[SlotView]:
        """The slots with no terminal event yet (in a conversation: the turn speaking)."""
        if self.conversation:
            return [t for t in self.turns[-1:] if not t.ended]
        return [s for s in self.slots if not s.ended]

    def snapshot(self) -> dict[str, object]:
        """The same object as a snapshot on the running instance (``Stream.snapshot``)."""
        out: dict[str, object] = {
            "id": self.stream_id, "created": self.created,
            "state": "done" if self.done else "running", "last_event_id": self.last_id,
            "slots": [s.view() for s in self.slots],
        }
        if self.conversation:
            out["mode"] = "conversation"
            out["turns"] = [{"turn": i, "name": t.label, **t.view()}
                            for i, t in enumerate(self.turns)]
        return out
