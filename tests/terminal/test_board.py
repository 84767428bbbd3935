"""The board: Chorus's events in, per-model state and numbers out (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from app.terminal.board import Board

START = ("stream.start", {"stream_id": "s1", "slots": [
    {"slot": 0, "model": "demo/fast", "label": "demo/fast"},
    {"slot": 1, "model": "demo/fast", "label": "demo/fast #2"}]})
USAGE = {"input_tokens": 5, "output_tokens": 3, "estimated": False}


def board_of(*events: tuple[float, str, dict[str, Any]]) -> Board:
    board = Board()
    board.apply(*START, 0.0)
    for at, kind, data in events:
        board.apply(kind, data, at)
    return board


def test_the_start_event_makes_one_column_per_slot() -> None:
    board = board_of()
    assert [(c.slot, c.label, c.state) for c in board.columns] == [
        (0, "demo/fast", "queued"), (1, "demo/fast #2", "queued")]
    assert board.stream_id == "s1"
    assert not board.ended


def test_states_follow_the_events_and_numbers_are_measured_until_the_end() -> None:
    board = board_of((0.1, "model.start", {"slot": 0}),
                     (0.5, "reasoning", {"slot": 0, "text": "hmm"}),
                     (0.7, "delta", {"slot": 0, "text": "12345678"}))
    col = board.columns[0]
    assert col.state == "streaming"
    assert col.answer == "12345678"
    assert col.thought == "hmm"
    assert col.ttft() == pytest.approx(0.4)
    assert col.token_count() == (3, True)  # 11 characters, about 4 a token
    assert col.rate(1.5) == pytest.approx(3 / 1.0)
    board.apply("model.done", {"slot": 0, "finish_reason": "stop", "usage": USAGE,
                               "timing": {"ttft_ms": 380.0, "tokens_per_s": 9.5}}, 2.0)
    assert col.state == "done"
    assert col.ttft() == pytest.approx(0.38)
    assert col.token_count() == (3, False)
    assert col.rate(5.0) == 9.5


def test_retries_errors_and_stops() -> None:
    board = board_of(
        (0.1, "model.start", {"slot": 0}),
        (0.2, "model.retry", {"slot": 0, "attempt": 1, "reason": "rate_limit",
                              "model": "demo/slow"}))
    assert (board.columns[0].state, board.columns[0].retries) == ("retrying", 1)
    assert board.columns[0].model == "demo/slow"
    board.apply("model.error", {"slot": 0, "error": {"type": "rate_limit", "message": "429"},
                                "usage": USAGE}, 0.3)
    board.apply("model.stopped", {"slot": 1, "reason": "user", "usage": USAGE}, 0.4)
    assert board.columns[0].error == "rate_limit: 429"
    assert (board.columns[1].state, board.columns[1].stop_reason) == ("stopped", "user")
    board.apply("stream.done", {"counts": {}}, 0.5)
    assert board.counts() == {"done": 0, "error": 1, "stopped": 1}


def test_control_characters_never_reach_the_terminal() -> None:
    board = board_of((0.1, "delta", {"slot": 0, "text": "a\x1b[2Jb\r\nc\td\x07"}))
    assert board.columns[0].answer == "a[2Jb\nc\td"


def test_the_halves_of_a_character_in_two_events_show_as_one() -> None:
    board = board_of((0.1, "delta", {"slot": 0, "text": "a \ud83d"}),
                     (0.2, "delta", {"slot": 0, "text": "\ude00 b"}),
                     (0.3, "reasoning", {"slot": 1, "text": "\ud83d"}))
    assert board.columns[0].answer == "a \U0001f600 b"
    assert board.columns[1].thought == "\ufffd"  # half a character alone


def test_events_for_unknown_slots_are_ignored() -> None:
    board = board_of((0.1, "delta", {"slot": 7, "text": "x"}), (0.1, "delta", {"text": "x"}))
    assert [c.answer for c in board.columns] == ["", ""]


@pytest.mark.parametrize(("ends", "interrupted", "code"), [
    (["model.done", "model.done"], False, 0),
    (["model.done", "model.error"], False, 1),
    (["model.stopped", "model.stopped"], True, 130),
    ([], False, 1),  # no stream.done: the stream broke off
])
def test_exit_codes(ends: list[str], interrupted: bool, code: int) -> None:
    board = board_of(*[(1.0, kind, {"slot": i, "usage": USAGE}) for i, kind in enumerate(ends)])
    if ends:
        board.apply("stream.done", {}, 1.0)
    assert board.exit_code(interrupted=interrupted) == code
