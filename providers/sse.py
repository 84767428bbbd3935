"""A sans-IO Server-Sent Events decoder: bytes in, ``SSEEvent``s out.

Follows the WHATWG rules for parsing an event stream
(https://html.spec.whatwg.org/multipage/server-sent-events.html#parsing-an-event-stream):
CR, LF and CRLF all end a line; a leading BOM is skipped; ``:`` lines are comments; several
``data:`` lines join with ``\\n``; an empty line dispatches; ``id`` persists across events.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SSEEvent:
    event: str
    data: str
    id: str | None = None
    retry: int | None = None


class SSEDecoder:
    """Feed it any split of a stream; it returns the events completed so far.

    Bytes are decoded with an incremental UTF-8 decoder, so a character split across two
    network reads is joined before decoding. A CR at the very end of one ``feed`` is held
    back, because the LF that makes it a CRLF may open the next read.
    """

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buffer = ""
        self._started = False
        self._data: list[str] = []
        self._event = ""
        self._last_id: str | None = None
        self._retry: int | None = None
        self.comments = 0
        self.pending = False

    def feed(self, data: bytes) -> list[SSEEvent]:
        text = self._decoder.decode(data)
        return self._take(text, final=False)

    def flush(self) -> list[SSEEvent]:
        """End of stream. By the spec, an event with no terminating blank line is dropped;
        ``pending`` tells the caller whether that happened."""
        events = self._take(self._decoder.decode(b"", final=True), final=True)
        self.pending = bool(self._data) or bool(self._buffer)
        self._data = []
        self._buffer = ""
        return events

    def _take(self, text: str, *, final: bool) -> list[SSEEvent]:
        if not self._started and text:
            self._started = True
            if text.startswith("\ufeff"):
                text = text[1:]
        buf = self._buffer + text
        events: list[SSEEvent] = []
        start = 0
        n = len(buf)
        while start < n:
            cr = buf.find("\r", start)
            lf = buf.find("\n", start)
            if cr == -1 and lf == -1:
                break
            if cr == -1 or (lf != -1 and lf < cr):
                end, nxt = lf, lf + 1
            else:
                if cr + 1 == n and not final:
                    break  # maybe the first half of a CRLF
                end = cr
                nxt = cr + 2 if cr + 1 < n and buf[cr + 1] == "\n" else cr + 1
            self._line(buf[start:end], events)
            start = nxt
        self._buffer = buf[start:]
        if final and self._buffer:
            self._line(self._buffer, events)
            self._buffer = ""
        return events

    def _line(self, line: str, events: list[SSEEvent]) -> None:
        if not line:
            if self._data:
                events.append(
                    SSEEvent(self._event or "message", "\n".join(self._data), self._last_id,
                             self._retry)
                )
            self._data = []
            self._event = ""
            return
        if line[0] == ":":
            self.comments += 1
            return
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self._last_id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self._retry = int(value)
