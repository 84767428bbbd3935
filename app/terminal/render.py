"""The board laid out as terminal lines, one column per model (pure: strings in, strings out).

``render_live`` fills a screen of a given size, showing the latest lines of each answer;
``render_final`` prints everything that arrived. Widths count terminal cells, so wide
characters (CJK, most emoji) keep the columns straight. Too many models for the width are
laid out in bands of columns, one under the other.
"""

from __future__ import annotations

import unicodedata

from .board import ENDED, Board, Column

Line = tuple[str, str]  # (text, style); the style is a key of _SGR or ""

SEP = " │ "
MIN_COLUMN = 18
_SGR = {"bold": "1", "dim": "2", "red": "31", "green": "32", "yellow": "33", "cyan": "36"}
_GLYPHS = {"queued": "·", "waiting": "…", "thinking": "~", "streaming": "▸",
           "retrying": "↻", "done": "✓", "error": "✗", "stopped": "■"}
_STATE_STYLE = {"done": "green", "error": "red", "stopped": "yellow", "streaming": "cyan",
                "retrying": "yellow"}


def char_width(ch: str) -> int:
    if unicodedata.combining(ch) or ch in "\u200b\u200d\ufe0f":
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def cell_width(text: str) -> int:
    return sum(char_width(ch) for ch in text)


def fit(text: str, width: int) -> str:
    """``text`` cut (with an ellipsis) or padded to exactly ``width`` cells."""
    if cell_width(text) > width:
        head = _take(text, width - 1)
        return head + "…" + " " * (width - cell_width(head) - 1)
    return text + " " * (width - cell_width(text))


def wrap(text: str, width: int) -> list[str]:
    """Greedy word wrap by cells; newlines kept, a word longer than a line split."""
    lines: list[str] = []
    for paragraph in text.expandtabs(4).split("\n"):
        line = ""
        for word in _words(paragraph):
            if line.strip() and cell_width(line + word.rstrip()) > width:
                lines.append(line.rstrip())
                line = ""
            while cell_width(word.rstrip()) > width:
                head = _take(word, width) or word[0]  # a wide character in a 1-cell column
                lines.append(head)
                word = word[len(head):]
            line += word
        lines.append(line.rstrip())
    return lines


def _take(text: str, width: int) -> str:
    """The longest start of ``text`` that fits in ``width`` cells."""
    used = 0
    for i, ch in enumerate(text):
        used += char_width(ch)
        if used > width:
            return text[:i]
    return text


def _words(paragraph: str) -> list[str]:
    """Words with the spaces after them; leading indentation stays with the first word."""
    out: list[str] = []
    word = ""
    for ch in paragraph:
        if ch != " " and word.endswith(" ") and word.strip():
            out.append(word)
            word = ""
        word += ch
    if word:
        out.append(word)
    return out


def status(column: Column, now: float) -> list[str]:
    """The state and the numbers, as few parts as fit: ``✓ done · ttft 0.15s · 140 tok``."""
    state = f"{_GLYPHS.get(column.state, '?')} {column.state}"
    if column.state == "retrying":
        state += f" ({column.retries})"
    if column.state == "stopped" and column.stop_reason:
        state += f" ({column.stop_reason})"
    parts = [state]
    ttft = column.ttft()
    if ttft is not None:
        parts.append(f"ttft {ttft:.2f}s")
    if column.first_at is not None:
        tokens, estimated = column.token_count()
        parts.append(f"{'~' if estimated else ''}{tokens} tok")
    rate = column.rate(now)
    if rate is not None:
        parts.append(f"{rate:.0f} tok/s")
    return parts


def _head(column: Column, width: int, now: float) -> list[Line]:
    """The label, then the status on as many lines as the width needs."""
    style = _STATE_STYLE.get(column.state, "dim")
    lines: list[Line] = [(column.label, "bold")]
    line = ""
    for part in status(column, now):
        if line and cell_width(line + " · " + part) > width:
            lines.append((line, style))
            line = part
        else:
            line = f"{line} · {part}" if line else part
    lines.append((line, style))
    return lines


def _cells(band: list[Column], bodies: list[list[Line]], width: int, now: float
           ) -> list[list[Line]]:
    """Each column's head and body, the heads padded to one height so the rules align."""
    heads = [_head(column, width, now) for column in band]
    height = max(len(h) for h in heads)
    return [head + [("", "")] * (height - len(head)) + [("─" * width, "dim")] + body
            for head, body in zip(heads, bodies, strict=True)]


def _body(column: Column, width: int, *, live: bool, reasoning: bool) -> list[Line]:
    lines: list[Line] = []
    thought = column.thought
    if thought and (reasoning or (live and not column.text)):
        lines += [(line, "dim") for line in wrap(thought, width)]
        if column.text:
            lines.append(("", ""))
    elif thought and not live:
        note = f"(thought for {len(thought)} characters; --reasoning shows it)"
        lines += [(line, "dim") for line in wrap(note, width)]
    if column.text:
        lines += [(line, "") for line in wrap(column.answer, width)]
    if column.error:
        lines += [(line, "red") for line in wrap(column.error, width)]
    return lines


def _bands(board: Board, width: int) -> tuple[list[list[Column]], int]:
    """Columns grouped into bands that fit ``width``; and the width of one column."""
    n = max(len(board.columns), 1)
    per_band = max(1, min(n, (width + len(SEP)) // (MIN_COLUMN + len(SEP))))
    column_width = max(1, (width - len(SEP) * (per_band - 1)) // per_band)
    columns = board.columns
    return [columns[i:i + per_band] for i in range(0, len(columns), per_band)], column_width


def _paint(line: Line, width: int, color: bool) -> str:
    text, style = line
    text = fit(text, width)
    if color and style:
        return f"\x1b[{_SGR[style]}m{text}\x1b[0m"
    return text


def _side_by_side(cells: list[list[Line]], width: int, color: bool) -> list[str]:
    rows = max((len(c) for c in cells), default=0)
    sep = f"\x1b[2m{SEP}\x1b[0m" if color else SEP
    out = []
    for r in range(rows):
        parts = [_paint(c[r] if r < len(c) else ("", ""), width, color) for c in cells]
        out.append(sep.join(parts).rstrip())
    return out


def summary(board: Board, now: float) -> str:
    elapsed = 0.0
    if board.started_at is not None:
        elapsed = (board.ended_at if board.ended_at is not None else now) - board.started_at
    if not board.ended:
        return f"chorus ask · {len(board.columns)} models · {elapsed:.1f}s · Ctrl-C stops them"
    counts = board.counts()
    return (f"done {counts['done']} · error {counts['error']} · stopped {counts['stopped']}"
            f" · {elapsed:.1f}s")


def render_live(board: Board, width: int, height: int, now: float, *,
                color: bool = False) -> list[str]:
    """At most ``height - 1`` lines (the last row stays empty, so the screen never scrolls)."""
    if not board.columns:
        return ["chorus ask · connecting…"]
    bands, column_width = _bands(board, width)
    rows_per_band = max(1, (height - 2) // len(bands))
    lines = [summary(board, now)]
    for band in bands:
        bodies = [_body(c, column_width, live=True, reasoning=False) for c in band]
        cells = _cells(band, bodies, column_width, now)
        head = len(cells[0]) - len(bodies[0])
        tail = max(1, rows_per_band - head)
        cells = [cell[:head] + body[-tail:] for cell, body in zip(cells, bodies, strict=True)]
        lines += _side_by_side(cells, column_width, color)
    return lines[: max(1, height - 1)]


def render_final(board: Board, width: int, now: float, *, color: bool = False,
                 reasoning: bool = False) -> list[str]:
    """Everything that arrived, every line of it, then the summary."""
    bands, column_width = _bands(board, width)
    lines: list[str] = []
    for band in bands:
        if lines:
            lines.append("")
        bodies = [_body(c, column_width, live=False, reasoning=reasoning) for c in band]
        lines += _side_by_side(_cells(band, bodies, column_width, now), column_width, color)
    unfinished = [c.label for c in board.columns if c.state not in ENDED]
    if unfinished:
        lines.append(f"(no end seen for {', '.join(unfinished)})")
    lines.append(summary(board, now) if board.ended else "the stream did not end")
    return lines
