"""The OpenAI front door's streamed body, read from the stream's log in the response's own
task: every chunk in order and once, the end, and what leaving does; under trio's
MockClock, without a server."""

from __future__ import annotations

import json
from typing import Any

import trio

from app.api.completion import DONE, Completion
from app.api.openai_compat import CompletionBody
from app.engine import Hub, StreamSettings
from app.engine.wire import PING
from providers import Finish, TextDelta
from providers.errors import UpstreamError

from ..support.engine import Scripted, plans, route


def slow(*texts: str, then: Any = None) -> Scripted:
    """A model that answers ``texts`` half a second apart, then finishes (or raises
    ``then``)."""
    script: list[Any] = [x for t in texts for x in (0.5, TextDelta(t))]
    return Scripted([[*script, then if then is not None else Finish("stop")]])


async def complete(models: list[Any], settings: StreamSettings | None = None
                   ) -> tuple[bytes, int, Any]:
    """Stream a completion of ``models`` (one choice each) as the front door does; return
    the bytes a client reads, how many writes the response made, and the stream."""
    hub = Hub(settings or StreamSettings(resume_grace=0))
    out = bytearray()
    written = 0
    async with trio.open_nursery() as nursery:
        await nursery.start(hub.run)
        stream = await hub.open("owner", plans(*models), reader=True, resumable=False)
        completion = Completion("chatcmpl-x", "m", 0, ["m"] * len(models))
        body = CompletionBody(stream, completion)
        await body.start(True)
        try:
            async for data in body:
                out += data
                written += 1
        finally:
            await body.aclose()
        await stream.done.wait()
        hub.close()
    return bytes(out), written, stream


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


async def test_every_chunk_goes_out_once_in_order_then_done(autojump_clock) -> None:
    wire, written, _ = await complete([route(slow(*TEXTS), "m")])
    parsed = chunks(wire)
    assert contents(parsed) == TEXTS  # each once, in order
    assert parsed[-1] == "[DONE]"
    assert parsed[-2]["choices"][0]["finish_reason"] == "stop"
    assert [c["delta"].get("role") for p in parsed[:-1] for c in p["choices"]].count(
        "assistant") == 1
    assert written >= len(TEXTS) - 1  # a token half a second apart is its own write


async def test_two_choices_each_get_their_own_chunks(autojump_clock) -> None:
    wire, _, _ = await complete([route(slow(*TEXTS), "m"), route(slow(*TEXTS[:5]), "m")])
    parsed = chunks(wire)
    assert contents(parsed, 0) == TEXTS
    assert contents(parsed, 1) == TEXTS[:5]
    assert parsed[-1] == "[DONE]"


async def test_an_error_ends_the_body_while_the_other_choice_still_runs(
    autojump_clock,
) -> None:
    failing = slow("a ", "b ", then=UpstreamError("boom", status=400))
    running = slow(*TEXTS)
    wire, _, stream = await complete([route(running, "m"), route(failing, "m")])
    parsed = chunks(wire)
    assert "[DONE]" not in parsed
    assert parsed[-1]["error"]["message"]  # the error is the last thing written, once
    assert sum(isinstance(p, dict) and "error" in p for p in parsed) == 1
    assert contents(parsed, 1) == ["a ", "b "]
    assert len(contents(parsed, 0)) < len(TEXTS)  # it did not wait for the other choice
    assert stream.slots[0].state == "stopped"  # leaving stopped it

