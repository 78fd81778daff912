"""Small statistics helpers (no numpy)."""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import Any


def percentile(values: Sequence[float], p: float) -> float:
    """Linear-interpolated percentile (p in 0..100) of `values`; nan when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100.0
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def latency_ms(values: Sequence[float]) -> dict[str, float]:
    """p50 / p99 / max of latencies given in seconds, in milliseconds."""
    if not values:
        return {"n": 0, "p50_ms": float("nan"), "p99_ms": float("nan"), "max_ms": float("nan")}
    ordered = sorted(values)
    return {
        "n": len(ordered),
        "p50_ms": percentile(ordered, 50) * 1000,
        "p99_ms": percentile(ordered, 99) * 1000,
        "max_ms": ordered[-1] * 1000,
    }


def median_of(runs: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The per-key median over several runs of the same scenario (numbers only; other values
    are taken from the last run; nested dicts are merged the same way)."""
    runs = list(runs)
    if not runs:
        return {}
    out: dict[str, Any] = {}
    for key in runs[-1]:
        values = [run[key] for run in runs if key in run]
        if all(isinstance(v, bool) for v in values):
            out[key] = all(values)
        elif all(isinstance(v, int | float) for v in values):
            numbers = [float(v) for v in values if v == v]  # drops nan
            out[key] = statistics.median(numbers) if numbers else float("nan")
        elif all(isinstance(v, Mapping) for v in values):
            out[key] = median_of(values)
        else:
            out[key] = values[-1]
    return out


def max_in_window(times: Sequence[float], window: float) -> int:
    """The largest number of `times` that fall in any half-open interval of length `window`."""
    ordered = sorted(times)
    best = 0
    start = 0
    for end, t in enumerate(ordered):
        while ordered[start] <= t - window:
            start += 1
        best = max(best, end - start + 1)
    return best
