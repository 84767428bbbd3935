"""A sans-IO splitter for one JSON array streamed bit by bit: bytes in, element bytes out.

Gemini's ``streamGenerateContent`` without ``alt=sse`` sends ``[``, then pretty-printed
objects separated by ``,`` (``\\n,\\r\\n`` on the wire), then ``]``. Newlines occur inside
elements, so lines can't split it; we track just enough JSON syntax (string, escape, depth)
to see where each top-level element ends, and leave the real parsing to ``json``.
"""

from __future__ import annotations

import re

from .errors import ProtocolError

MAX_ELEMENT_BYTES = 8 * 1024 * 1024  # bounds memory against an element that never ends

_WHITESPACE = b" \t\r\n"  # JSON's insignificant whitespace, RFC 8259 §2
_STRING_STOP = re.compile(rb'["\\]')
_OPEN, _CLOSE, _QUOTE = b"{[", b"}]", ord('"')


class JSONArrayDecoder:
    """Feed it any split of the body; it returns each complete element's bytes.

    Works on bytes: every byte the scan looks at is ASCII, and no byte of a multibyte UTF-8
    character is, so a character split across reads needs no care. Elements must be objects.
    A body that is one bare object (an error answer) is taken as a one-element array.

    Bytes that break that shape, or an element over ``MAX_ELEMENT_BYTES``, are a
    ``ProtocolError``: the elements completed before it in the same read are returned
    first, and the error is raised by the next call.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._scan = 0  # where scanning resumes in _buf
        self._start = 0  # where the current element begins in _buf
        self._depth = 0  # nesting depth inside the current element; 0 between elements
        self._in_string = False
        self._state = "start"  # "start" → "items" (after "[") → "end" (after "]")
        self._error: ProtocolError | None = None

    def feed(self, data: bytes) -> list[bytes]:
        if self._error is not None:
            raise self._error
        elements: list[bytes] = []
        try:
            self._scan_on(data, elements)
        except ProtocolError as exc:
            self._error = exc
            if not elements:
                raise
        return elements

    def flush(self) -> bool:
        """End of body: whether the array was whole (closed by ``]``)."""
        if self._error is not None:
            raise self._error
        return self._state == "end"

    def _scan_on(self, data: bytes, elements: list[bytes]) -> None:
        buf = self._buf
        buf += data
        i, n = self._scan, len(buf)
        while i < n:
            if self._in_string:
                stop = _STRING_STOP.search(buf, i)
                if stop is None:
                    i = n
                elif buf[stop.start()] == _QUOTE:
                    self._in_string, i = False, stop.start() + 1
                elif stop.start() + 1 < n:
                    i = stop.start() + 2  # a backslash and the byte it escapes
                else:
                    i = stop.start()  # the escaped byte is in the next read
                    break
            elif self._depth:
                i = self._inside(buf, i, elements)
            else:
                i = self._between(buf[i], i)
        # Drop what is done with: everything before the current element's first byte.
        # (Strings only occur inside elements, so depth 0 means nothing is pending.)
        keep = self._start if self._depth else i
        del buf[:keep]
        self._start -= keep
        self._scan = i - keep
        if self._depth:
            _check_size(len(buf))

    def _inside(self, buf: bytearray, i: int, elements: list[bytes]) -> int:
        byte = buf[i]
        if byte == _QUOTE:
            self._in_string = True
        elif byte in _OPEN:
            self._depth += 1
        elif byte in _CLOSE:
            self._depth -= 1
            if not self._depth:
                _check_size(i + 1 - self._start)  # the same test as for a partial element
                elements.append(bytes(buf[self._start : i + 1]))
                if self._state == "start":
                    self._state = "end"  # a bare object: the whole body
        return i + 1

    def _between(self, byte: int, i: int) -> int:
        if byte in _WHITESPACE:
            return i + 1
        if self._state == "end":
            raise ProtocolError("the upstream sent data after the end of the JSON array")
        if self._state == "start" and byte == ord("["):
            self._state = "items"
        elif self._state == "items" and byte == ord(","):
            pass
        elif self._state == "items" and byte == ord("]"):
            self._state = "end"
        elif byte == ord("{"):
            self._start, self._depth = i, 1
        else:
            raise ProtocolError("the upstream sent a body that is not a JSON array of objects")
        return i + 1


def _check_size(size: int) -> None:
    if size > MAX_ELEMENT_BYTES:
        raise ProtocolError("the upstream sent an element too large to buffer")
