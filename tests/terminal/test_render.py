"""Laying the board out in terminal cells (pure): side by side, in bands, live and final."""

from __future__ import annotations

import pytest

from app.terminal.board import Board
from app.terminal.render import cell_width, fit, render_final, render_live, wrap

ANSWER = "word " * 60


def board(n: int, *, text: str = ANSWER, ended: bool = True) -> Board:
    b = Board()
    b.apply("stream.start", {"slots": [{"slot": i, "model": f"demo/m{i}", "label": f"m{i}"}
                                       for i in range(n)]}, 0.0)
    for i in range(n):
        b.apply("model.start", {"slot": i}, 0.0)
        b.apply("delta", {"slot": i, "text": f"{i}:{text}"}, 0.5)
        if ended:
            b.apply("model.done", {"slot": i, "finish_reason": "stop", "usage": {
                "input_tokens": 1, "output_tokens": 60, "estimated": False},
                "timing": {"ttft_ms": 500.0, "tokens_per_s": 120.0}}, 1.0)
    if ended:
        b.apply("stream.done", {}, 1.0)
    return b


def test_wrap_keeps_newlines_and_splits_long_words() -> None:
    assert wrap("one two three\n\n  four", 7) == ["one two", "three", "", "  four"]
    assert wrap("abcdefghij", 4) == ["abcd", "efgh", "ij"]


def test_widths_count_terminal_cells() -> None:
    assert cell_width("日本") == 4
    assert cell_width("e\u0301") == 1
    assert fit("日本語です", 6) == "日本… "  # 語 would not fit beside the ellipsis
    assert cell_width(fit("日本語です", 6)) == 6
    assert wrap("日本語のテキスト", 6) == ["日本語", "のテキ", "スト"]


def test_final_output_puts_every_answer_side_by_side_in_full() -> None:
    lines = render_final(board(3), 98, 2.0)
    assert lines[0].split(" │ ") == ["m0".ljust(30), "m1".ljust(30), "m2"]
    assert lines[1].split(" │ ")[0] == "✓ done · ttft 0.50s · 60 tok  "
    assert lines[2].split(" │ ")[0] == "120 tok/s".ljust(30)
    assert set(lines[3]) == {"─", " ", "│"}
    body = "\n".join(lines)
    for i in range(3):
        column = [line.split(" │ ")[i] if " │ " in line else "" for line in lines[4:-1]]
        assert " ".join(" ".join(column).split()) == f"{i}:{ANSWER}".strip()
    assert lines[-1] == "done 3 · error 0 · stopped 0 · 1.0s"
    assert all(cell_width(line) <= 98 for line in lines)
    assert "\x1b" not in body


def test_the_live_screen_fits_its_size_and_shows_the_latest_lines() -> None:
    b = board(2, text=ANSWER + "LAST", ended=False)
    lines = render_live(b, 60, 12, 1.0)
    assert len(lines) == 11  # the last row stays empty, so nothing scrolls
    assert all(cell_width(line) <= 60 for line in lines)
    assert lines[0].startswith("chorus ask · 2 models · 1.0s")
    assert "▸ streaming" in lines[2]
    assert "LAST" in lines[-1]


def test_too_many_models_for_the_width_are_laid_out_in_bands() -> None:
    lines = render_final(board(5, text="short"), 80, 2.0)
    headers = [line for line in lines if line.startswith("m")]
    assert [h.split()[0] for h in headers] == ["m0", "m3"]
    assert all(cell_width(line) <= 80 for line in lines)


@pytest.mark.parametrize("live", [True, False])
def test_color_wraps_whole_padded_cells(live: bool) -> None:
    b = board(2)
    lines = (render_live(b, 80, 20, 2.0, color=True) if live
             else render_final(b, 80, 2.0, color=True))
    assert "\x1b[32m✓ done" in "\n".join(lines)


def test_reasoning_is_shown_while_thinking_and_on_request_at_the_end() -> None:
    b = board(1, ended=False)
    b.apply("stream.start", {"slots": [{"slot": 0, "model": "demo/t"}]}, 0.0)
    b.apply("reasoning", {"slot": 0, "text": "pondering"}, 0.1)
    assert "pondering" in "\n".join(render_live(b, 40, 10, 0.2))
    b.apply("delta", {"slot": 0, "text": "answer"}, 0.3)
    assert "pondering" not in "\n".join(render_live(b, 40, 10, 0.4))
    assert "thought for 9 characters" in "\n".join(render_final(b, 40, 0.5))
    assert "pondering" in "\n".join(render_final(b, 40, 0.5, reasoning=True))
