"""Small, dependency-free statistics for the report: percentiles and summaries."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0..100) of unsorted values; ``None`` when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return float(ordered[rank - 1])


def summary(values: Iterable[float], scale: float = 1.0, digits: int = 3) -> dict[str, object]:
    """n, p50, p90, p99, max (each multiplied by ``scale``, rounded)."""
    data = sorted(values)
    out: dict[str, object] = {"n": len(data)}
    for name, q in (("p50", 50), ("p90", 90), ("p99", 99), ("max", 100)):
        v = percentile(data, q)
        out[name] = None if v is None else round(v * scale, digits)
    return out


def minus(a: float | None, b: float | None) -> float | None:
    """``a - b`` rounded to three places (an *added* figure: a server's lag less the
    floor's, in ms); ``None`` when either is missing."""
    return None if a is None or b is None else round(a - b, 3)


def median(values: Sequence[float]) -> float | None:
    return percentile(values, 50)
