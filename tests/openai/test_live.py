"""The OpenAI front door's streamed body when the merge task writes it (a caught-up reader
on HTTP/1.1): the same chunks, in order, each once, whichever task writes them; under
trio's MockClock, without a server."""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio
import trio.testing

from app.api.openai_compat import DONE, Completion, CompletionBody
from app.engine import Hub, StreamSettings
from app.engine.wire import PING
from providers import Finish, TextDelta
from providers.errors import UpstreamError

from ..support.engine import LiveSocket, Scripted, plans, route


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


def slow(*texts: str, then: Any = None) -> Scripted:
    """A model that answers ``texts`` half a second apart, then finishes (or raises
    ``then``)."""
    script: list[Any] = [x for t in texts for x in (0.5, TextDelta(t))]
    return Scripted([[*script, then if then is not None else Finish("stop")]])


async def complete(models: list[Any], sink: LiveSocket | None,
                   settings: StreamSettings | None = None) -> tuple[bytes, int, Any]:
    """Stream a completion of ``models`` (one choice each) as the front door does; return
    the bytes a client reads, how many writes the response's own task made, and the
    stream."""
    hub = Hub(settings or StreamSettings(resume_grace=0))
    out = bytearray()
    written = 0
    async with trio.open_nursery() as nursery:
        await nursery.start(hub.run)
        stream = await hub.open("owner", plans(*models), reader=True)
        completion = Completion("chatcmpl-x", "m", 0, len(models))
        body = CompletionBody(stream, completion)
        await body.start(True)
        target = out
        if sink is not None:
            body.write_live(sink)
            target = sink.out
        try:
            async for data in body:
                target += data
                written += 1
        finally:
            await body.aclose()
        await stream.done.wait()
        hub.close()
    return bytes(sink.out if sink is not None else out), written, stream


def chunks(wire: bytes) -> list[Any]:
    """The ``data:`` payloads, decoded (``[DONE]`` as the string)."""
    assert wire.endswith(b"\n\n")
    events = [e for e in wire.split(b"\n\n") if e and e + b"\n\n" != PING]
    assert all(e.startswith(b"data: ") for e in events), events
    return [e[6:].decode() if e == DONE.strip() else json.loads(e[6:]) for e in events]


def by_choice(parsed: list[Any]) -> dict[Any, list[Any]]:
    out: dict[Any, list[Any]] = {}
    for p in parsed:
        for c in p["choices"] if isinstance(p, dict) else [{"index": "end", "delta": p}]:
            out.setdefault(c["index"], []).append((c["delta"], c.get("finish_reason")))
    return out


def contents(parsed: list[Any], index: int = 0) -> list[str]:
    return [c["delta"].get("content") for p in parsed if isinstance(p, dict)
            for c in p.get("choices", ()) if c["index"] == index and "content" in c["delta"]]


TEXTS = [f"t{i} " for i in range(12)]


async def test_a_caught_up_completion_is_written_by_the_merge_task(autojump_clock) -> None:
    sink = LiveSocket()
    wire, written, _ = await complete([route(slow(*TEXTS), "m")], sink)
    parsed = chunks(wire)
    assert contents(parsed) == TEXTS  # each once, in order
    assert parsed[-1] == "[DONE]"
    assert parsed[-2]["choices"][0]["finish_reason"] == "stop"
    assert [c["delta"].get("role") for p in parsed[:-1] for c in p["choices"]].count(
        "assistant") == 1
    # Every token but the first (read before the response began) and the last (which may
    # reach the merge task with the model's end, two items: then the reader is woken).
    assert sink.offers["whole"] >= len(TEXTS) - 2
    assert written <= 4  # the first chunk, the end, and at most two wakes between


async def test_the_same_bytes_whichever_task_writes_them(autojump_clock) -> None:
    models = [route(slow(*TEXTS), "m"), route(slow(*TEXTS[:5]), "m")]
    alone, _, _ = await complete(models, None)
    sockets = [LiveSocket(), LiveSocket(refuse=2), LiveSocket(room=9), LiveSocket(9, refuse=3)]
    for sink in sockets:
        live, _, _ = await complete(models, sink)
        # The two choices' chunks may interleave either way (their tokens are due at the
        # same instants); each choice's own are the same, and so is the end.
        assert by_choice(chunks(live)) == by_choice(chunks(alone)), sink.offers
    assert sink.offers["refused"]
    assert sink.offers["in part"]


async def test_a_refused_offer_is_not_fed_twice(autojump_clock) -> None:
    sink = LiveSocket(refuse=2)  # every other offer: the reader's task reads those events anew
    wire, written, _ = await complete([route(slow(*TEXTS), "m")], sink)
    assert contents(chunks(wire)) == TEXTS
    assert sink.offers["refused"] >= 4
    assert written >= sink.offers["refused"]  # each refused batch went out the other way


async def test_an_error_ends_the_body_while_the_other_choice_still_runs(
    autojump_clock,
) -> None:
    failing = slow("a ", "b ", then=UpstreamError("boom", status=400))
    running = slow(*TEXTS)
    sink = LiveSocket()
    wire, _, stream = await complete([route(running, "m"), route(failing, "m")], sink)
    parsed = chunks(wire)
    assert "[DONE]" not in parsed
    assert parsed[-1]["error"]["message"]  # the error is the last thing written, once
    assert sum(isinstance(p, dict) and "error" in p for p in parsed) == 1
    assert contents(parsed, 1) == ["a ", "b "]
    assert len(contents(parsed, 0)) < len(TEXTS)  # it did not wait for the other choice
    assert stream.slots[0].state == "stopped"  # leaving stopped it

