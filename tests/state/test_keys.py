"""A stream's keys share one Redis Cluster slot; event ids map to entry ids and back; a
refused id is told apart from Redis trouble."""

from __future__ import annotations

import secrets

import coredis
import pytest

from app.state.keys import (
    control_channel,
    entry_id,
    event_id,
    events_key,
    ids_taken,
    is_stream_id,
    record_key,
    stream_of_channel,
)


def cluster_slot(key: str) -> str:
    """The part of a key Redis Cluster hashes: between the first ``{`` and the next ``}``."""
    start = key.index("{")
    return key[start + 1:key.index("}", start)]


def test_every_key_of_a_stream_hashes_on_its_id_alone() -> None:
    stream_id = secrets.token_urlsafe(16)
    for key in (events_key(stream_id), record_key(stream_id), control_channel(stream_id)):
        assert cluster_slot(key) == stream_id
    assert stream_of_channel(control_channel(stream_id)) == stream_id


@pytest.mark.parametrize("n", [1, 2, 17, 10**9])
def test_event_n_is_entry_0_n(n: int) -> None:
    assert entry_id(n) == f"0-{n}"
    assert event_id(entry_id(n)) == n
    assert event_id(entry_id(n).encode()) == n


@pytest.mark.parametrize(("text", "ok"), [
    (secrets.token_urlsafe(16), True), ("abc-DEF_123", True), ("", False),
    ("a}b", False), ("{x}", False), ("a/b", False), ("x" * 65, False),
])
def test_only_what_the_hub_could_have_made_is_looked_up(text: str, ok: bool) -> None:
    assert is_stream_id(text) is ok


def test_an_id_refused_as_taken_is_told_apart_from_other_failures() -> None:
    taken = coredis.exceptions.ResponseError(
        "The ID specified in XADD is equal or smaller than the target stream top item")
    assert ids_taken(taken)
    assert ids_taken(ExceptionGroup("grouped", [taken]))
    assert not ids_taken(ConnectionError("Connection refused"))
    assert not ids_taken(ExceptionGroup("grouped", [OSError("reset")]))
    assert not ids_taken(None)
