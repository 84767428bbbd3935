"""The HMAC challenge: the right token passes, nothing else does, the token stays home."""

from __future__ import annotations

from providers.agent.handshake import accepted, answer, new_challenge, split_tokens

TOKENS = ("first-token", "second-token")


def test_an_answer_made_with_any_accepted_token_passes() -> None:
    challenge = new_challenge()
    for token in TOKENS:
        assert accepted(TOKENS, challenge, answer(token, challenge))


def test_a_wrong_token_or_a_replayed_answer_fails() -> None:
    challenge = new_challenge()
    assert not accepted(TOKENS, challenge, answer("guess", challenge))
    assert not accepted(TOKENS, new_challenge(), answer(TOKENS[0], challenge))
    assert not accepted((), challenge, answer(TOKENS[0], challenge))
    assert not accepted(TOKENS, challenge, "")


def test_challenges_are_fresh_and_the_answer_does_not_hold_the_token() -> None:
    challenge = new_challenge()
    assert challenge != new_challenge()
    assert len(bytes.fromhex(challenge)) == 32
    mac = answer(TOKENS[0], challenge)
    assert len(bytes.fromhex(mac)) == 32  # SHA-256
    assert TOKENS[0].encode().hex() not in mac
    assert answer(TOKENS[1], challenge) != mac  # the answer depends on the token


def test_the_token_variable_holds_comma_separated_tokens() -> None:
    assert split_tokens(" a, b ,,c ") == ("a", "b", "c")
    assert split_tokens(None) == ()
