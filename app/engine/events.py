"""The stream's events as types: what slots send the merge task, and what the log holds.

Each event is a frozen, slotted dataclass whose ``type`` is its SSE event name and whose
``data()`` is its JSON object, exactly as the contract draws it (``docs/api.md``). Slots
build them, the merge task coalesces and logs them, and every reader, the SSE encoder
(``wire.py``) and the OpenAI front door take them as they are: no string-keyed tuples or
dicts between the upstream read and the client write.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

# Slot outcomes, as ``stream.done`` counts them and the snapshot reports them.
DONE = "done"
ERROR = "error"
STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class SlotUsage:
    input_tokens: int | None
    output_tokens: int
    estimated: bool  # ``output_tokens`` was estimated from the text, not reported

    def data(self) -> dict[str, Any]:
        return {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
                "estimated": self.estimated}


@dataclass(frozen=True, slots=True)
class SlotTiming:
    ttft_ms: float | None
    duration_ms: float
    tokens_per_s: float | None

    def data(self) -> dict[str, Any]:
        return {"ttft_ms": self.ttft_ms, "duration_ms": self.duration_ms,
                "tokens_per_s": self.tokens_per_s}


@dataclass(frozen=True, slots=True)
class SlotError:
    """The ``error`` object of a ``model.error``: typed, with a sanitised message."""

    type: str
    message: str
    retryable: bool = False
    status: int | None = None

    def data(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type, "message": self.message,
                               "retryable": self.retryable}
        if self.status is not None:
            out["status"] = self.status
        return out


@dataclass(frozen=True, slots=True)
class ToolCall:
    index: int
    id: str | None
    name: str | None
    arguments: str

    def data(self) -> dict[str, Any]:
        return {"index": self.index, "id": self.id, "name": self.name,
                "arguments": self.arguments}


@dataclass(frozen=True, slots=True)
class SlotInfo:
    slot: int
    model: str
    label: str

    def data(self) -> dict[str, Any]:
        return {"slot": self.slot, "model": self.model, "label": self.label}


def _with_turn(out: dict[str, Any], turn: int | None) -> dict[str, Any]:
    """A slot event's JSON, with its ``turn`` when it belongs to a conversation."""
    if turn is not None:
        out["turn"] = turn
    return out


@dataclass(frozen=True, slots=True)
class Participant:
    """One speaker of a conversation, as ``stream.start`` names it."""

    slot: int
    model: str
    name: str

    def data(self) -> dict[str, Any]:
        return {"slot": self.slot, "model": self.model, "name": self.name}


@dataclass(frozen=True, slots=True)
class StreamStart:
    type: ClassVar[str] = "stream.start"
    stream_id: str
    created: int
    slots: tuple[SlotInfo, ...]
    # A conversation's, absent from a parallel stream's: its rounds and speakers.
    rounds: int | None = None
    participants: tuple[Participant, ...] = ()

    def data(self) -> dict[str, Any]:
        out: dict[str, Any] = {"stream_id": self.stream_id, "created": self.created,
                               "slots": [s.data() for s in self.slots]}
        if self.rounds is not None:
            out.update(mode="conversation", rounds=self.rounds,
                       participants=[p.data() for p in self.participants])
        return out


@dataclass(frozen=True, slots=True)
class ModelStart:
    type: ClassVar[str] = "model.start"
    slot: int
    model: str
    turn: int | None = None  # a conversation's turn (``conversation.py``)

    def data(self) -> dict[str, Any]:
        return _with_turn({"slot": self.slot, "model": self.model}, self.turn)


@dataclass(frozen=True, slots=True)
class Delta:
    """Answer text. Deltas are deltas: never a repeat of text sent before."""

    type: ClassVar[str] = "delta"
    slot: int
    text: str
    turn: int | None = None  # a conversation's turn (``conversation.py``)

    def data(self) -> dict[str, Any]:
        return _with_turn({"slot": self.slot, "text": self.text}, self.turn)


@dataclass(frozen=True, slots=True)
class Reasoning:
    """Thinking text, kept apart from the answer."""

    type: ClassVar[str] = "reasoning"
    slot: int
    text: str
    turn: int | None = None  # a conversation's turn (``conversation.py``)

    def data(self) -> dict[str, Any]:
        return _with_turn({"slot": self.slot, "text": self.text}, self.turn)


@dataclass(frozen=True, slots=True)
class ModelRetry:
    type: ClassVar[str] = "model.retry"
    slot: int
    attempt: int
    reason: str
    model: str
    turn: int | None = None  # a conversation's turn (``conversation.py``)

    def data(self) -> dict[str, Any]:
        return _with_turn({"slot": self.slot, "attempt": self.attempt, "reason": self.reason,
                           "model": self.model}, self.turn)


@dataclass(frozen=True, slots=True)
class ModelDone:
    type: ClassVar[str] = "model.done"
    outcome: ClassVar[str] = DONE
    slot: int
    finish_reason: str
    usage: SlotUsage
    timing: SlotTiming
    tool_calls: tuple[ToolCall, ...] = ()
    turn: int | None = None  # a conversation's turn (``conversation.py``)

    def data(self) -> dict[str, Any]:
        out = {"slot": self.slot, "finish_reason": self.finish_reason,
               "usage": self.usage.data(), "timing": self.timing.data()}
        if self.tool_calls:
            out["tool_calls"] = [c.data() for c in self.tool_calls]
        return _with_turn(out, self.turn)


@dataclass(frozen=True, slots=True)
class ModelError:
    type: ClassVar[str] = "model.error"
    outcome: ClassVar[str] = ERROR
    slot: int
    error: SlotError
    usage: SlotUsage
    timing: SlotTiming
    turn: int | None = None  # a conversation's turn (``conversation.py``)

    def data(self) -> dict[str, Any]:
        return _with_turn({"slot": self.slot, "error": self.error.data(),
                           "usage": self.usage.data(), "timing": self.timing.data()}, self.turn)


@dataclass(frozen=True, slots=True)
class ModelStopped:
    type: ClassVar[str] = "model.stopped"
    outcome: ClassVar[str] = STOPPED
    slot: int
    reason: str  # "user" | "disconnect" | "shutdown"
    usage: SlotUsage
    timing: SlotTiming
    turn: int | None = None  # a conversation's turn (``conversation.py``)

    def data(self) -> dict[str, Any]:
        return _with_turn({"slot": self.slot, "reason": self.reason,
                           "usage": self.usage.data(), "timing": self.timing.data()}, self.turn)


@dataclass(frozen=True, slots=True)
class Counts:
    done: int = 0
    error: int = 0
    stopped: int = 0

    def data(self) -> dict[str, int]:
        return {"done": self.done, "error": self.error, "stopped": self.stopped}


@dataclass(frozen=True, slots=True)
class StreamDone:
    type: ClassVar[str] = "stream.done"
    counts: Counts
    duration_ms: float
    manager_usage: SlotUsage | None = None  # a managed conversation's picks, all together

    def data(self) -> dict[str, Any]:
        out = {"counts": self.counts.data(), "duration_ms": self.duration_ms}
        if self.manager_usage is not None:
            out["manager_usage"] = self.manager_usage.data()
        return out


@dataclass(frozen=True, slots=True)
class TurnStart:
    """A conversation's turn begins: who speaks (``slot``), under which name."""

    type: ClassVar[str] = "turn.start"
    turn: int
    slot: int
    model: str
    name: str

    def data(self) -> dict[str, Any]:
        return {"turn": self.turn, "slot": self.slot, "model": self.model, "name": self.name}


@dataclass(frozen=True, slots=True)
class ManagerPick:
    """The manager's choice of the next speaker; ``fallback``: it named nobody usable, so
    the turn went round-robin."""

    type: ClassVar[str] = "manager.pick"
    turn: int
    slot: int
    fallback: bool

    def data(self) -> dict[str, Any]:
        return {"turn": self.turn, "slot": self.slot, "fallback": self.fallback}


Text = Delta | Reasoning
Terminal = ModelDone | ModelError | ModelStopped
SlotEvent = ModelStart | Delta | Reasoning | ModelRetry | ModelDone | ModelError | ModelStopped
Event = StreamStart | SlotEvent | TurnStart | ManagerPick | StreamDone
