"""Percentiles and number formatting (pure)."""

from __future__ import annotations

import math
from collections.abc import Sequence

PERCENTILES: tuple[float, ...] = (50.0, 90.0, 99.0)


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (as PostgreSQL's ``percentile_disc``): a value that occurred."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def summary(values: Sequence[float]) -> dict[str, float]:
    """p50, p90, p99, max and the count of ``values``."""
    ordered = sorted(values)
    out = {f"p{pct:g}": percentile(ordered, pct) for pct in PERCENTILES}
    out["max"] = ordered[-1] if ordered else math.nan
    out["count"] = float(len(ordered))
    return out


def ratio(ours: float, baseline: float) -> float:
    return ours / baseline if baseline else math.nan


def fmt_rate(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:,.0f}"


def fmt_ms(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    return f"{value:,.1f}" if value < 100 else f"{value:,.0f}"


def fmt_ms_fine(value: float) -> str:
    """Milliseconds with enough digits for sub-millisecond figures (an index lookup)."""
    if math.isnan(value):
        return "n/a"
    if value < 1:
        return f"{value:.3f}"
    if value < 10:
        return f"{value:.2f}"
    return fmt_ms(value)


def fmt_ratio(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    return f"{value:.2f}×" if value >= 0.1 else f"{value:.3f}×"
