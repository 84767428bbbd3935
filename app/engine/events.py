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


@dataclass(frozen=True, slots=True)
class StreamStart:
    type: ClassVar[str] = "stream.start"
    stream_id: str
    created: int
    slots: tuple[SlotInfo, ...]

    def data(self) -> dict[str, Any]:
        return {"stream_id": self.stream_id, "created": self.created,
                "slots": [s.data() for s in self.slots]}


@dataclass(frozen=True, slots=True)
class ModelStart:
    type: ClassVar[str] = "model.start"
    slot: int
    model: str

    def data(self) -> dict[str, Any]:
        return {"slot": self.slot, "model": self.model}


@dataclass(frozen=True, slots=True)
class Delta:
    """Answer text. Deltas are deltas: never a repeat of text sent before."""

    type: ClassVar[str] = "delta"
    slot: int
    text: str

    def data(self) -> dict[str, Any]:
        return {"slot": self.slot, "text": self.text}


@dataclass(frozen=True, slots=True)
class Reasoning:
    """Thinking text, kept apart from the answer."""

    type: ClassVar[str] = "reasoning"
    slot: int
    text: str

    def data(self) -> dict[str, Any]:
        return {"slot": self.slot, "text": self.text}


@dataclass(frozen=True, slots=True)
class ModelRetry:
    type: ClassVar[str] = "model.retry"
    slot: int
    attempt: int
    reason: str
    model: str

    def data(self) -> dict[str, Any]:
        return {"slot": self.slot, "attempt": self.attempt, "reason": self.reason,
                "model": self.model}


@dataclass(frozen=True, slots=True)
class ModelDone:
    type: ClassVar[str] = "model.done"
    outcome: ClassVar[str] = DONE
    slot: int
    finish_reason: str
    usage: SlotUsage
    timing: SlotTiming
    tool_calls: tuple[ToolCall, ...] = ()

    def data(self) -> dict[str, Any]:
        out = {"slot": self.slot, "finish_reason": self.finish_reason,
               "usage": self.usage.data(), "timing": self.timing.data()}
        if self.tool_calls:
            out["tool_calls"] = [c.data() for c in self.tool_calls]
        return out


@dataclass(frozen=True, slots=True)
class ModelError:
    type: ClassVar[str] = "model.error"
    outcome: ClassVar[str] = ERROR
    slot: int
    error: SlotError
    usage: SlotUsage
    timing: SlotTiming

    def data(self) -> dict[str, Any]:
        return {"slot": self.slot, "error": self.error.data(), "usage": self.usage.data(),
                "timing": self.timing.data()}


@dataclass(frozen=True, slots=True)
class ModelStopped:
    type: ClassVar[str] = "model.stopped"
    outcome: ClassVar[str] = STOPPED
    slot: int
    reason: str  # "user" | "disconnect" | "shutdown"
    usage: SlotUsage
    timing: SlotTiming

    def data(self) -> dict[str, Any]:
        return {"slot": self.slot, "reason": self.reason, "usage": self.usage.data(),
                "timing": self.timing.data()}


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

    def data(self) -> dict[str, Any]:
        return {"counts": self.counts.data(), "duration_ms": self.duration_ms}


Text = Delta | Reasoning
Terminal = ModelDone | ModelError | ModelStopped
SlotEvent = ModelStart | Delta | Reasoning | ModelRetry | ModelDone | ModelError | ModelStopped
Event = StreamStart | SlotEvent | StreamDone
