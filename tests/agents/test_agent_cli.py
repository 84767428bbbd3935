"""``chorus agent`` sorting out what ended a connection: the first exception of a kind,
found inside the groups a nursery wraps it in, or the exception itself."""

from __future__ import annotations

from app.agent_cli import DROPS, Refused, first_of


def test_an_exception_outside_any_group_is_itself_or_nothing() -> None:
    lost = OSError("reset")
    assert first_of(lost, DROPS) is lost
    assert first_of(KeyError("k"), DROPS) is None


def test_the_first_match_is_found_depth_first_through_nested_groups() -> None:
    first, second, third = OSError("first"), OSError("second"), OSError("third")
    group = BaseExceptionGroup("outer", [
        KeyError("k"), ExceptionGroup("inner", [ValueError("v"), first, second]), third])
    assert first_of(group, (OSError,)) is first
    assert first_of(group, (ValueError,)) is group.exceptions[1].exceptions[0]


def test_a_group_is_never_the_answer_even_when_its_kind_matches() -> None:
    refused = Refused("wrong token")
    group = ExceptionGroup("outer", [ExceptionGroup("inner", [refused])])
    assert first_of(group, (Exception,)) is refused


def test_a_group_with_nothing_of_the_kinds_gives_nothing() -> None:
    group = ExceptionGroup("outer", [KeyError("k"), ExceptionGroup("inner", [TypeError()])])
    assert first_of(group, (Refused,)) is None
