"""Inline ``<think>`` reasoning, split out of the answer text whatever the chunking."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from providers.events import ReasoningDelta, TextDelta
from providers.think import ThinkSplitter


def split(*chunks: str) -> tuple[str, str]:
    """(reasoning, answer) after feeding ``chunks`` and flushing."""
    splitter = ThinkSplitter()
    pieces = [p for chunk in chunks for p in splitter.feed(chunk)] + splitter.flush()
    reasoning = "".join(p.text for p in pieces if isinstance(p, ReasoningDelta))
    answer = "".join(p.text for p in pieces if isinstance(p, TextDelta))
    assert all(p.text for p in pieces), "no empty pieces"
    return reasoning, answer


def test_no_tags_is_all_answer() -> None:
    assert split("Hello", " world") == ("", "Hello world")


def test_tags_as_their_own_chunks_and_whitespace_after_them_dropped() -> None:
    assert split("<think>", "\n", "plan", "\n", "</think>", "\n\n", "Answer") == (
        "plan\n",
        "Answer",
    )


def test_whitespace_before_the_opening_tag() -> None:
    assert split("\n\n<think>x</think>y") == ("x", "y")


def test_leading_whitespace_of_a_plain_answer_is_kept() -> None:
    assert split("\n", "\n", "Hi") == ("", "\n\nHi")


@pytest.mark.parametrize("text", ["<think>plan</think>answer", " <think>\nplan</think>\n answer"])
def test_tags_split_at_every_position(text: str) -> None:
    for i in range(len(text) + 1):
        for j in range(i, len(text) + 1):
            assert split(text[:i], text[i:j], text[j:]) == ("plan", "answer"), (i, j)


def test_a_tag_inside_the_answer_is_text() -> None:
    assert split("Use <think> tags", " like </think> this") == (
        "",
        "Use <think> tags like </think> this",
    )


def test_only_the_first_block_is_reasoning() -> None:
    assert split("<think>a</think>b<think>c</think>") == ("a", "b<think>c</think>")


def test_an_unclosed_block_is_all_reasoning() -> None:
    assert split("<think>still thinking", "</thi") == ("still thinking</thi", "")


def test_a_tag_prefix_at_the_end_is_text_after_all() -> None:
    assert split("<thi") == ("", "<thi")
    assert split("<", "table>") == ("", "<table>")


def test_a_lone_angle_bracket_in_reasoning() -> None:
    assert split("<think>a < b", " so</think>ok") == ("a < b so", "ok")


def test_only_whitespace_after_the_close() -> None:
    assert split("<think>a</think>", "  \n") == ("a", "")


@given(st.lists(st.text(alphabet="<>/thinkab \n", max_size=12), max_size=8))
def test_any_chunking_gives_the_same_split(chunks: list[str]) -> None:
    whole = "".join(chunks)
    assert split(*chunks) == split(whole)
    reasoning, answer = split(whole)
    assert len(reasoning) + len(answer) <= len(whole)
