"""Limits on what a request or an API key may ask for, each a clear 4xx (config: ``[server]``).

- ``RateLimiter``: requests per second per key, as a token bucket on trio's clock (so
  ``trio.testing.MockClock`` drives it in tests): 429 with ``Retry-After``.
- ``check_messages``: how many messages a history holds and how long one may be: 400.
- ``cap_max_tokens``: the ceiling on output tokens. A larger ask is clamped to it and a
  request that names none gets it, so no slot ever asks an upstream for more; clamping,
  not refusing, because OpenAI-style clients often send a large default they did not
  choose, and an answer cut at the ceiling ends with ``finish_reason: "length"``, as it
  would at the model's own limit.

Streams per key and in total are counted by the hub; body size by Quart (413).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import trio

from app.api.errors import ApiError, invalid
from providers import Message

# The names under which OpenAI-style APIs take the output ceiling (the newer one first).
MAX_TOKEN_KEYS = ("max_completion_tokens", "max_tokens")


class TokenBucket:
    """``burst`` tokens, refilled at ``rate`` per second; each request takes one."""

    __slots__ = ("burst", "rate", "tokens", "updated")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.updated = now

    def take(self, now: float) -> float:
        """Take a token: ``0.0`` if there was one, else the seconds until there will be."""
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


class RateLimiter:
    """One bucket per owner. Owners are the configured keys (plus the anonymous one):
    a request with a wrong key is refused before it gets here, so the map stays small."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: dict[str, TokenBucket] = {}

    def check(self, owner: str) -> None:
        """Take a token for ``owner``, or raise the 429 that says when to come back."""
        if self.rate <= 0:
            return
        now = trio.current_time()
        bucket = self._buckets.get(owner)
        if bucket is None:
            bucket = self._buckets[owner] = TokenBucket(self.rate, self.burst, now)
        wait = bucket.take(now)
        if wait:
            # Rounded up, never down: "retry in 0.0 s" for a 40 ms wait invites a retry
            # that fails again. Retry-After takes whole seconds, so at least 1.
            tenths = math.ceil(round(wait * 10, 6)) / 10
            raise ApiError(429, "rate_limited",
                           f"too many requests for this key: at most {self.rate:g} per second "
                           f"(bursts of {self.burst}); retry in {tenths:.1f} s",
                           headers={"Retry-After": str(max(1, math.ceil(wait)))})


def check_messages(messages: Sequence[Message], max_count: int, max_chars: int,
                   where: str) -> None:
    if len(messages) > max_count:
        raise invalid(f"{len(messages)} messages sent; at most {max_count} are accepted",
                      where)
    for i, message in enumerate(messages):
        if len(message.content) > max_chars:
            raise invalid(f"{where}[{i}].content is {len(message.content)} characters long; "
                          f"at most {max_chars} are accepted", f"{where}[{i}].content")


def cap_max_tokens(params: Mapping[str, Any], ceiling: int) -> dict[str, Any]:
    """``params`` with every output-token ask at most ``ceiling`` (0: no ceiling), and
    ``max_tokens = ceiling`` when it names none."""
    out = dict(params)
    if ceiling <= 0:
        return out
    named = [k for k in MAX_TOKEN_KEYS if k in out]
    for key in named:
        value = out[key]
        if isinstance(value, int) and not isinstance(value, bool) and value > ceiling:
            out[key] = ceiling
    if not named:
        out["max_tokens"] = ceiling
    return out
