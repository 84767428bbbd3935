"""The NDJSON line decoder (https://github.com/ndjson/ndjson-spec)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from recorded import cut

from providers import ndjson
from providers.errors import ProtocolError
from providers.ndjson import NDJSONDecoder


def lines(*chunks: bytes) -> list[str]:
    decoder = NDJSONDecoder()
    return [line for chunk in chunks for line in decoder.feed(chunk)] + decoder.flush()


def test_lines_split_on_lf_with_one_cr_stripped() -> None:
    assert lines(b'{"a":1}\n{"b":2}\r\n') == ['{"a":1}', '{"b":2}']


def test_only_one_cr_is_stripped() -> None:
    assert lines(b"x\r\r\n") == ["x\r"]


def test_empty_and_blank_lines_are_skipped() -> None:
    assert lines(b"\n\r\n  \nx\n\n") == ["x"]


def test_a_partial_line_waits_for_its_newline() -> None:
    decoder = NDJSONDecoder()
    assert decoder.feed(b'{"a"') == []
    assert decoder.feed(b":1}\n{") == ['{"a":1}']
    assert decoder.flush() == ["{"]
    assert decoder.flush() == []


def test_utf8_split_across_reads() -> None:
    data = '{"t":"Pelé 😊"}\n'.encode()
    assert lines(*(data[i : i + 1] for i in range(len(data)))) == ['{"t":"Pelé 😊"}']


def test_invalid_utf8_becomes_replacement_characters() -> None:
    assert lines(b"a\xffb\n") == ["a\ufffdb"]


def test_an_endless_line_is_a_protocol_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ndjson, "MAX_LINE_BYTES", 10)
    decoder = NDJSONDecoder()
    assert decoder.feed(b"x" * 10 + b"\n" + b"y" * 10) == ["x" * 10]
    with pytest.raises(ProtocolError):
        decoder.feed(b"y")


@given(st.binary(), st.lists(st.integers(min_value=0)))
def test_any_split_gives_the_same_lines(data: bytes, cuts: list[int]) -> None:
    assert lines(*cut(data, cuts)) == lines(data)


def test_lines_before_an_endless_one_come_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ndjson, "MAX_LINE_BYTES", 10)
    decoder = NDJSONDecoder()
    assert decoder.feed(b"a\n" + b"y" * 11 + b"\nb\n") == ["a"]
    with pytest.raises(ProtocolError):
        decoder.feed(b"")
    with pytest.raises(ProtocolError):
        decoder.flush()
