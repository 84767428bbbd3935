"""A request body's JSON, decoded with bounds: at most ``MAX_DEPTH`` levels of nesting,
every number finite and 64-bit. A hostile body (``[[[[…`` 100,000 deep, ``1e400``,
``10**400``) is a 400 that says the bound, never a 500 or a slow conversion."""

from __future__ import annotations

import json
import math
from typing import Any

from .errors import ApiError, invalid

MAX_DEPTH = 64  # arrays and objects inside each other; real bodies use under ten
INT_MIN, INT_MAX = -(2**63), 2**63 - 1  # every JSON integer fits a signed 64-bit one


def parse_json(raw: bytes) -> Any:
    """The body's JSON, with every number finite and 64-bit (``NaN``, ``1e400`` and
    ``10**400`` are refused) and at most ``MAX_DEPTH`` levels of nesting."""
    try:
        data = json.loads(raw, parse_int=_int, parse_float=_float, parse_constant=_constant)
    except RecursionError as exc:  # deeper than the decoder's own stack allows
        raise _too_deep() from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise invalid(f"the body is not valid JSON ({exc})") from exc
    if _depth(data) > MAX_DEPTH:
        raise _too_deep()
    return data


_NUMBERS = ("numbers must be finite, and integers between -2**63 and 2**63-1 "
            "(64-bit)")


def _int(text: str) -> int:
    # The length check comes first: int() of a 5000-digit string is refused by Python
    # itself, and a long one costs time to convert.
    if len(text.lstrip("-")) > 19 or not INT_MIN <= (value := int(text)) <= INT_MAX:
        raise invalid(f"the number {text[:30]}{'…' if len(text) > 30 else ''} is out of "
                      f"range: {_NUMBERS}")
    return value


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise invalid(f"the number {text[:30]} is out of range: {_NUMBERS}")
    return value


def _constant(text: str) -> Any:
    raise invalid(f"{text} is not a JSON number: {_NUMBERS}")


def _too_deep() -> ApiError:
    return invalid(f"the body nests arrays and objects more than {MAX_DEPTH} levels deep")


def _depth(data: Any) -> int:
    """How deep ``data`` nests, walked without recursion (the body may be hostile)."""
    deepest = 0
    todo = [(data, 1)]
    while todo:
        value, level = todo.pop()
        if isinstance(value, dict | list):
            if level > MAX_DEPTH:
                return level
            deepest = max(deepest, level)
            todo.extend((v, level + 1) for v in (value.values() if isinstance(value, dict)
                                                  else value))
    return deepest
