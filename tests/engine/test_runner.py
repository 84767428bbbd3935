"""A slot's own rules: timeouts, retries before the first delta only, fallbacks, limits."""

from __future__ import annotations

import pytest
import trio

from app.engine.runner import IDLE_SLACK, backoff
from providers import Finish, ReasoningDelta, TextDelta, Timeouts
from providers.errors import AuthError, RateLimitError, TransportError, UpstreamError

from ..support.engine import Scripted, by_slot, plans, route, run, text_of


def last(events, slot=0):
    return by_slot(events, slot)[-1]


OK = [TextDelta("ok"), Finish("stop")]


@pytest.mark.parametrize(
    ("script", "timeouts", "ends_at", "phrase"),
    [
        ([100.0, *OK], Timeouts(first_token=5), 5, "first-token"),
        ([TextDelta("a"), 1.0, TextDelta("b"), 100.0, *OK], Timeouts(idle=3), 4, "idle"),
        # A steady answer keeps pushing the deadline; the silence after it is cut.
        ([TextDelta("a"), *[0.5, TextDelta("b")] * 20, 100.0, *OK], Timeouts(idle=3), 13,
         "idle"),
        ([ReasoningDelta("hm"), 2.0, TextDelta("b"), 2.0, TextDelta("c"), 2.0, *OK],
         Timeouts(idle=3, total=5), 5, "total"),
    ],
    ids=["first_token", "idle", "idle-after-steady-tokens", "total"],
)
async def test_timeouts_end_only_their_slot(autojump_clock, script, timeouts, ends_at, phrase):
    slow = Scripted([script])
    events = await run(plans(route(slow, "m", timeouts=timeouts), "ttft=0,rate=1,tokens=8"))
    error = last(events)
    assert error.type == "model.error"
    assert error.data["error"]["type"] == "timeout"
    assert phrase in error.data["error"]["message"]
    # The idle timeout may fire up to IDLE_SLACK of itself late (its deadline moves only
    # that often); the others are exact.
    late = timeouts.idle * IDLE_SLACK if phrase == "idle" else 0.0
    assert ends_at - 1e-9 <= error.at <= ends_at + late + 1e-9
    assert last(events, 1).type == "model.done"


async def test_retryable_errors_are_retried_before_the_first_delta(autojump_clock) -> None:
    flaky = Scripted([[UpstreamError("503", status=503)], [TransportError("reset")], OK])
    events = await run(plans(route(flaky, "m")))
    retries = [e for e in events if e.type == "model.retry"]
    assert [(r.data["attempt"], r.data["reason"]) for r in retries] == [
        (1, "upstream"), (2, "connection")]
    assert [e.type for e in events].count("model.start") == 1
    assert text_of(events, 0) == "ok"
    assert last(events).type == "model.done"
    assert flaky.calls == 3
    # The first retry waits 0.25 s (±20 % jitter) before its attempt fails again.
    assert 0.2 <= retries[1].at - retries[0].at <= 0.3


async def test_retries_stop_after_the_configured_number(autojump_clock) -> None:
    down = Scripted([[UpstreamError("500", status=500)]])
    events = await run(plans(route(down, "m", retries=2)))
    assert down.calls == 3
    assert last(events).data["error"] == {
        "type": "upstream", "message": "500", "status": 500, "retryable": True}


async def test_no_retry_once_text_was_sent(autojump_clock) -> None:
    dies = Scripted([[TextDelta("half"), TransportError("reset mid-stream")], OK])
    events = await run(plans(route(dies, "m")))
    assert dies.calls == 1
    assert text_of(events, 0) == "half"
    assert last(events).data["error"]["type"] == "connection"
    assert not [e for e in events if e.type == "model.retry"]


async def test_non_retryable_errors_are_not_retried(autojump_clock) -> None:
    denied = Scripted([[AuthError("bad key", status=401)]])
    events = await run(plans(route(denied, "m")))
    assert denied.calls == 1
    assert last(events).data["error"]["type"] == "auth"


async def test_retry_after_is_honoured(autojump_clock) -> None:
    limited = Scripted([[RateLimitError("slow down", retry_after=7.0)], OK])
    events = await run(plans(route(limited, "m")))
    retry = next(e for e in events if e.type == "model.retry")
    first_delta = next(e for e in events if e.type == "delta")
    assert first_delta.at - retry.at == pytest.approx(7.0)


def test_backoff_doubles_with_jitter_and_caps_retry_after() -> None:
    for attempt, base in ((1, 0.25), (2, 0.5), (3, 1.0)):
        assert base * 0.8 <= backoff(attempt, None) <= base * 1.2
    assert backoff(1, 12.0) == 12.0
    assert backoff(1, 31.0) is None  # too long to hold a slot: go to the fallback


async def test_fallback_runs_the_next_model_with_a_retry_event(autojump_clock) -> None:
    primary = Scripted([[AuthError("bad key", status=401)]], name="a")
    backup = Scripted([[TextDelta("from b"), Finish("stop")]], name="b")
    events = await run(plans([route(primary, "m"), route(backup, "m")]))
    retry = next(e for e in events if e.type == "model.retry")
    assert retry.data == {"slot": 0, "attempt": 1, "reason": "auth", "model": "b/m"}
    assert text_of(events, 0) == "from b"
    assert last(events).type == "model.done"


async def test_a_capacity_limit_queues_slots_instead_of_overloading(autojump_clock) -> None:
    limiter = trio.CapacityLimiter(1)
    one = "ttft=1,rate=0,tokens=3"
    events = await run(plans(*[route(_demo(), one, limiter=limiter) for _ in range(3)]))
    ends = sorted(last(events, s).at for s in range(3))
    assert ends == pytest.approx([1, 2, 3])  # one at a time


def _demo():
    from ..support.engine import DEMO

    return DEMO
