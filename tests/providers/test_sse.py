"""The SSE decoder against the WHATWG rules, one rule at a time.
https://html.spec.whatwg.org/multipage/server-sent-events.html#parsing-an-event-stream"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from recorded import cut

from providers import sse
from providers.errors import ProtocolError
from providers.sse import SSEDecoder, SSEEvent


def decode(*chunks: bytes, **options: bool) -> tuple[list[SSEEvent], SSEDecoder]:
    decoder = SSEDecoder(**options)
    events = [e for chunk in chunks for e in decoder.feed(chunk)]
    return events + decoder.flush(), decoder


def events(*chunks: bytes) -> list[SSEEvent]:
    return decode(*chunks)[0]


def one_byte_at_a_time(data: bytes) -> list[SSEEvent]:
    return events(*(data[i : i + 1] for i in range(len(data))))


class TestLineEndings:
    @pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"])
    def test_lf_crlf_and_cr_each_end_a_line(self, eol: bytes) -> None:
        data = b"data: a" + eol + b"data: b" + eol + eol
        assert events(data) == one_byte_at_a_time(data) == [SSEEvent("message", "a\nb")]

    def test_mixed_endings(self) -> None:
        assert events(b"data: a\rdata: b\r\ndata: c\n\r\n") == [SSEEvent("message", "a\nb\nc")]

    def test_a_cr_at_the_end_of_a_read_and_an_lf_at_the_start_of_the_next_are_one_ending(
        self,
    ) -> None:
        # Taken as two endings, the LF would be an empty line and dispatch "a" alone.
        assert events(b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n") == [SSEEvent("message", "a\nb")]

    def test_a_cr_at_the_end_of_a_read_dispatches_without_waiting(self) -> None:
        decoder = SSEDecoder()
        assert decoder.feed(b"data: a\r\r") == [SSEEvent("message", "a")]
        assert decoder.feed(b"\ndata: b\n\n") == [SSEEvent("message", "b")]

    def test_a_cr_then_an_empty_read_still_pairs_with_the_next_lf(self) -> None:
        assert events(b"data: a\r", b"", b"\n\n") == [SSEEvent("message", "a")]


class TestEncoding:
    def test_a_leading_bom_is_skipped(self) -> None:
        assert events(b"\xef\xbb\xbfdata: x\n\n") == [SSEEvent("message", "x")]

    def test_a_bom_split_across_reads_is_skipped(self) -> None:
        assert events(b"\xef", b"\xbb", b"\xbfdata: x\n\n") == [SSEEvent("message", "x")]

    def test_only_the_first_bom_is_skipped(self) -> None:
        # The second BOM is part of the first line's name, so the line is an unknown field.
        assert events(b"\xef\xbb\xbf\xef\xbb\xbfdata: x\n\n") == []

    def test_utf8_split_across_reads(self) -> None:
        data = "data: Pelé 😊 한국\n\n".encode()
        assert one_byte_at_a_time(data) == [SSEEvent("message", "Pelé 😊 한국")]

    def test_invalid_utf8_becomes_replacement_characters(self) -> None:
        assert events(b"data: a\xffb\n\n", b"data: \xf0\x9f\n\n") == [
            SSEEvent("message", "a\ufffdb"),
            SSEEvent("message", "\ufffd"),
        ]


class TestFields:
    def test_several_data_lines_join_with_newlines(self) -> None:
        assert events(b'data: {"a":\ndata: 1}\n\n') == [SSEEvent("message", '{"a":\n1}')]

    def test_one_leading_space_is_removed_and_no_more(self) -> None:
        assert events(b"data:x\n\ndata:  x\n\n") == [
            SSEEvent("message", "x"),
            SSEEvent("message", " x"),
        ]

    def test_empty_data_still_dispatches(self) -> None:
        assert events(b"data\n\ndata:\n\n") == [SSEEvent("message", ""), SSEEvent("message", "")]

    def test_a_value_may_contain_colons(self) -> None:
        assert events(b"data: a: b\n\n") == [SSEEvent("message", "a: b")]

    def test_comments_are_ignored_anywhere_and_counted(self) -> None:
        got, decoder = decode(b": OPENROUTER PROCESSING\n\ndata: a\n: keep-alive\ndata: b\n\n:\n")
        assert got == [SSEEvent("message", "a\nb")]
        assert decoder.comments == 3

    def test_event_type_applies_once_then_resets(self) -> None:
        assert events(b"event: error\ndata: x\n\ndata: y\n\nevent:\ndata: z\n\n") == [
            SSEEvent("error", "x"),
            SSEEvent("message", "y"),
            SSEEvent("message", "z"),
        ]

    def test_an_event_with_no_data_dispatches_nothing_and_resets_the_type(self) -> None:
        assert events(b"event: ping\n\ndata: x\n\n") == [SSEEvent("message", "x")]

    def test_id_persists_and_ignores_values_with_nul(self) -> None:
        got, decoder = decode(b"id: 1\ndata: a\n\ndata: b\n\nid: 2\x00\ndata: c\n\nid\ndata: d\n\n")
        assert [e.id for e in got] == ["1", "1", "1", ""]
        assert decoder.last_id == ""

    def test_an_id_without_data_still_sets_the_last_id(self) -> None:
        assert decode(b"id: 7\n\n")[1].last_id == "7"

    @pytest.mark.parametrize(
        ("line", "retry"),
        [
            (b"retry: 3000", 3000),
            (b"retry: 3s", None),
            (b"retry:", None),
            ("retry: \u0663".encode(), None),  # an Arabic-Indic digit is not an ASCII digit
        ],
    )
    def test_retry_takes_ascii_digits_only(self, line: bytes, retry: int | None) -> None:
        assert decode(line + b"\n\n")[1].retry == retry

    def test_unknown_fields_are_ignored_or_kept_as_strays(self) -> None:
        data = b'foo: bar\n{\n  "error": 1\n}\ndata: x\n\n'
        assert events(data) == [SSEEvent("message", "x")]
        assert decode(data, keep_stray=True)[0] == [
            SSEEvent("", "foo: bar", stray=True),
            SSEEvent("", "{", stray=True),
            SSEEvent("", '  "error": 1', stray=True),
            SSEEvent("", "}", stray=True),
            SSEEvent("message", "x"),
        ]


class TestEndOfStream:
    def test_a_complete_stream_leaves_nothing_pending(self) -> None:
        got, decoder = decode(b"data: a\n\n")
        assert got == [SSEEvent("message", "a")]
        assert not decoder.pending

    @pytest.mark.parametrize("tail", [b"data: b", b"data: b\n", b"data: b\r"])
    def test_an_unterminated_event_is_dropped_and_reported(self, tail: bytes) -> None:
        got, decoder = decode(b"data: a\n\n" + tail)
        assert got == [SSEEvent("message", "a")]
        assert decoder.pending

    @pytest.mark.parametrize("tail", [b": bye", b"event: x", b"id: 9"])
    def test_a_trailing_line_without_data_is_not_pending(self, tail: bytes) -> None:
        got, decoder = decode(b"data: a\n\n" + tail)
        assert got == [SSEEvent("message", "a")]
        assert not decoder.pending

    def test_a_last_line_without_ending_is_still_read_as_a_field(self) -> None:
        assert decode(b"id: 9")[1].last_id == "9"
        assert decode(b"}", keep_stray=True)[0] == [SSEEvent("", "}", stray=True)]

    def test_a_truncated_utf8_character_at_the_end(self) -> None:
        got, decoder = decode(b"data: \xf0\x9f")
        assert got == []
        assert decoder.pending

    def test_flush_resets_the_decoder(self) -> None:
        decoder = SSEDecoder()
        decoder.feed(b"data: a\n")
        decoder.flush()
        assert decoder.feed(b"data: b\n\n") == [SSEEvent("message", "b")]


class TestLimits:
    def test_an_endless_line_is_a_protocol_error(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(sse, "MAX_EVENT_CHARS", 100)
        decoder = SSEDecoder()
        decoder.feed(b"data: " + b"x" * 90)
        with pytest.raises(ProtocolError):
            decoder.feed(b"x" * 20)

    def test_an_endless_event_is_a_protocol_error(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(sse, "MAX_EVENT_CHARS", 100)
        decoder = SSEDecoder()
        with pytest.raises(ProtocolError):
            decoder.feed(b"data: 1234567890\n" * 10)

    def test_events_before_the_overflow_come_first(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(sse, "MAX_EVENT_CHARS", 100)
        data = b"data: a\n\n" + b"data: " + b"x" * 200 + b"\n\ndata: b\n\n"
        decoder = SSEDecoder()
        assert decoder.feed(data) == [SSEEvent("message", "a")]
        with pytest.raises(ProtocolError):
            decoder.feed(b"")
        with pytest.raises(ProtocolError):
            decoder.flush()
        decoder = SSEDecoder()
        assert [e for i in range(20) for e in decoder.feed(data[i : i + 1])] == [
            SSEEvent("message", "a")
        ]
        with pytest.raises(ProtocolError):
            decoder.feed(data[20:])

    def test_dispatch_frees_the_budget(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(sse, "MAX_EVENT_CHARS", 100)
        decoder = SSEDecoder()
        for _ in range(20):
            assert decoder.feed(b"data: 1234567890\n\n") == [SSEEvent("message", "1234567890")]


LINES = st.lists(
    st.sampled_from(
        [
            "data: a",
            "data:b",
            "data",
            "event: e",
            "id: 1",
            ": c",
            "retry: 5",
            "",
            "x: y",
            "data: é😊",
        ]
    ),
)
ENDINGS = st.sampled_from(["\n", "\r", "\r\n"])


@given(
    LINES.flatmap(
        lambda ls: st.tuples(st.just(ls), st.lists(ENDINGS, min_size=len(ls), max_size=len(ls)))
    ),
    st.lists(st.integers(min_value=0, max_value=400)),
)
def test_any_split_gives_the_same_events(
    lines_and_endings: tuple[list[str], list[str]], cuts: list[int]
) -> None:
    lines, endings = lines_and_endings
    data = "".join(line + eol for line, eol in zip(lines, endings, strict=True)).encode()
    whole, whole_decoder = decode(data)
    split, split_decoder = decode(*cut(data, cuts))
    assert split == whole
    assert (
        split_decoder.last_id,
        split_decoder.retry,
        split_decoder.comments,
        split_decoder.pending,
    ) == (whole_decoder.last_id, whole_decoder.retry, whole_decoder.comments, whole_decoder.pending)


@given(st.lists(st.binary()))
def test_arbitrary_bytes_never_crash_the_decoder(chunks: list[bytes]) -> None:
    decode(*chunks, keep_stray=True)
