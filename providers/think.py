"""Splits inline ``<think>…</think>`` reasoning out of answer text, across chunk borders.

Some servers (DeepSeek-R1 on Together, Groq, vLLM without a reasoning parser) put the
model's thinking into ``content`` between tags. A tag may arrive split over two chunks
(``<thi`` + ``nk>``), so a possible tag prefix at the end of a chunk is held back until the
next one decides it.
"""

from __future__ import annotations

from .events import ReasoningDelta, TextDelta

OPEN = "<think>"
CLOSE = "</think>"


class ThinkSplitter:
    def __init__(self) -> None:
        self._inside = False
        self._held = ""

    def feed(self, text: str) -> list[TextDelta | ReasoningDelta]:
        out: list[TextDelta | ReasoningDelta] = []
        buf = self._held + text
        self._held = ""
        while buf:
            tag = CLOSE if self._inside else OPEN
            at = buf.find(tag)
            if at >= 0:
                self._emit(buf[:at], out)
                buf = buf[at + len(tag) :]
                self._inside = not self._inside
                continue
            keep = _partial_suffix(buf, tag)
            self._emit(buf[: len(buf) - keep], out)
            self._held = buf[len(buf) - keep :]
            break
        return out

    def flush(self) -> list[TextDelta | ReasoningDelta]:
        out: list[TextDelta | ReasoningDelta] = []
        self._emit(self._held, out)
        self._held = ""
        return out

    def _emit(self, text: str, out: list[TextDelta | ReasoningDelta]) -> None:
        if not text:
            return
        if self._inside:
            out.append(ReasoningDelta(text))
        else:
            out.append(TextDelta(text))


def _partial_suffix(text: str, tag: str) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of ``tag``."""
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:n]):
            return n
    return 0
