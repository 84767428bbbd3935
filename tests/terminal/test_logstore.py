"""The local log (SQLite in a temporary directory): what goes in comes back whole, the
newest conversation first, and each model's history is its own."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from app.terminal.board import Board
from app.terminal.logstore import (
    VERSION,
    Answer,
    Exchange,
    LogError,
    LogStore,
    exchange_of,
    new_id,
)
from providers import Message


def answer(slot: int, text: str, outcome: str = "done", **more: Any) -> Answer:
    return Answer(slot, f"demo/m{slot}", text, outcome, **more)


@pytest.fixture
def log(tmp_path: Path) -> LogStore:
    return LogStore(tmp_path / "deep" / "down" / "logs.db")


def test_nothing_is_made_until_the_first_exchange(log: LogStore) -> None:
    assert log.recent(10) == []
    assert not log.path.exists()
    with pytest.raises(LogError, match="no conversation is logged yet"):
        log.latest()
    with pytest.raises(LogError, match="nothing is logged yet"):
        log.conversation("abc")


def test_an_exchange_comes_back_whole(log: LogStore) -> None:
    sent = Exchange(1700000000.5, "hello?", (
        answer(0, "hi **there**", reason="stop", input_tokens=5, output_tokens=3,
               ttft_ms=150.0, duration_ms=400.0, tokens_per_s=12.5),
        answer(1, "half an ans", "stopped", reason="user"),
        answer(2, "", "error", reason="rate_limit: slow down"),
    ), duration_ms=420.0)
    log.record("c1", ["demo/m0", "demo/m1", "demo/m2"], "be brief", sent)
    back = log.conversation("c1")
    assert back.models == ("demo/m0", "demo/m1", "demo/m2")
    assert back.system == "be brief"
    assert back.created == sent.at
    assert back.exchanges == (sent,)
    (version,) = sqlite3.connect(log.path).execute("PRAGMA user_version").fetchone()
    assert version == VERSION


def test_recent_lists_the_latest_conversation_first_with_its_first_prompt(
    log: LogStore,
) -> None:
    for cid, prompt in [("old", "first of old"), ("new", "first of new"), ("old", "again")]:
        log.record(cid, ["demo/m0"], None, Exchange(1.0, prompt, (answer(0, "ok"),)))
    listed = log.recent(10)
    assert [(s.id, s.first_prompt, s.exchanges) for s in listed] == [
        ("old", "first of old", 2), ("new", "first of new", 1)]
    assert log.latest() == "old"
    assert [s.id for s in log.recent(1)] == ["old"]


def test_a_conversation_is_found_by_the_start_of_its_id(log: LogStore) -> None:
    for cid in ("abc123", "abd456", "abc"):
        log.record(cid, ["demo/m0"], None, Exchange(1.0, cid, (answer(0, "ok"),)))
    assert log.conversation("abd").id == "abd456"
    assert log.conversation("abc").id == "abc"  # an exact id wins over a longer one
    with pytest.raises(LogError, match="matches several"):
        log.conversation("ab")
    with pytest.raises(LogError, match="is not in the log"):
        log.conversation("zzz")
    with pytest.raises(LogError, match="is not in the log"):
        log.conversation("a%")  # LIKE's wildcards are taken as they are


def test_each_model_sees_only_its_own_answers(log: LogStore) -> None:
    log.record("c", ["demo/m0", "demo/m1"], "sys", Exchange(1.0, "q1", (
        answer(0, "zero's first"), answer(1, "", "error", reason="boom"))))
    log.record("c", ["demo/m0", "demo/m1"], "sys", Exchange(2.0, "q2", (
        answer(0, "zero's second", "stopped"), answer(1, "one's second"))))
    conversation = log.conversation("c")
    assert conversation.history(0) == [
        Message("system", "sys"),
        Message("user", "q1"), Message("assistant", "zero's first"),
        Message("user", "q2"), Message("assistant", "zero's second"),
    ]
    # The error left no text: that exchange is not part of model 1's history.
    assert conversation.history(1) == [
        Message("system", "sys"),
        Message("user", "q2"), Message("assistant", "one's second"),
    ]


def test_a_log_from_a_newer_chorus_is_refused(log: LogStore) -> None:
    log.record("c", ["demo/m0"], None, Exchange(1.0, "q", (answer(0, "a"),)))
    db = sqlite3.connect(log.path)
    db.execute(f"PRAGMA user_version = {VERSION + 1}")
    db.commit()
    db.close()
    with pytest.raises(LogError, match="newer Chorus"):
        log.recent(1)


def test_an_unwritable_place_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(LogError, match="the log"):
        LogStore(blocker / "logs.db").record(
            "c", ["demo/m0"], None, Exchange(1.0, "q", (answer(0, "a"),)))


def test_a_board_becomes_an_exchange() -> None:
    board = Board()
    board.apply("stream.start", {"slots": [{"slot": 0, "model": "demo/a"},
                                           {"slot": 1, "model": "demo/b"}]}, 10.0)
    board.apply("delta", {"slot": 0, "text": "hel"}, 10.1)
    board.apply("delta", {"slot": 0, "text": "lo"}, 10.2)
    board.apply("model.done", {"slot": 0, "finish_reason": "length",
                               "usage": {"input_tokens": 4, "output_tokens": 2},
                               "timing": {"ttft_ms": 100.0, "duration_ms": 200.0,
                                          "tokens_per_s": 10.0}}, 10.3)
    board.apply("delta", {"slot": 1, "text": "cut"}, 10.3)
    board.apply("model.stopped", {"slot": 1, "reason": "user"}, 10.4)
    board.apply("stream.done", {}, 10.5)
    exchange = exchange_of(board, 1234.0, "prompt")
    assert exchange.prompt == "prompt"
    assert exchange.at == 1234.0
    assert exchange.duration_ms == pytest.approx(500.0)
    assert exchange.answers == (
        Answer(0, "demo/a", "hello", "done", "length", 4, 2, 100.0, 200.0, 10.0),
        Answer(1, "demo/b", "cut", "stopped", "user"),
    )


def test_ids_sort_by_time_and_never_clash() -> None:
    ids = [new_id() for _ in range(200)]
    assert len(set(ids)) == 200
    times = [i[:11] for i in ids]  # milliseconds, in hex of a fixed width
    assert times == sorted(times)
