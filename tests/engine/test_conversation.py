"""Conversation mode under trio's MockClock: turns, the manager, stops, errors, resume."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import aclosing
from typing import Any

import pytest
import trio

from app.engine import (
    ConversationPlan,
    Hub,
    ManagerPlan,
    Route,
    SlotPlan,
    Speaker,
    Stream,
    StreamSettings,
)
from providers import Finish, Message, TextDelta, Usage
from providers.errors import UpstreamError

from ..support.engine import DEMO, Event, Scripted, collect, parse, route, run

TERMINAL = {"model.done", "model.error", "model.stopped"}
OPENING = (Message("user", "Is P = NP?"),)


def says(name: str, turns: int = 30, *, gap: float = 0.1) -> Scripted:
    """A speaker whose n-th answer is ``"<name><n>"``, taking ``gap`` seconds."""
    return Scripted([[gap, TextDelta(f"{name}{n}"), Finish("stop")] for n in range(turns)],
                    name=name)


def speakers(*sources: Scripted | str) -> tuple[Speaker, ...]:
    out = []
    for i, source in enumerate(sources):
        r = route(DEMO, source) if isinstance(source, str) else route(source, "m")
        name = source if isinstance(source, str) else source.name
        out.append(Speaker(SlotPlan(i, name, (r,))))
    return tuple(out)


def talk(*sources: Scripted | str, rounds: int = 1, order: Sequence[int] = (),
         manager: Route | None = None, stop_on_error: bool = False) -> ConversationPlan:
    return ConversationPlan(speakers(*sources), OPENING, rounds, tuple(order),
                            None if manager is None else ManagerPlan((manager,)), stop_on_error)


async def converse(plan: ConversationPlan, during: Callable[[Stream], Any] | None = None,
                   settings: StreamSettings | None = None) -> list[Event]:
    return await run([s.plan for s in plan.speakers], settings, during, plan)


def turns(events: list[Event]) -> list[int]:
    """The slot of each turn, in order."""
    return [e.data["slot"] for e in events if e.type == "turn.start"]


def ends(events: list[Event]) -> list[tuple[str, int, str]]:
    """Each turn's terminal event: (type, slot, reason or finish)."""
    return [(e.type, e.data["slot"], e.data.get("reason") or e.data.get("finish_reason")
             or e.data["error"]["type"]) for e in events if e.type in TERMINAL]


def assert_turn_grammar(events: list[Event]) -> None:
    """Ids from 1; one start and one done; each turn: turn.start, its slot's events all
    carrying ``turn``, and one terminal event, last; counts count turns."""
    assert [e.id for e in events] == list(range(1, len(events) + 1))
    assert events[0].type == "stream.start"
    assert events[0].data["mode"] == "conversation"
    assert events[-1].type == "stream.done"
    body = [e for e in events[1:-1] if e.type != "manager.pick"]
    turn = -1
    open_turn = False
    for e in body:
        if e.type == "turn.start":
            assert not open_turn, "a turn began before the last one ended"
            turn += 1
            assert e.data["turn"] == turn
            slot, open_turn = e.data["slot"], True
            continue
        assert open_turn
        assert (e.data["turn"], e.data["slot"]) == (turn, slot)
        if e.type in TERMINAL:
            open_turn = False
    assert not open_turn
    outcomes = [t.split(".")[1] for t, _, _ in ends(events)]
    assert events[-1].data["counts"] == {k: outcomes.count(k)
                                         for k in ("done", "error", "stopped")}


async def test_without_turn_order_each_round_lets_everyone_speak_in_order(
        autojump_clock) -> None:
    events = await converse(talk(says("Ada"), says("Bo"), says("Cy"), rounds=2))
    assert_turn_grammar(events)
    assert events[0].data["rounds"] == 2
    assert events[0].data["participants"] == [
        {"slot": 0, "model": "Ada/m", "name": "Ada"}, {"slot": 1, "model": "Bo/m", "name": "Bo"},
        {"slot": 2, "model": "Cy/m", "name": "Cy"}]
    assert turns(events) == [0, 1, 2, 0, 1, 2]
    said = [e.data["text"] for e in events if e.type == "delta"]
    assert said == ["Ada0", "Bo0", "Cy0", "Ada1", "Bo1", "Cy1"]
    start = next(e for e in events if e.type == "turn.start")
    assert start.data == {"turn": 0, "slot": 0, "model": "Ada/m", "name": "Ada"}
    assert events[-1].data["counts"] == {"done": 6, "error": 0, "stopped": 0}
    assert "manager_usage" not in events[-1].data


async def test_turn_order_changes_the_order_of_every_round(autojump_clock) -> None:
    events = await converse(talk(says("Ada"), says("Bo"), says("Cy"), rounds=2,
                                 order=[2, 0, 1]))
    assert_turn_grammar(events)
    assert turns(events) == [2, 0, 1, 2, 0, 1]


def manager_saying(*answers: str | BaseException) -> tuple[Scripted, Route]:
    scripts: list[list[Any]] = []
    for answer in answers:
        if isinstance(answer, BaseException):
            scripts.append([answer])
        else:
            scripts.append([TextDelta(answer), Usage(10, 2), Finish("stop")])
    manager = Scripted(scripts, name="boss")
    return manager, route(manager, "m")


async def test_the_manager_picks_each_speaker_before_its_turn(autojump_clock) -> None:
    manager, picks = manager_saying("Bo", "Cy.", "ada", "Cy", "Bo", "Ada")
    events = await converse(talk(says("Ada"), says("Bo"), says("Cy"), rounds=2,
                                 manager=picks))
    assert_turn_grammar(events)
    assert turns(events) == [1, 2, 0, 2, 1, 0]
    kinds = [e.type for e in events if e.type in ("manager.pick", "turn.start")]
    assert kinds == ["manager.pick", "turn.start"] * 6
    pick_events = [e.data for e in events if e.type == "manager.pick"]
    assert pick_events[0] == {"turn": 0, "slot": 1, "fallback": False}
    assert not any(p["fallback"] for p in pick_events)
    assert manager.calls == 6  # one short request per turn
    assert events[-1].data["manager_usage"] == {
        "input_tokens": 60, "output_tokens": 12, "estimated": False}


async def test_a_pick_of_nobody_of_the_last_speaker_or_a_failure_falls_back_round_robin(
        autojump_clock) -> None:
    _, picks = manager_saying("Bo", "nobody at all", "Ada", "Ada",
                              UpstreamError("bad", status=400), "Bo and Cy")
    events = await converse(talk(says("Ada"), says("Bo"), says("Cy"), rounds=2,
                                 manager=picks))
    assert_turn_grammar(events)
    pick_events = [(e.data["slot"], e.data["fallback"]) for e in events
                   if e.type == "manager.pick"]
    # Bo; nobody → after Bo: Cy; Ada; Ada again → after Ada: Bo; a failure → Cy; two
    # names → after Cy: Ada.
    assert pick_events == [(1, False), (2, True), (0, False), (1, True), (2, True), (0, True)]
    assert turns(events) == [1, 2, 0, 1, 2, 0]


async def test_skip_ends_the_current_turn_and_the_next_begins(autojump_clock) -> None:
    async def skip_first(stream: Stream) -> None:
        await trio.sleep(1)
        stream.skip()
        await stream.wait_skipped()

    slow = Scripted([[60.0, TextDelta("never"), Finish("stop")]], name="Slow")
    events = await converse(talk(slow, says("Bo"), rounds=1), during=skip_first)
    assert_turn_grammar(events)
    assert ends(events) == [("model.stopped", 0, "skip"), ("model.done", 1, "stop")]
    assert next(e for e in events if e.type == "model.stopped").at == pytest.approx(1)
    assert events[-1].data["counts"] == {"done": 1, "error": 0, "stopped": 1}


async def test_stop_ends_the_conversation(autojump_clock) -> None:
    async def stop_in_second_turn(stream: Stream) -> None:
        await trio.sleep(1.05)
        stream.stop(None, "user")
        await stream.wait_ended(None)

    events = await converse(talk(says("Ada", gap=1.0), says("Bo", gap=1.0), rounds=3),
                            during=stop_in_second_turn)
    assert_turn_grammar(events)
    assert turns(events) == [0, 1]
    assert ends(events) == [("model.done", 0, "stop"), ("model.stopped", 1, "user")]


async def test_stopping_a_participant_cuts_its_turn_and_leaves_it_out(autojump_clock) -> None:
    async def leave_out_ada(stream: Stream) -> None:
        await trio.sleep(0.5)
        stream.stop([0], "user")
        await stream.wait_ended([0])

    events = await converse(talk(says("Ada", gap=1.0), says("Bo"), rounds=3),
                            during=leave_out_ada)
    assert_turn_grammar(events)
    assert turns(events) == [0, 1, 1, 1]
    assert ends(events)[0] == ("model.stopped", 0, "user")


async def test_stopping_a_silent_participant_leaves_it_out_of_later_turns(
        autojump_clock) -> None:
    async def leave_out_bo(stream: Stream) -> None:
        await trio.sleep(0.05)
        stream.stop([1], "user")

    events = await converse(talk(says("Ada"), says("Bo"), rounds=2), during=leave_out_bo)
    assert_turn_grammar(events)
    assert turns(events) == [0, 0]
    assert ends(events) == [("model.done", 0, "stop")] * 2


def failing(name: str) -> Scripted:
    return Scripted([[TextDelta("half"), UpstreamError("boom", status=400)]], name=name)


async def test_a_failing_turn_leaves_its_participant_out_by_default(autojump_clock) -> None:
    events = await converse(talk(failing("Ada"), says("Bo"), rounds=2))
    assert_turn_grammar(events)
    assert turns(events) == [0, 1, 1]
    assert ends(events) == [("model.error", 0, "upstream"), ("model.done", 1, "stop"),
                            ("model.done", 1, "stop")]


async def test_a_failing_turn_ends_the_conversation_with_on_error_stop(autojump_clock) -> None:
    events = await converse(talk(failing("Ada"), says("Bo"), rounds=2, stop_on_error=True))
    assert_turn_grammar(events)
    assert turns(events) == [0]
    assert events[-1].data["counts"] == {"done": 0, "error": 1, "stopped": 0}


async def test_a_reader_resumes_mid_conversation_and_gets_every_event_once(
        autojump_clock) -> None:
    plan = talk(says("Ada"), says("Bo"), rounds=3)
    hub = Hub(StreamSettings(resume_grace=5))
    async with trio.open_nursery() as nursery:
        await nursery.start(hub.run)
        stream = await hub.open("owner", [s.plan for s in plan.speakers], reader=True,
                                conversation=plan)
        first: list[Event] = []
        async with aclosing(stream.follow(0, attached=True)) as body:
            async for chunk in body:
                first.extend(parse(chunk, trio.current_time()))
                if sum(e.type == "turn.start" for e in first) >= 3:
                    break  # the reader leaves in the third turn
        await trio.sleep(0.05)
        rest = await collect(stream, first[-1].id)
        everything = await collect(stream, 0)
        hub.close()
    resumed = first + rest
    assert [e.id for e in resumed] == [e.id for e in everything]
    assert [(e.type, e.data) for e in resumed] == [(e.type, e.data) for e in everything]
    assert_turn_grammar(resumed)
    assert turns(resumed) == [0, 1, 0, 1, 0, 1]


async def test_the_snapshot_shows_every_turn_so_far(autojump_clock) -> None:
    seen: dict[str, Any] = {}

    async def look(stream: Stream) -> None:
        await trio.sleep(0.25)  # in the third turn
        seen.update(await stream.snapshot())

    await converse(talk(says("Ada"), says("Bo"), rounds=2), during=look)
    assert seen["mode"] == "conversation"
    assert [(t["turn"], t["name"], t["state"], t["text"]) for t in seen["turns"]] == [
        (0, "Ada", "done", "Ada0"), (1, "Bo", "done", "Bo0"), (2, "Ada", "running", "")]


async def wire_bytes_per_char(rounds: int) -> float:
    plan = talk("ttft=0.05,rate=40,tokens=40", "ttft=0.05,rate=40,tokens=40", rounds=rounds)
    hub = Hub(StreamSettings(resume_grace=0))
    size = 0
    async with trio.open_nursery() as nursery:
        await nursery.start(hub.run)
        stream = await hub.open("owner", [s.plan for s in plan.speakers], reader=True,
                                conversation=plan)
        events: list[Event] = []
        async for chunk in stream.follow(0, attached=True):
            size += len(chunk)
            events.extend(parse(chunk, 0))
        hub.close()
    text = sum(len(e.data["text"]) for e in events if e.type == "delta")
    assert turns(events) == [0, 1] * rounds
    return size / text


async def test_bytes_on_the_wire_grow_with_the_text_not_the_transcript(autojump_clock) -> None:
    short, long = await wire_bytes_per_char(2), await wire_bytes_per_char(20)
    assert long == pytest.approx(short, rel=0.10)


async def test_a_conversation_nobody_reads_stops_after_the_grace(autojump_clock) -> None:
    plan = talk(says("Ada", gap=10.0), says("Bo", gap=10.0), rounds=3)
    hub = Hub(StreamSettings(resume_grace=2))
    async with trio.open_nursery() as nursery:
        await nursery.start(hub.run)
        stream = await hub.open("owner", [s.plan for s in plan.speakers], reader=True,
                                conversation=plan)
        async with aclosing(stream.follow(0, attached=True)) as body:
            async for chunk in body:
                if b"turn.start" in chunk:
                    break  # the only reader leaves at the first turn, at 0 s
        await stream.done.wait()
        ended_at = trio.current_time()
        events = await collect(stream, 0)
        hub.close()
    assert_turn_grammar(events)
    assert turns(events) == [0]
    stopped = events[-2]
    assert (stopped.type, stopped.data["reason"]) == ("model.stopped", "disconnect")
    assert ended_at == pytest.approx(2)
