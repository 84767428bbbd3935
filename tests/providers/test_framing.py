"""Response-body framing (``providers/framing.py``): whatever pieces the socket hands over,
the payload comes out whole, in order, as soon as it is there, and the end is found."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from providers.framing import BodyFraming, FramingError


def chunked(*parts: bytes, trailers: bytes = b"", ext: bytes = b"") -> bytes:
    body = b"".join(b"%x%s\r\n%s\r\n" % (len(p), ext, p) for p in parts if p)
    return body + b"0\r\n" + trailers + b"\r\n"


def feed_all(framing: BodyFraming, pieces: list[bytes]) -> bytes:
    return b"".join(framing.feed(p) for p in pieces)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points) if b > a]


PAYLOADS = st.lists(st.binary(min_size=1, max_size=40), min_size=0, max_size=6)


@given(PAYLOADS, st.lists(st.integers(min_value=0, max_value=10_000), max_size=12),
       st.sampled_from([b"", b";name=value", b" ; x"]),
       st.sampled_from([b"", b"x-checksum: 1\r\n", b"a: 1\r\nb: 2\r\n"]))
def test_chunked_bodies_decode_the_same_however_they_are_split(
    parts: list[bytes], cuts: list[int], ext: bytes, trailers: bytes,
) -> None:
    wire = chunked(*parts, trailers=trailers, ext=ext)
    framing = BodyFraming(chunked=True)
    assert feed_all(framing, split(wire, cuts)) == b"".join(parts)
    assert framing.done
    assert framing.leftover == b""


def test_a_read_of_many_chunks_is_one_payload_and_a_partial_chunk_is_not_held_back() -> None:
    framing = BodyFraming(chunked=True)
    assert framing.feed(b"3\r\nabc\r\n2\r\nde\r\n5\r\nfg") == b"abcdefg"
    assert framing.feed(b"h") == b"h"
    assert framing.feed(b"ij\r\n") == b"ij"
    assert framing.feed(b"0\r\n") == b""
    assert not framing.done
    assert framing.feed(b"\r\nHTTP/1.1") == b""
    assert framing.done
    assert framing.leftover == b"HTTP/1.1"


@pytest.mark.parametrize(("wire", "message"), [
    (b"zz\r\nab\r\n", "bad chunk-size"),
    (b"\r\n", "bad chunk-size"),
    (b"-1\r\n", "bad chunk-size"),
    (b"2\r\nabc\r\n", "longer than its size"),
    (b"1" * 20 + b"\r\n", "bad chunk-size"),
    (b"1" * (9 * 1024), "too long"),
])
def test_a_broken_chunked_body_is_an_error(wire: bytes, message: str) -> None:
    with pytest.raises(FramingError, match=message):
        BodyFraming(chunked=True).feed(wire)


def test_a_close_before_the_last_chunk_is_an_error_and_after_it_is_not_read() -> None:
    framing = BodyFraming(chunked=True)
    framing.feed(b"5\r\nab")
    with pytest.raises(FramingError, match="closed the connection mid-answer"):
        framing.feed(b"")
    done = BodyFraming(chunked=True)
    done.feed(chunked(b"abc"))
    assert done.feed(b"") == b""
    assert done.done


def test_a_content_length_body_ends_at_its_length() -> None:
    framing = BodyFraming(length=5)
    assert framing.feed(b"ab") == b"ab"
    assert not framing.done
    assert framing.feed(b"cdeXY") == b"cde"
    assert framing.done
    assert framing.leftover == b"XY"
    short = BodyFraming(length=5)
    short.feed(b"abc")
    with pytest.raises(FramingError, match="mid-answer"):
        short.feed(b"")
    assert BodyFraming(length=0).done


def test_a_body_with_neither_runs_until_the_peer_closes() -> None:
    framing = BodyFraming()
    assert framing.until_close
    assert framing.feed(b"any") == b"any"
    assert not framing.done
    assert framing.feed(b"") == b""
    assert framing.done


@pytest.mark.parametrize("lengths", [
    [b"7", b"8"], [b"7, 8"], [b"+7"], [b"7_0"], [b"-1"], [b"0x7"], [b""], [b"seven"],
])
def test_a_content_length_that_could_be_read_two_ways_is_an_error(lengths: list[bytes]) -> None:
    with pytest.raises(FramingError, match="bad Content-Length"):
        BodyFraming.for_response(b"GET", 200, [(b"content-length", v) for v in lengths])


@pytest.mark.parametrize(("method", "status", "headers", "kind"), [
    (b"GET", 200, [(b"transfer-encoding", b"chunked")], "chunked"),
    (b"GET", 200, [(b"content-length", b"7"), (b"transfer-encoding", b"gzip, chunked")],
     "chunked"),
    (b"GET", 200, [(b"content-length", b"7")], "length"),
    (b"GET", 200, [(b"content-length", b"7, 7"), (b"content-length", b" 7")], "length"),
    (b"GET", 200, [(b"transfer-encoding", b"gzip"), (b"transfer-encoding", b"chunked")],
     "chunked"),
    (b"GET", 200, [(b"transfer-encoding", b"chunked"), (b"transfer-encoding", b"gzip")],
     "close"),
    (b"GET", 200, [(b"content-type", b"text/plain")], "close"),
    (b"HEAD", 200, [(b"content-length", b"7")], "none"),
    (b"GET", 204, [], "none"),
    (b"GET", 304, [(b"content-length", b"7")], "none"),
])
def test_the_framing_follows_the_method_status_and_headers(
    method: bytes, status: int, headers: list[tuple[bytes, bytes]], kind: str,
) -> None:
    framing = BodyFraming.for_response(method, status, headers)
    got = framing.feed(b"2\r\nab\r\n0\r\n\r\n") if not framing.done else None
    expected = {"chunked": b"ab", "length": b"2\r\nab\r\n", "close": b"2\r\nab\r\n0\r\n\r\n",
                "none": None}[kind]
    assert got == expected
    assert framing.until_close == (kind == "close")
