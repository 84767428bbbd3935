"""The streamed-JSON-array splitter: element bytes out, whatever the chunking."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from recorded import cut

from providers import jsonarray
from providers.errors import ProtocolError
from providers.jsonarray import JSONArrayDecoder


def split(*chunks: bytes) -> tuple[list[object], bool]:
    decoder = JSONArrayDecoder()
    elements = [json.loads(e) for chunk in chunks for e in decoder.feed(chunk)]
    return elements, decoder.flush()


def test_gemini_framing() -> None:
    data = b'[{\n  "a": 1\n}\n,\r\n{\n  "b": [2, {"c": 3}]\n}\n]'
    assert split(data) == ([{"a": 1}, {"b": [2, {"c": 3}]}], True)


def test_brackets_quotes_and_escapes_inside_strings() -> None:
    tricky = {"s": 'a}]{["\\', "u": "\u00e9\\u0000", "n": "\\"}
    data = ("[" + json.dumps(tricky) + "]").encode()
    assert split(data) == ([tricky], True)


def test_a_backslash_at_the_end_of_a_read() -> None:
    assert split(b'[{"s": "a\\', b'"b"}]') == ([{"s": 'a"b'}], True)


def test_an_element_is_returned_as_soon_as_it_closes() -> None:
    decoder = JSONArrayDecoder()
    assert decoder.feed(b'[{"a": 1}, {"b"') == [b'{"a": 1}']
    assert decoder.feed(b": 2}") == [b'{"b": 2}']
    assert not decoder.flush()


def test_empty_array_and_empty_body() -> None:
    assert split(b" [ ] ") == ([], True)
    assert split(b"") == ([], False)


def test_a_bare_object_is_a_one_element_body() -> None:
    assert split(b' {"error": {"code": 500}} \n') == ([{"error": {"code": 500}}], True)


@pytest.mark.parametrize(
    "data",
    [b"x", b"[1]", b'["a"]', b"[{}] {}", b"]", b"[{}]]", b","],
)
def test_anything_but_an_array_of_objects_is_a_protocol_error(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        split(data)


def test_an_endless_element_is_a_protocol_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jsonarray, "MAX_ELEMENT_BYTES", 20)
    decoder = JSONArrayDecoder()
    assert decoder.feed(b'[{"a": "' + b"x" * 5 + b'"},') == [b'{"a": "xxxxx"}']
    with pytest.raises(ProtocolError):
        decoder.feed(b'{"b": "' + b"y" * 20)


def test_elements_before_a_broken_byte_come_first() -> None:
    decoder = JSONArrayDecoder()
    assert decoder.feed(b'[{"a": 1}, x, {"b": 2}]') == [b'{"a": 1}']
    with pytest.raises(ProtocolError):
        decoder.feed(b"")
    with pytest.raises(ProtocolError):
        decoder.flush()


def test_an_element_too_large_is_refused_whole_or_in_pieces(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(jsonarray, "MAX_ELEMENT_BYTES", 20)
    data = b'[{"a": 1}, {"b": "' + b"y" * 20 + b'"}]'
    for chunks in ([data], [data[i : i + 1] for i in range(len(data))]):
        assert until_error(JSONArrayDecoder(), chunks) == [b'{"a": 1}']


def until_error(decoder: JSONArrayDecoder, chunks: list[bytes]) -> list[bytes]:
    got: list[bytes] = []
    try:
        for chunk in chunks:
            got += decoder.feed(chunk)
        decoder.flush()
    except ProtocolError:
        return got
    raise AssertionError("no ProtocolError")


OBJECTS = st.dictionaries(
    st.text(max_size=5),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(alphabet='ab"\\{}[],é😊\n'),
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
        ),
        max_leaves=10,
    ),
    max_size=4,
)


@given(st.lists(OBJECTS, max_size=4), st.booleans(), st.lists(st.integers(min_value=0)))
def test_any_array_any_split(
    objects: list[dict[str, object]], pretty: bool, cuts: list[int]
) -> None:
    text = json.dumps(objects, indent=2 if pretty else None, ensure_ascii=False)
    assert split(*cut(text.encode(), cuts)) == (objects, True)
