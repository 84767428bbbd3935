"""The SSE wire form of Chorus's events: one JSON line per event, text exactly as the JSON
encoder writes it, and half characters that survive."""

from __future__ import annotations

import json

import trio
from hypothesis import given
from hypothesis import strategies as st

from app.engine.events import (
    Counts,
    Delta,
    ModelDone,
    ModelError,
    Reasoning,
    SlotError,
    SlotTiming,
    SlotUsage,
    StreamDone,
    ToolCall,
)
from app.engine.log import LogEntry, MemoryEventLog
from app.engine.wire import encode_data, encode_event, whole_characters


@given(st.integers(min_value=0, max_value=64), st.text(), st.booleans(),
       st.none() | st.integers(min_value=0, max_value=10_000))
def test_a_text_event_encodes_as_the_json_encoder_would(slot: int, text: str,
                                                        answer: bool, turn: int | None) -> None:
    event = Delta(slot, text, turn) if answer else Reasoning(slot, text, turn)
    encoded = encode_data(event)
    assert encoded == json.dumps(event.data(), ensure_ascii=False, separators=(",", ":"))
    assert "\n" not in encoded
    in_turn = {} if turn is None else {"turn": turn}
    assert json.loads(encoded) == {"slot": slot, "text": text, **in_turn}


def test_an_event_is_its_id_its_type_and_its_data_on_one_line_each() -> None:
    usage, timing = SlotUsage(3, 5, False), SlotTiming(12.5, 100.0, 50.0)
    done = ModelDone(1, "tool_calls", usage, timing, (ToolCall(0, "c1", "f", "{}"),))
    assert encode_event(7, done) == (
        b'id: 7\nevent: model.done\ndata: {"slot":1,"finish_reason":"tool_calls",'
        b'"usage":{"input_tokens":3,"output_tokens":5,"estimated":false},'
        b'"timing":{"ttft_ms":12.5,"duration_ms":100.0,"tokens_per_s":50.0},'
        b'"tool_calls":[{"index":0,"id":"c1","name":"f","arguments":"{}"}]}\n\n')
    assert "tool_calls" not in ModelDone(1, "stop", usage, timing).data()
    error = ModelError(0, SlotError("rate_limit", "slow down", True), usage, timing).data()
    assert error["error"] == {"type": "rate_limit", "message": "slow down", "retryable": True}
    assert ModelError(0, SlotError("upstream", "x", False, 502), usage, timing).data()[
        "error"]["status"] == 502
    assert StreamDone(Counts(2, 1, 0), 9.5).data() == {
        "counts": {"done": 2, "error": 1, "stopped": 0}, "duration_ms": 9.5}


ANY_CODE_POINT = st.text(st.characters(blacklist_categories=()))  # lone surrogates too


@given(st.lists(ANY_CODE_POINT, max_size=4))
def test_every_text_is_logged_and_reads_back_as_a_utf16_reader_joins_it(
    texts: list[str],
) -> None:
    # Half a character (a lone surrogate) has no UTF-8 form: it is logged as its JSON
    # escape, and the halves of texts joined make the character again.
    log = MemoryEventLog()
    log.append_nowait([Delta(0, t) for t in texts])
    wire = b"".join(e.wire for e in trio_since(log)).decode()  # UTF-8, or this raises
    read = [json.loads(line[6:])["text"] for line in wire.split("\n")
            if line.startswith("data: ")]
    assert utf16("".join(read)) == utf16("".join(texts))


def trio_since(log: MemoryEventLog) -> list[LogEntry]:
    return trio.run(log.since, 0)  # a hypothesis test runs outside trio


def utf16(text: str) -> bytes:
    return text.encode("utf-16-le", "surrogatepass")


def test_whole_characters_joins_the_halves_and_marks_a_half_alone() -> None:
    assert whole_characters("a \ud83d" + "\ude00 b") == "a \U0001f600 b"
    assert whole_characters("\ude00 \ud83d") == "\ufffd \ufffd"
    assert whole_characters("plain, café") == "plain, café"
