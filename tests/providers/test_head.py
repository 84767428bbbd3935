"""Message heads (``providers/head.py``): a request head that an HTTP server reads as what
was asked, nothing that could split it; an answer's head read the same as h11 reads it,
whatever pieces the socket hands over, with what follows it kept for the body."""

from __future__ import annotations

import h11
import pytest
from hypothesis import given
from hypothesis import strategies as st

from providers.head import MAX_HEAD, HeadError, HeadReader, parse_head, request_head
from tests.providers.test_framing import split

NAMES = st.from_regex(rb"[A-Za-z][-A-Za-z0-9_]{0,20}", fullmatch=True)
VALUES = st.from_regex(rb"([!-~]([ \t]*[!-~])*)?", fullmatch=True).filter(lambda v: len(v) < 60)
HEADERS = st.lists(st.tuples(NAMES, VALUES), max_size=8)
CUTS = st.lists(st.integers(min_value=0, max_value=10_000), max_size=12)


@given(HEADERS, st.binary(max_size=50))
def test_a_request_head_reads_back_as_sent_on_the_server_side(
    headers: list[tuple[bytes, bytes]], body: bytes,
) -> None:
    sent = [(b"Host", b"example.test:8080"), *headers, (b"Content-Length", b"%d" % len(body))]
    server = h11.Connection(h11.SERVER)
    server.receive_data(request_head("POST", b"/v1/chat/completions?x=1", sent) + body)
    request = server.next_event()
    assert isinstance(request, h11.Request)
    assert (request.method, request.target) == (b"POST", b"/v1/chat/completions?x=1")
    assert request.headers.raw_items() == sent
    data = server.next_event()
    if body:
        assert isinstance(data, h11.Data)
        assert data.data == body
        data = server.next_event()
    assert isinstance(data, h11.EndOfMessage)


@pytest.mark.parametrize(("method", "target", "headers", "message"), [
    ("POST", b"/", [(b"Authorization", b"Bearer k\r\nX-Evil: 1")], "line break or NUL"),
    ("POST", b"/", [(b"Authorization", b"Bearer k\n")], "line break or NUL"),
    ("POST", b"/", [(b"X", b"a\x00b")], "line break or NUL"),
    ("POST", b"/", [(b"Bad Name", b"v")], "invalid header name"),
    ("POST", b"/", [(b"", b"v")], "invalid header name"),
    ("POST", b"/", [(b"X:Y", b"v")], "invalid header name"),
    ("PO ST", b"/", [], "invalid request method"),
    ("POST", b"/a b", [], "invalid request target"),
    ("POST", b"/\r\n", [], "invalid request target"),
    ("POST", b"", [], "invalid request target"),
])
def test_a_head_that_could_be_split_is_refused(
    method: str, target: bytes, headers: list[tuple[bytes, bytes]], message: str,
) -> None:
    with pytest.raises(HeadError, match=message):
        request_head(method, target, headers)


def answer_head(status: int, reason: bytes, headers: list[tuple[bytes, bytes]]) -> bytes:
    lines = [b"HTTP/1.1 %d %s" % (status, reason)] + [b"%s: %s" % h for h in headers]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def h11_reads(wire: bytes) -> h11.Response:
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
    client.send(h11.EndOfMessage())
    client.receive_data(wire)
    while True:
        event = client.next_event()
        if isinstance(event, h11.Response):
            return event


@given(st.integers(min_value=200, max_value=599),
       st.from_regex(rb"[A-Za-z]( ?[A-Za-z]){0,10}", fullmatch=True), HEADERS,
       st.binary(max_size=30), CUTS, st.booleans())
def test_an_answers_head_reads_as_h11_reads_it_however_it_is_split(
    status: int, reason: bytes, headers: list[tuple[bytes, bytes]], body: bytes,
    cuts: list[int], informational: bool,
) -> None:
    wire = answer_head(status, reason, headers) + body
    if informational:
        wire = b"HTTP/1.1 100 Continue\r\nx-early: 1\r\n\r\n" + wire
    reader = HeadReader()
    pieces = split(wire, cuts)
    fed = 0
    head = None
    while head is None:  # it comes with the piece that ends it, and not before
        head = reader.feed(pieces[fed])
        fed += 1
    reference = h11_reads(wire)
    assert (head.status_code, head.reason, head.http_version) == (
        reference.status_code, reference.reason, reference.http_version)
    assert head.headers == reference.headers.raw_items()
    assert head.lowered() == list(reference.headers)
    assert reader.rest + b"".join(pieces[fed:]) == body


def test_line_ends_without_cr_a_missing_reason_and_folded_lines_are_read() -> None:
    reader = HeadReader()
    head = reader.feed(b"HTTP/1.0 204\nServer: a\n  b\nX-Empty:\n\nrest")
    assert head is not None
    assert (head.http_version, head.status_code, head.reason) == (b"1.0", 204, b"")
    assert head.headers == [(b"Server", b"a b"), (b"X-Empty", b"")]
    assert reader.rest == b"rest"


@pytest.mark.parametrize(("wire", "message"), [
    (b"HTTP/2 200 OK\r\n\r\n", "not an HTTP/1.x status line"),
    (b"HTTP/2.0 200 OK\r\n\r\n", "not an HTTP/1.x status line"),
    (b"ICY 200 OK\r\n\r\n", "not an HTTP/1.x status line"),
    (b"HTTP/1.1 20 OK\r\n\r\n", "not an HTTP/1.x status line"),
    (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "malformed header line"),
    (b"HTTP/1.1 200 OK\r\nname : value\r\n\r\n", "malformed header line"),
    (b"HTTP/1.1 200 OK\r\n folded: first\r\n\r\n", "folded line before any header"),
    (b"HTTP/1.1 200 OK\r\nx: a\x00b\r\n\r\n", "holds NUL"),
    (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n", "switched protocols"),
])
def test_a_malformed_head_is_an_error(wire: bytes, message: str) -> None:
    with pytest.raises(HeadError, match=message):
        HeadReader().feed(wire)


def test_a_head_over_the_limit_is_an_error_complete_or_not() -> None:
    line = b"x-filler: " + b"a" * 1000 + b"\r\n"
    endless = b"HTTP/1.1 200 OK\r\n" + line * (MAX_HEAD // len(line) + 1)
    pieces = [endless[i:i + 4096] for i in range(0, len(endless), 4096)]
    assert len(endless) - len(pieces[-1]) <= MAX_HEAD < len(endless)
    reader = HeadReader()
    for piece in pieces[:-1]:
        assert reader.feed(piece) is None
    with pytest.raises(HeadError, match="over"):
        reader.feed(pieces[-1])
    with pytest.raises(HeadError, match="over"):
        HeadReader().feed(endless + b"\r\n")


def test_parse_head_ignores_empty_lines_before_the_status_line() -> None:
    assert parse_head(b"\r\nHTTP/1.1 200 OK\r\na: 1").headers == [(b"a", b"1")]
