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

# A wake-up that took at most this many items is the latency case: the stream keeps up (a
# token; a token with its model's end; two that came together), and its live readers are
# written at once. More: the slots outpace the stream (an upstream read brought many
# tokens) and throughput counts: the readers are woken instead and write after the tasks
# already runnable, so that what comes meanwhile leaves in the same write. Written at
# once at saturation, each write carried a third fewer tokens and cost ~10 % more CPU per
# token. Deferring from two items on would hold back an answer's last token whenever it
# came with its model's end, and it made the 200-stream tail longer (``bench/findings.md``,
# ninth round).
LIVE_ITEMS = 3

TERMINAL_STATES = {"model.done": DONE, "model.error": ERROR, "model.stopped": STOPPED}


def coalesce(batch: list[Item]) -> list[tuple[str, dict[str, Any]]]:
    """Turn a batch of slot items into log events, merging text per slot and kind.

    A slot's text may be merged into an event placed before another slot's event: order is
    kept within each slot, which is the only order the contract gives.
    """
    events: list[tuple[str, dict[str, Any]]] = []
    open_text: dict[int, int] = {}  # slot -> index in events of its open text event
    pieces: dict[int, list[str]] = {}  # index in events -> text to join into that event
    for state, kind, payload in batch:
        if kind in TEXT_KINDS:
            at = open_text.get(state.slot)
            if at is not None and events[at][0] == kind:
                pieces[at].append(payload)
                continue
            open_text[state.slot] = len(events)
            pieces[len(events)] = [payload]
            events.append((kind, {"slot": state.slot, "text": payload}))
        else:
            open_text.pop(state.slot, None)
            events.append((kind, payload))
    for at, texts in pieces.items():
        if len(texts) > 1:
            events[at][1]["text"] = "".join(texts)
    return events


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
            await log.append(coalesce(batch), offer=len(batch) <= LIVE_ITEMS)
            for state, kind, payload in batch:  # once logged, the slot has ended
                if kind in TERMINAL_STATES:
                    _finish(state, kind, payload)


def _finish(state: SlotState, kind: str, payload: dict[str, Any]) -> None:
    """Record the slot's outcome for snapshots and stop replies; its text is in the log."""
    state.state = TERMINAL_STATES[kind]
    state.usage = payload.get("usage", {})
    state.timing = payload.get("timing", {})
    state.error = payload.get("error")
    state.finish_reason = payload.get("finish_reason")
    if kind == "model.stopped":
        state.stop_reason = payload.get("reason")
    state.ended.set()
