"""Authentication of an agent, once per connection, without the token crossing the wire.

The server sends a random challenge; the agent answers HMAC-SHA256(token, challenge); the
server computes the same with each token it accepts and compares in constant time. A
recorded answer is worth nothing on the next connection: the challenge changes.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable

CHALLENGE_BYTES = 32


def new_challenge() -> str:
    return secrets.token_hex(CHALLENGE_BYTES)


def answer(token: str, challenge: str) -> str:
    """What an agent holding ``token`` sends back for ``challenge`` (hex)."""
    return hmac.new(token.encode(), challenge.encode(), hashlib.sha256).hexdigest()


def accepted(tokens: Iterable[str], challenge: str, mac: str) -> bool:
    """Whether ``mac`` answers ``challenge`` for one of ``tokens``. Every token is tried
    (no early return), so the time taken does not say which one matched."""
    found = False
    for token in tokens:
        found |= hmac.compare_digest(answer(token, challenge), mac)
    return found


def split_tokens(value: str | None) -> tuple[str, ...]:
    """The comma-separated tokens of ``token_env``'s variable, blanks dropped."""
    return tuple(t.strip() for t in (value or "").split(",") if t.strip())
