"""HTTP/1.1 message heads for the upstream client, sans I/O: the request's, written, and the
answer's, read.

The transport (``providers/transport.py``) used h11 for these, and through httpx's
``Request``: building one upstream request and reading its answer's head cost about
160 µs of CPU here (httpx's URL and header normalisation, h11's validation and state
machine), more than a stream's whole engine setup, paid on every model of every stream
before its request could leave (``bench/findings.md``). A request Chorus sends is always
one head and one body of known length, and an answer's head is a status line and header
lines: this module does just that, checks what a peer could get wrong, and leaves the
body to ``framing.py``.

Request headers come from configuration and wire protocols; a name or value that could
split the head (CR, LF, NUL, or a name that is not a token) is refused rather than sent.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

MAX_HEAD = 64 * 1024  # bytes of an answer's head (every informational head before it too)

_TOKEN = re.compile(rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+")
_BAD_VALUE = re.compile(rb"[\x00\r\n]")
_STATUS = re.compile(rb"HTTP/(\d\.\d) (\d{3})(?: ([^\r\n]*))?")
_HEADER = re.compile(rb"([^:\s]+):[ \t]*(.*?)[ \t]*")
_BLANK_LINE = re.compile(rb"\r?\n\r?\n")
_LINE_END = re.compile(rb"\r?\n")


class HeadError(Exception):
    """A head that cannot be sent (a header that would split it), or an answer's head that
    is not HTTP/1.x (a broken or hostile peer)."""


def request_head(method: str, target: bytes, headers: Iterable[tuple[bytes, bytes]]) -> bytes:
    """``METHOD target HTTP/1.1`` and the header lines, through the blank line.

    The caller gives every header (``Host`` and ``Content-Length`` included): nothing is
    added here, so what is sent is what the caller can see.
    """
    if not _TOKEN.fullmatch(method.encode("ascii", "replace")):
        raise HeadError(f"invalid request method {method!r}")
    if not target or _BAD_VALUE.search(target) or b" " in target:
        raise HeadError(f"invalid request target {target!r}")
    lines = [b"%s %s HTTP/1.1" % (method.encode("ascii"), target)]
    for name, value in headers:
        if not _TOKEN.fullmatch(name):
            raise HeadError(f"invalid header name {name!r}")
        if _BAD_VALUE.search(value):
            raise HeadError(f"the value of header {name.decode('latin-1')!r} holds a line "
                            "break or NUL")
        lines.append(b"%s: %s" % (name, value))
    lines.append(b"\r\n")
    return b"\r\n".join(lines)


@dataclass(frozen=True, slots=True)
class ResponseHead:
    http_version: bytes  # b"1.1", b"1.0"
    status_code: int
    reason: bytes
    headers: list[tuple[bytes, bytes]]  # as sent (names in their case), in order

    def lowered(self) -> list[tuple[bytes, bytes]]:
        """The headers with lower-case names, for looking them up."""
        return [(name.lower(), value) for name, value in self.headers]


class HeadReader:
    """Feed it what the socket gives until it returns the answer's head.

    Informational answers (1xx) before the final one are read and dropped; ``101 Switching
    Protocols`` is an error (Chorus never asks for an upgrade). ``rest``: the bytes that
    came after the head, the start of the body.
    """

    __slots__ = ("_buf", "rest")

    def __init__(self) -> None:
        self._buf = b""
        self.rest = b""

    def feed(self, data: bytes) -> ResponseHead | None:
        buf = self._buf + data if self._buf else data
        while True:
            end = _BLANK_LINE.search(buf)
            if end is None:
                if len(buf) > MAX_HEAD:
                    raise HeadError(f"the answer's head is over {MAX_HEAD} bytes")
                self._buf = buf
                return None
            if end.start() > MAX_HEAD:
                raise HeadError(f"the answer's head is over {MAX_HEAD} bytes")
            head = parse_head(buf[:end.start()])
            buf = buf[end.end():]
            if head.status_code >= 200:
                self._buf = b""
                self.rest = buf
                return head
            if head.status_code == 101:
                raise HeadError("the server switched protocols unasked (101)")


def parse_head(block: bytes) -> ResponseHead:
    """One answer's head, without its blank line: the status line, then header lines (an
    obsolete folded line continues the header before it, joined by a space)."""
    lines = _LINE_END.split(block.lstrip(b"\r\n"))  # RFC 9112 2.2: empty lines before
    status = _STATUS.fullmatch(lines[0])
    if status is None or not status.group(1).startswith(b"1."):
        raise HeadError(f"not an HTTP/1.x status line: {lines[0][:100]!r}")
    headers: list[tuple[bytes, bytes]] = []
    for line in lines[1:]:
        if line[:1] in (b" ", b"\t"):
            if not headers:
                raise HeadError("a folded line before any header")
            name, value = headers[-1]
            headers[-1] = (name, (value + b" " + line.strip(b" \t")).strip(b" "))
            continue
        header = _HEADER.fullmatch(line)
        if header is None or not _TOKEN.fullmatch(header.group(1)):
            raise HeadError(f"malformed header line: {line[:100]!r}")
        if b"\x00" in header.group(2):
            raise HeadError("a header value holds NUL")
        headers.append((header.group(1), header.group(2)))
    return ResponseHead(status.group(1), int(status.group(2)), status.group(3) or b"",
                        headers)
