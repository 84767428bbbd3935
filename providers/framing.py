"""HTTP/1.1 response-body framing, sans I/O: what of the bytes read is the body, and where
it ends.

The transport (``providers/transport.py``) reads the answer's head (``head.py``), then
decodes the body here. h11, which Chorus used before, turns every chunk of a chunked body
into an event, walks its state machine and validates the chunk header with a regular
expression: for a streamed answer of one token per chunk, that was more of the upstream
read's cost than the SSE and JSON parsing of the token itself (``bench/findings.md``).
Here one read's bytes become at most one ``bytes`` of payload, however many chunks they
hold, and a chunk's payload is handed on as it arrives, before the chunk is complete (a
slow upstream's token must not wait for the next).

Three framings, as RFC 9112 section 6.3 orders them (the head was read by ``head.py``):
no body (HEAD, 1xx, 204, 304), ``Transfer-Encoding: chunked``, ``Content-Length: n``;
anything else is read until the peer closes the connection.
"""

from __future__ import annotations

MAX_LINE = 8 * 1024  # bytes of a chunk-size or trailer line, CRLF included
MAX_TRAILERS = 64 * 1024  # bytes of trailer section
_HEX = frozenset(b"0123456789abcdefABCDEF")


class FramingError(Exception):
    """The body is not framed as its head said (a broken or hostile peer)."""


class BodyFraming:
    """Feed it what the socket gives; it returns the payload bytes those held.

    ``done``: the body is complete. ``leftover``: bytes that came after it (a well-behaved
    peer sends none before the next request). ``until_close``: the body ends when the peer
    closes, so the connection cannot be reused.
    """

    __slots__ = ("_buf", "_remaining", "_state", "done", "leftover", "until_close")

    # _state: "size" (reading a chunk-size line), "data" (_remaining payload bytes of a
    # chunk), "crlf" (the CRLF after a chunk's payload), "trailers", "length" (_remaining
    # bytes of a Content-Length body), "close" (until the peer closes).

    def __init__(self, *, chunked: bool = False, length: int | None = None) -> None:
        self._buf = b""
        self._remaining = 0
        self.done = False
        self.leftover = b""
        self.until_close = False
        if chunked:
            self._state = "size"
        elif length is not None:
            if length < 0:
                raise FramingError(f"negative Content-Length {length}")
            self._state = "length"
            self._remaining = length
            self.done = length == 0
        else:
            self._state = "close"
            self.until_close = True

    @classmethod
    def for_response(cls, method: bytes, status: int,
                     headers: list[tuple[bytes, bytes]]) -> BodyFraming:
        """The framing of a response to ``method`` with ``status`` and (lower-cased)
        ``headers``. The codings of every ``Transfer-Encoding`` header count (chunked only
        when it is the last); ``Content-Length`` must be digits, and several of them (or
        a list) must agree, or the answer could be read two ways."""
        if method == b"HEAD" or status < 200 or status in (204, 304):
            return cls(length=0)
        codings: list[bytes] = []
        lengths: set[bytes] = set()
        for name, value in headers:
            if name == b"transfer-encoding":
                codings += [c.strip().lower() for c in value.split(b",")]
            elif name == b"content-length":
                lengths.update(v.strip() for v in value.split(b","))
        if codings:
            # Another coding last: the body runs until the peer closes.
            return cls(chunked=True) if codings[-1] == b"chunked" else cls()
        if not lengths:
            return cls()
        if len(lengths) > 1 or not next(iter(lengths)).isdigit():
            shown = b", ".join(sorted(lengths))
            raise FramingError(f"bad Content-Length {shown!r}")
        return cls(length=int(next(iter(lengths))))

    def feed(self, data: bytes) -> bytes:
        """The payload in ``data`` (and what was held back from earlier feeds); ``b""`` when
        it held none. An empty ``data`` means the peer closed the connection."""
        if self.done:
            self.leftover += data
            return b""
        state = self._state
        if not data:
            if state == "close":
                self.done = True
                return b""
            raise FramingError("the server closed the connection mid-answer")
        if state == "close":
            return data
        if state == "length":
            n = self._remaining
            if len(data) < n:
                self._remaining = n - len(data)
                return data
            self._remaining = 0
            self.done = True
            self.leftover = data[n:]
            return data[:n] if len(data) > n else data
        return self._chunked(self._buf + data if self._buf else data)

    def _chunked(self, buf: bytes) -> bytes:
        out: list[bytes] = []
        pos = 0
        end = len(buf)
        state = self._state
        while pos < end:
            if state == "data":
                n = self._remaining
                if end - pos <= n:
                    out.append(buf[pos:] if pos else buf)
                    self._remaining = n - (end - pos)
                    pos = end
                    if self._remaining == 0:
                        state = "crlf"
                    break
                out.append(buf[pos:pos + n])
                pos += n
                self._remaining = 0
                state = "crlf"
            elif state == "crlf":
                if end - pos < 2:
                    break
                if buf[pos:pos + 2] != b"\r\n":
                    raise FramingError("a chunk is longer than its size says")
                pos += 2
                state = "size"
            elif state == "size":
                eol = buf.find(b"\r\n", pos, pos + MAX_LINE)
                if eol < 0:
                    if end - pos >= MAX_LINE:
                        raise FramingError("chunk-size line too long")
                    break
                self._remaining = _chunk_size(buf[pos:eol])
                pos = eol + 2
                state = "data" if self._remaining else "trailers"
            else:  # trailers: lines up to an empty one, ignored
                eol = buf.find(b"\r\n", pos)
                if eol < 0:
                    if end - pos >= MAX_TRAILERS:
                        raise FramingError("trailer section too long")
                    break
                blank = eol == pos
                pos = eol + 2
                if blank:
                    self.done = True
                    self.leftover = buf[pos:]
                    pos = end
                    break
        self._state = state
        self._buf = buf[pos:] if pos < end else b""
        if not out:
            return b""
        return out[0] if len(out) == 1 else b"".join(out)


def _chunk_size(line: bytes) -> int:
    size = line.split(b";", 1)[0].strip(b" \t")
    if not size or len(size) > 16 or not _HEX.issuperset(size):
        raise FramingError(f"bad chunk-size line {line[:40]!r}")
    return int(size, 16)
