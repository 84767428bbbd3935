"""What ``chorus ask`` knows about each model, built from Chorus's events (pure, no I/O).

``Board.apply`` takes the events of the SSE contract one by one, with the time they were
read; the columns keep the text, the state and the numbers the screen shows. Live numbers
(TTFT, tokens/s) are measured here until the model's terminal event gives the server's.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from app.engine.wire import whole_characters

# Control characters other than newline and tab would let a model's answer move the
# cursor or recolour the terminal; they never reach the screen.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")

ENDED = frozenset({"done", "error", "stopped"})


def clean(text: str) -> str:
    return _CONTROL.sub("", text.replace("\r\n", "\n"))


def labels(models: Sequence[str]) -> list[str]:
    """Each slot's name: its model, numbered from the second time a model repeats."""
    return [m if m not in models[:i] else f"{m} #{models[: i + 1].count(m)}"
            for i, m in enumerate(models)]


@dataclass(slots=True)
class Column:
    slot: int
    label: str
    model: str
    state: str = "queued"  # queued, waiting, thinking, streaming, retrying, done, error, stopped
    text: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    chars: int = 0
    sent_at: float | None = None  # model.start read
    first_at: float | None = None  # first text or reasoning read
    ended_at: float | None = None
    ttft_ms: float | None = None  # the server's, once the model has ended
    tokens: int | None = None  # the server's count, once the model has ended
    estimated: bool = True
    input_tokens: int | None = None
    duration_ms: float | None = None
    tokens_per_s: float | None = None
    retries: int = 0
    finish_reason: str | None = None
    error: str | None = None
    stop_reason: str | None = None

    @property
    def answer(self) -> str:
        return whole_characters("".join(self.text))

    @property
    def thought(self) -> str:
        return whole_characters("".join(self.reasoning))

    def ttft(self) -> float | None:
        """Seconds to the first token: the server's figure, else as seen here."""
        if self.ttft_ms is not None:
            return self.ttft_ms / 1000
        if self.first_at is None or self.sent_at is None:
            return None
        return self.first_at - self.sent_at

    def token_count(self) -> tuple[int, bool]:
        """Output tokens and whether that is an estimate (about four characters a token)."""
        if self.tokens is not None:
            return self.tokens, self.estimated
        return math.ceil(self.chars / 4), True

    def rate(self, now: float) -> float | None:
        """Tokens per second since the first token."""
        if self.tokens_per_s is not None or self.state in ENDED:
            return self.tokens_per_s
        if self.first_at is None or now <= self.first_at:
            return None
        return self.token_count()[0] / (now - self.first_at)


@dataclass(slots=True)
class Board:
    columns: list[Column] = field(default_factory=list)
    started_at: float | None = None
    ended_at: float | None = None
    stream_id: str | None = None

    @property
    def ended(self) -> bool:
        return self.ended_at is not None

    def apply(self, kind: str, data: dict[str, Any], now: float) -> None:
        if kind == "stream.start":
            self.stream_id = data.get("stream_id")
            self.started_at = now
            self.columns = [Column(s["slot"], s.get("label") or s["model"], s["model"])
                            for s in data.get("slots", [])]
            return
        if kind == "stream.done":
            self.ended_at = now
            return
        slot = data.get("slot")
        if not isinstance(slot, int) or not 0 <= slot < len(self.columns):
            return
        column = self.columns[slot]
        if kind == "model.start":
            column.state, column.sent_at = "waiting", now
        elif kind in ("delta", "reasoning"):
            text = clean(data.get("text", ""))
            (column.text if kind == "delta" else column.reasoning).append(text)
            column.chars += len(text)
            column.first_at = column.first_at if column.first_at is not None else now
            column.state = "streaming" if kind == "delta" else "thinking"
        elif kind == "model.retry":
            column.state = "retrying"
            column.retries = data.get("attempt", column.retries + 1)
            column.model = data.get("model") or column.model
        elif kind in ("model.done", "model.error", "model.stopped"):
            self._end(column, kind, data, now)

    @staticmethod
    def _end(column: Column, kind: str, data: dict[str, Any], now: float) -> None:
        column.state = kind.split(".", 1)[1]
        column.ended_at = now
        usage = data.get("usage") or {}
        if isinstance(usage.get("output_tokens"), int):
            column.tokens = usage["output_tokens"]
            column.estimated = bool(usage.get("estimated", False))
        timing = data.get("timing") or {}
        column.ttft_ms = timing.get("ttft_ms")
        column.tokens_per_s = timing.get("tokens_per_s")
        column.duration_ms = timing.get("duration_ms")
        if isinstance(usage.get("input_tokens"), int):
            column.input_tokens = usage["input_tokens"]
        column.finish_reason = data.get("finish_reason")
        column.stop_reason = data.get("reason")
        error = data.get("error")
        if isinstance(error, dict):
            column.error = clean(f"{error.get('type', 'error')}: {error.get('message', '')}")

    def counts(self) -> dict[str, int]:
        out = {"done": 0, "error": 0, "stopped": 0}
        for column in self.columns:
            if column.state in out:
                out[column.state] += 1
        return out

    def exit_code(self, *, interrupted: bool) -> int:
        """130 after Ctrl-C; 1 if a model failed or the stream did not end; else 0."""
        if interrupted:
            return 130
        if not self.ended or any(c.state == "error" for c in self.columns):
            return 1
        return 0
