"""The slot task: run one slot's model (with retries and fallbacks) inside its cancel scope.

Rules this module enforces:
- The whole run sits inside ``state.scope``; cancelling it (stop, disconnect, shutdown) closes
  the upstream connection at once, because the provider's generator is closed in place.
- A slot's exception never leaves this task: a ``ProviderError`` (or a bug) becomes the
  slot's ``model.error``; siblings never see it.
- ``trio.Cancelled`` from outside the slot's own scope always propagates.
- Exactly one terminal item (done, error or stopped) is sent per slot, last.
- Retries and fallbacks happen only before the first text or reasoning was sent, so text is
  never duplicated.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable
from contextlib import aclosing

import trio

from providers import Finish, ProviderError, ReasoningDelta, TextDelta, Usage
from providers.errors import TimeoutError_

from .events import (
    Delta,
    ModelDone,
    ModelError,
    ModelRetry,
    ModelStart,
    ModelStopped,
    Reasoning,
    SlotError,
    SlotEvent,
    SlotTiming,
    SlotUsage,
    Terminal,
    ToolCall,
)
from .slots import RUNNING, Route, SlotState

log = logging.getLogger("chorus.slot")

Send = trio.MemorySendChannel[SlotEvent]  # where slots send the merge task their events
# Told of ``model.retry`` and of the terminal event, just before each is sent (metrics, logs).
SlotHook = Callable[[SlotState, ModelRetry | Terminal], None]

RETRY_AFTER_CAP = 30.0
STEP_TOKENS = 8  # text items a slot queues in a row before it lets other tasks run
# The idle timeout may fire this share of itself late (60 s: up to ~0.94 s), rather than
# move its deadline on every token (see ``_attempt``).
IDLE_SLACK = 1 / 64


class _Meter:
    """Timing and token counts of one slot, for the terminal event's ``usage``/``timing``."""

    __slots__ = ("chars", "finish", "first", "input", "output", "queued", "start",
                 "tool_calls")

    def __init__(self) -> None:
        self.start: float | None = None
        self.first: float | None = None
        self.input: int | None = None
        self.output: int | None = None
        self.chars = 0
        self.finish = "stop"
        self.tool_calls: tuple[ToolCall, ...] = ()
        self.queued = 0  # text items queued since the slot last yielded (see _send_text)

    def usage(self) -> SlotUsage:
        estimated = self.output is None
        output = self.output if self.output is not None else math.ceil(self.chars / 4)
        return SlotUsage(self.input, output, estimated)

    def timing(self) -> SlotTiming:
        now = trio.current_time()
        ttft = None if self.first is None or self.start is None else self.first - self.start
        duration = 0.0 if self.start is None else now - self.start
        output = self.usage().output_tokens
        tps = None
        if self.first is not None and now > self.first and output:
            tps = round(output / (now - self.first), 2)
        return SlotTiming(None if ttft is None else round(ttft * 1000, 1),
                          round(duration * 1000, 1), tps)


def backoff(attempt: int, retry_after: float | None) -> float | None:
    """Seconds to wait before retry number ``attempt`` (from 1); ``None``: don't retry.

    ``Retry-After`` wins when the upstream sent it, up to 30 s; a longer wait is not worth
    holding the slot for, so the slot moves on to its fallback instead.
    """
    if retry_after is not None:
        return retry_after if retry_after <= RETRY_AFTER_CAP else None
    return 0.25 * 2.0 ** (attempt - 1) * random.uniform(0.8, 1.2)


async def run_slot(state: SlotState, send: Send, hook: SlotHook | None = None) -> None:
    """The slot's task. Returns after sending its one terminal event."""
    meter = _Meter()
    slot, turn = state.slot, state.turn
    async with send:
        outcome: Terminal | None = None
        with state.scope:
            try:
                await _run_routes(state, send, meter, hook)
                outcome = ModelDone(slot, meter.finish, meter.usage(), meter.timing(),
                                    meter.tool_calls, turn)
            except ProviderError as exc:
                error = SlotError(exc.type, exc.message, exc.retryable, exc.status)
                outcome = ModelError(slot, error, meter.usage(), meter.timing(), turn)
            except Exception:
                log.exception("slot=%d model=%s internal error", slot, state.model)
                error = SlotError("internal", "Chorus failed on this slot")
                outcome = ModelError(slot, error, meter.usage(), meter.timing(), turn)
        if outcome is None:  # the slot's own scope was cancelled: a stop
            outcome = ModelStopped(slot, state.stop_reason or "user", meter.usage(),
                                   meter.timing(), turn)
        # The upstream answer is closed and the limiter given back. Let the other tasks
        # run before the outcome's bookkeeping (the observer's metrics and log line): a
        # slot's end is then two steps of ~0.2 ms instead of one of ~0.4 ms that every
        # token of every other stream arriving meanwhile waits behind
        # (``bench/findings.md``, "the tail").
        await trio.lowlevel.cancel_shielded_checkpoint()
        if hook is not None:
            hook(state, outcome)
        await send.send(outcome)


async def _run_routes(state: SlotState, send: Send, meter: _Meter, hook: SlotHook | None
                      ) -> None:
    retries_sent = 0
    last: ProviderError | None = None
    for index, route in enumerate(state.plan.routes):
        if index:
            assert last is not None
            retries_sent += 1
            state.model = route.ref
            await _send_retry(send, hook, state,
                              ModelRetry(state.slot, retries_sent, last.type, route.ref,
                                         state.turn))
        attempt = 0
        while True:
            try:
                await _attempt(state, route, send, meter)
                return
            except ProviderError as exc:
                if meter.first is not None:
                    raise  # text was sent: never retry, never duplicate
                last = exc
                attempt += 1
                delay = None
                if exc.retryable and attempt <= route.retries:
                    delay = backoff(attempt, getattr(exc, "retry_after", None))
                if delay is None:
                    break
                retries_sent += 1
                await _send_retry(send, hook, state,
                                  ModelRetry(state.slot, retries_sent, exc.type, route.ref,
                                             state.turn))
                await trio.sleep(delay)
    assert last is not None
    raise last


async def _send_retry(send: Send, hook: SlotHook | None, state: SlotState,
                      retry: ModelRetry) -> None:
    if hook is not None:
        hook(state, retry)
    await send.send(retry)


async def _attempt(state: SlotState, route: Route, send: Send, meter: _Meter) -> None:
    async with _Taken(route.limiter):
        state.state = RUNNING
        sent_at = trio.current_time()
        if meter.start is None:
            meter.start = sent_at
            await _put(send, ModelStart(state.slot, route.ref, state.turn))
        t = route.timeouts
        total_deadline = sent_at + t.total if t.total is not None else math.inf
        idle = t.idle if t.idle is not None else math.inf
        slack = idle * IDLE_SLACK
        phase = "first_token"
        with trio.CancelScope() as timer:
            first = sent_at + t.first_token if t.first_token is not None else math.inf
            timer.deadline = min(first, total_deadline)
            async with aclosing(route.provider.stream(route.request)) as events:
                async for event in events:
                    if isinstance(event, TextDelta | ReasoningDelta):
                        if not event.text:
                            continue
                        if meter.first is None:
                            meter.first = trio.current_time()
                            phase = "idle"
                        meter.chars += len(event.text)
                        kind = Delta if isinstance(event, TextDelta) else Reasoning
                        await _send_text(send, kind(state.slot, event.text, state.turn),
                                         meter)
                    elif isinstance(event, Usage):
                        if event.input_tokens is not None:
                            meter.input = event.input_tokens
                        if event.output_tokens is not None:
                            meter.output = event.output_tokens
                    elif isinstance(event, Finish):
                        meter.finish = event.reason
                        meter.tool_calls = tuple(
                            ToolCall(c.index, c.id, c.name, c.arguments)
                            for c in event.tool_calls)
                    if phase == "idle":
                        # Moving a deadline re-files it in trio's deadline heap: per token,
                        # that was a few per cent of a slot's work. So the deadline is
                        # set ``slack`` past where it is due and moves only once it falls
                        # short (about once per ``slack`` seconds of a steady answer); an
                        # earlier one (from the first-token phase) moves at once. A silent
                        # upstream is cut between ``idle`` and ``idle + slack`` after its
                        # last event.
                        due = trio.current_time() + idle
                        deadline = timer.deadline
                        if ((due > deadline and deadline < total_deadline)
                                or deadline > due + slack):
                            timer.deadline = min(due + slack, total_deadline)
        if timer.cancelled_caught:
            now = trio.current_time()
            which = "total" if now >= total_deadline else phase
            raise TimeoutError_(_TIMEOUT_MESSAGES[which].format(model=route.ref))


# No scheduler round trip on the way to the upstream request when there is room (the
# common case): a stream's slots then send their requests one right after the other,
# instead of each waiting behind every other task once or twice. When there is none, they
# wait as ``async with limiter`` and ``send.send`` would.

class _Taken:
    """The limiter held for the block (a plain object: no generator frame kept alive for
    the whole answer, as ``asynccontextmanager`` would)."""

    __slots__ = ("_limiter",)

    def __init__(self, limiter: trio.CapacityLimiter) -> None:
        self._limiter = limiter

    async def __aenter__(self) -> None:
        try:
            self._limiter.acquire_nowait()
        except trio.WouldBlock:
            await self._limiter.acquire()

    async def __aexit__(self, *exc: object) -> None:
        self._limiter.release()


async def _put(send: Send, item: SlotEvent) -> None:
    try:
        send.send_nowait(item)
    except trio.WouldBlock:
        await send.send(item)


async def _send_text(send: Send, item: Delta | Reasoning, meter: _Meter) -> None:
    """Queue a text item without a scheduler round trip, up to ``STEP_TOKENS`` in a row.

    One upstream read often holds many tokens; ``send.send`` would yield to the scheduler
    after each, waking the merge task (and a reader, and a write) per token. Queued
    without yielding, a read's tokens reach the merge task together and leave as one
    event and one write. But a slot must not hold the scheduler for long: a 64 KiB read
    is hundreds of tokens, and with many slots at full speed the merge task, a stop or a
    disconnect would wait behind a whole round of such steps. So every ``STEP_TOKENS``-th
    token yields (and when the channel is full, the slot waits here: backpressure is
    unchanged).
    """
    if meter.queued < STEP_TOKENS:
        try:
            send.send_nowait(item)
            meter.queued += 1
            return
        except trio.WouldBlock:
            pass
    await send.send(item)
    meter.queued = 0


_TIMEOUT_MESSAGES = {
    "first_token": "{model} sent no token within the first-token timeout",
    "idle": "{model} went silent for longer than the idle timeout",
    "total": "{model} ran past the total timeout",
}
