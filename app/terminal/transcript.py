"""Finished answers printed one under the other: a chat turn's, or a logged conversation's.

Each answer gets a rule with its model and how it ended, then its text rendered as Markdown
by ``rich`` (headings, lists, code blocks, emphasis), or the text as it came (``raw``).
``rich`` leaves colours out off a terminal and when ``NO_COLOR`` is set.
https://rich.readthedocs.io/en/stable/markdown.html
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import TextIO

from rich.console import Console
from rich.markdown import Markdown
from rich.text import Text

from .board import clean, labels
from .logstore import Answer, Conversation

_MARKS = {"done": "✓", "error": "✗", "stopped": "■", "unfinished": "…"}
_STYLES = {"done": "green", "error": "red", "stopped": "yellow", "unfinished": "dim"}


def console(out: TextIO, *, color: bool) -> Console:
    return Console(file=out, no_color=not color, highlight=False, soft_wrap=False,
                   emoji=False)


def headline(answer: Answer) -> str:
    """``✓ done (stop) · ttft 0.15s · 140 tok · 52 tok/s``, as much as is known."""
    parts = [f"{_MARKS.get(answer.outcome, '?')} {answer.outcome}"
             + (f" ({answer.reason})" if answer.reason and answer.outcome != "error" else "")]
    if answer.ttft_ms is not None:
        parts.append(f"ttft {answer.ttft_ms / 1000:.2f}s")
    if answer.output_tokens is not None:
        parts.append(f"{answer.output_tokens} tok")
    if answer.tokens_per_s is not None:
        parts.append(f"{answer.tokens_per_s:.0f} tok/s")
    return " · ".join(parts)


def print_answers(con: Console, answers: Sequence[Answer], models: Sequence[str], *,
                  raw: bool) -> None:
    names = labels(models)
    for answer in answers:
        name = names[answer.slot] if answer.slot < len(names) else answer.model
        title = Text.assemble((name, "bold"), "  ",
                              (headline(answer), _STYLES.get(answer.outcome, "")))
        con.rule(title, align="left", style="dim")
        text = clean(answer.text)
        if raw and text:
            con.out(text, highlight=False)
        elif not raw and text.strip():
            con.print(Markdown(text))
        if answer.outcome == "error" and answer.reason:
            con.print(Text(clean(answer.reason), style="red"))
    con.print()


def when(unix: float) -> str:
    return datetime.datetime.fromtimestamp(unix).strftime("%Y-%m-%d %H:%M:%S")


def print_conversation(con: Console, conversation: Conversation, *, raw: bool) -> None:
    """The whole conversation, as ``chorus logs show`` prints it."""
    con.print(Text.assemble(("conversation ", "dim"), (conversation.id, "bold"),
                            (f"  {when(conversation.created)}  ", "dim"),
                            ", ".join(conversation.models)))
    if conversation.system:
        con.print(Text.assemble(("system: ", "dim"), clean(conversation.system)))
    for exchange in conversation.exchanges:
        con.print()
        con.print(Text.assemble(("> ", "bold cyan"), clean(exchange.prompt)))
        con.print(Text(when(exchange.at), style="dim"))
        print_answers(con, exchange.answers, conversation.models, raw=raw)
