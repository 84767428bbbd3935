"""Splits inline ``<think>…</think>`` reasoning out of answer text, across chunk borders.

Some servers (DeepSeek-R1 on Together, Groq, vLLM without a reasoning parser, Ollama before
its ``think`` option) put the model's thinking into the answer between tags. The rules:

* Only a ``<think>`` that opens the answer (after optional whitespace) starts reasoning.
  Once answer text has begun, tags are plain text: an answer may well talk about them.
* The first ``</think>`` ends the reasoning for good; everything after it is answer.
* Whitespace right after either tag is dropped (models put ``\\n`` or ``\\n\\n`` there).
* A tag may arrive split over chunks (``<thi`` + ``nk>``), so text that could still become a
  tag is held back until the next chunk decides it; ``flush`` releases whatever is held.
"""

from __future__ import annotations

from .events import ProviderEvent, ReasoningDelta, TextDelta

OPEN = "<think>"
CLOSE = "</think>"


class ThinkSplitter:
    def __init__(self) -> None:
        self._state = "start"  # "start" (no answer text yet) → "think" → "answer"
        self._held = ""
        self._trim = False  # drop the whitespace that follows a tag

    def feed(self, text: str) -> list[ProviderEvent]:
        out: list[ProviderEvent] = []
        self.feed_into(text, out)
        return out

    def feed_into(self, text: str, out: list[ProviderEvent]) -> None:
        """``feed``, appending to ``out``: once the answer has begun, a chunk's text is
        the answer as it is, and that common case costs one check."""
        if self._state == "answer" and not self._trim:
            if text:
                out.append(TextDelta(text))
            return
        buf = self._held + text
        self._held = ""
        if self._state == "start":
            head = buf.lstrip()
            if head.startswith(OPEN):
                self._state, self._trim, buf = "think", True, head[len(OPEN) :]
            elif OPEN.startswith(head):  # only whitespace, or a prefix of the tag, so far
                self._held = buf
                return
            else:
                self._state = "answer"
        if self._state == "think":
            buf = self._trimmed(buf)
            at = buf.find(CLOSE)
            if at < 0:
                keep = _partial_suffix(buf, CLOSE)
                self._held = buf[len(buf) - keep :]
                _add(out, ReasoningDelta, buf[: len(buf) - keep])
                return
            _add(out, ReasoningDelta, buf[:at])
            self._state, self._trim, buf = "answer", True, buf[at + len(CLOSE) :]
        _add(out, TextDelta, self._trimmed(buf))

    def flush(self) -> list[ProviderEvent]:
        """End of text: a held tag prefix (or leading whitespace) was content after all."""
        out: list[ProviderEvent] = []
        _add(out, ReasoningDelta if self._state == "think" else TextDelta, self._held)
        self._held = ""
        return out

    def _trimmed(self, text: str) -> str:
        if self._trim:
            text = text.lstrip()
            self._trim = not text
        return text


def _add(out: list[ProviderEvent], kind: type[TextDelta] | type[ReasoningDelta], text: str) -> None:
    if text:
        out.append(kind(text))


def _partial_suffix(text: str, tag: str) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of ``tag``."""
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:n]):
            return n
    return 0
