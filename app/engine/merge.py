"""The merge task: the one reader of the slots' channel and the one writer of the log.

Each wake-up takes everything already queued (no timer, so an idle channel adds no
latency) and coalesces it: consecutive text of one slot and kind becomes one event. When
the merge keeps up, every item is its own event; when slots outrun it, events grow larger
and fewer, never lost or reordered within a slot. Coalescing here, before the log, means
every subscriber sees the same events under the same ids.
"""

from __future__ import annotations

from typing import Any

import trio

from .log import EventLog
from .runner import Item
from .slots import DONE, ERROR, STOPPED, SlotState

TEXT_KINDS = frozenset({"delta", "reasoning"})
TERMINAL_STATES = {"model.done": DONE, "model.error": ERROR, "model.stopped": STOPPED}


def coalesce(batch: list[Item]) -> tuple[list[tuple[str, dict[str, Any]]], list[Item]]:
    """Turn a batch of slot items into log events, merging text per slot and kind.

    Returns the events and the items as they were merged (text joined), for bookkeeping.
    A slot's text may be merged into an event placed before another slot's event: order is
    kept within each slot, which is the only order the contract gives.
    """
    merged: list[Item] = []
    open_text: dict[int, int] = {}  # slot -> index in merged of its open text item
    for item in batch:
        state, kind, payload = item
        if kind in TEXT_KINDS:
            at = open_text.get(state.slot)
            if at is not None and merged[at][1] == kind:
                merged[at][2].append(payload)
                continue
            open_text[state.slot] = len(merged)
            merged.append((state, kind, [payload]))
        else:
            open_text.pop(state.slot, None)
            merged.append(item)
    events: list[tuple[str, dict[str, Any]]] = []
    for i, (state, kind, payload) in enumerate(merged):
        if kind in TEXT_KINDS:
            text = "".join(payload)
            merged[i] = (state, kind, text)
            events.append((kind, {"slot": state.slot, "text": text}))
        else:
            events.append((kind, payload))
    return events, merged


async def merge(receive: trio.MemoryReceiveChannel[Item], log: EventLog) -> None:
    """Run until every slot has closed its end of the channel."""
    async with receive:
        while True:
            try:
                batch = [await receive.receive()]
            except trio.EndOfChannel:
                return
            try:
                while True:
                    batch.append(receive.receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel):
                pass
            events, merged = coalesce(batch)
            await log.append(events)
            _record(merged)


def _record(merged: list[Item]) -> None:
    """Keep each slot's snapshot in step with what the log now holds."""
    for state, kind, payload in merged:
        if kind == "delta":
            state.text.append(payload)
        elif kind == "reasoning":
            state.reasoning.append(payload)
        elif kind in TERMINAL_STATES:
            _finish(state, kind, payload)


def _finish(state: SlotState, kind: str, payload: dict[str, Any]) -> None:
    state.state = TERMINAL_STATES[kind]
    state.usage = payload.get("usage", {})
    state.timing = payload.get("timing", {})
    state.error = payload.get("error")
    state.finish_reason = payload.get("finish_reason")
    if kind == "model.stopped":
        state.stop_reason = payload.get("reason")
    state.ended.set()
