"""A sans-IO Server-Sent Events decoder: bytes in, ``SSEEvent``s out.

Follows the WHATWG rules for parsing an event stream
(https://html.spec.whatwg.org/multipage/server-sent-events.html#parsing-an-event-stream):
the stream is UTF-8 with one optional leading BOM; CR, LF and CRLF all end a line; ``:``
lines are comments; several ``data:`` lines join with ``\\n``; an empty line dispatches;
``id`` persists across events; at end of stream an event with no blank line after it is
dropped (``pending`` says whether that happened).
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

from .errors import ProtocolError

# No real event comes near this; it bounds memory against an upstream that never ends a
# line or never sends the blank line (Gemini image parts are base64, a few MiB at most).
MAX_EVENT_CHARS = 8 * 1024 * 1024

_LINE_END = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One dispatched event; ``id`` is the last event ID in effect when it was dispatched.

    ``stray`` marks a line the spec says to ignore (an unknown field name), handed out only
    by a decoder built with ``keep_stray=True``: its ``data`` is the whole line.
    """

    event: str
    data: str
    id: str | None = None
    stray: bool = False


class SSEDecoder:
    """Feed it any split of a stream; it returns the events completed so far.

    Bytes go through an incremental UTF-8 decoder, so a character split across two reads is
    joined before decoding; invalid bytes become U+FFFD, as the spec's "UTF-8 decode" does.
    A CR that ends one read ends its line at once (no waiting for the next read); we only
    remember it, so that an LF opening the next read is taken as the second half of a CRLF
    and not as an empty line, which would dispatch an event early.

    An event over ``MAX_EVENT_CHARS`` is a ``ProtocolError``. The events completed before it
    in the same read are returned first; the error is raised by the next call.
    """

    def __init__(self, *, keep_stray: bool = False) -> None:
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._keep_stray = keep_stray
        # The unfinished last line, in pieces (joining once per line keeps an endless line
        # linear in its length); never holds a line ending.
        self._pieces: list[str] = []
        self._pieces_len = 0
        self._after_cr = False
        self._started = False
        self._data: list[str] = []
        self._size = 0
        self._event = ""
        self.last_id: str | None = None
        self.retry: int | None = None  # reconnection time in ms, when the stream set one
        self.comments = 0
        self.pending = False
        self._error: ProtocolError | None = None

    def feed(self, data: bytes) -> list[SSEEvent]:
        return self._text(self._utf8.decode(data))

    def flush(self) -> list[SSEEvent]:
        """End of stream: returns what the last bytes completed, then drops the unfinished
        event, as the spec says; ``pending`` is true if it had any data.

        A last line with no line ending is still read as a field (it may be a stray line, or
        set the last event ID), but without the blank line after it nothing dispatches.
        """
        events = self._text(self._utf8.decode(b"", final=True))
        if self._pieces:
            self._take(self._unfinished(), events)
        self.pending = bool(self._data)
        self._data = []
        self._size = 0
        return events

    def _text(self, text: str) -> list[SSEEvent]:
        if self._error is not None:
            raise self._error
        if not text:
            return []
        if not self._started:
            self._started = True
            text = text.removeprefix("\ufeff")  # only the very first character may be a BOM
        if self._after_cr and text.startswith("\n"):
            text = text[1:]
        self._after_cr = text.endswith("\r")
        events: list[SSEEvent] = []
        # str.split is several times cheaper than walking the regex, and nearly every
        # upstream ends lines with LF alone; the regex is kept for text that holds a CR.
        lines = _LINE_END.split(text) if "\r" in text else text.split("\n")
        rest = lines.pop()
        try:
            for line in lines:
                if self._pieces:
                    self._pieces.append(line)
                    line = self._unfinished()
                self._check(len(line))
                self._take(line, events)
            if rest:
                self._pieces.append(rest)
                self._pieces_len += len(rest)
                self._check(self._pieces_len)
        except ProtocolError as exc:
            self._error = exc
            if not events:
                raise
        return events

    def _unfinished(self) -> str:
        line = "".join(self._pieces)
        self._pieces = []
        self._pieces_len = 0
        return line

    def _check(self, length: int) -> None:
        # The same test for a whole line and for the start of one, so any split of the
        # stream fails at the same line.
        if length + self._size > MAX_EVENT_CHARS:
            raise ProtocolError("the upstream sent an event too large to buffer")

    def _take(self, line: str, events: list[SSEEvent]) -> None:
        if line.startswith("data: "):  # by far the most common line: the general case below
            value = line[6:]
            self._data.append(value)
            self._size += len(value) + 1
            return
        if not line:
            self._dispatch(events)
            return
        if line.startswith(":"):
            self.comments += 1
            return
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
            self._size += len(value) + 1
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self.last_id = value
        elif name == "retry":
            if value.isascii() and value.isdigit():
                self.retry = int(value)
        elif self._keep_stray:
            events.append(SSEEvent("", line, self.last_id, stray=True))

    def _dispatch(self, events: list[SSEEvent]) -> None:
        # An empty data buffer dispatches nothing but still resets the event type (rule 3).
        if self._data:
            events.append(SSEEvent(self._event or "message", "\n".join(self._data), self.last_id))
        self._data = []
        self._size = 0
        self._event = ""
