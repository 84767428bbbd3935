"""The merge task: the one reader of the slots' channel and the one writer of the log.

Each wake-up takes everything already queued (no timer, so an idle channel adds no
latency) and coalesces it: consecutive text of one slot and kind becomes one event. When
the merge keeps up, every item is its own event; when slots outrun it, events grow larger
and fewer, never lost or reordered within a slot. Coalescing here, before the log, means
every reader sees the same events under the same ids.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import trio

from .events import Delta, Reasoning, SlotEvent, Terminal
from .log import EventLog
from .slots import SlotState


def coalesce(batch: Sequence[SlotEvent]) -> list[SlotEvent]:
    """Merge consecutive text of the same slot and kind into one event.

    A slot's text may be merged into an event placed before another slot's event: order is
    kept within each slot, which is the only order the contract gives.
    """
    if len(batch) == 1:
        return list(batch)
    events: list[SlotEvent] = []
    open_text: dict[int, int] = {}  # slot -> index in events of its open text event
    pieces: dict[int, list[str]] = {}  # index in events -> texts to join into that event
    for event in batch:
        if isinstance(event, Delta | Reasoning):
            at = open_text.get(event.slot)
            if at is not None and type(events[at]) is type(event):
                pieces[at].append(event.text)
                continue
            open_text[event.slot] = len(events)
            pieces[len(events)] = [event.text]
        else:
            open_text.pop(event.slot, None)
        events.append(event)
    for at, texts in pieces.items():
        if len(texts) > 1:
            first = events[at]
            assert isinstance(first, Delta | Reasoning)
            events[at] = type(first)(first.slot, "".join(texts), first.turn)
    return events


async def merge(receive: trio.MemoryReceiveChannel[SlotEvent], log: EventLog,
                slots: Sequence[SlotState] | Mapping[int, SlotState]) -> None:
    """Run until every slot has closed its end of the channel. ``slots``: each slot's
    state by its number (a conversation's turn passes only its speaker's)."""
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
            await log.append(coalesce(batch))
            for event in batch:  # once logged, the slot has ended
                if isinstance(event, Terminal):
                    slots[event.slot].finish(event)
