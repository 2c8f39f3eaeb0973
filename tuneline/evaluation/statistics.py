"""Is a difference real? Paired bootstrap confidence intervals over per-example scores.

Both models answer the same examples, so the scores are paired: resampling examples (not each
model's scores independently) keeps the per-example correlation and gives tighter, honest
intervals. The interval is the percentile interval of the resampled statistic difference.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from tuneline.errors import EvaluationError

__all__ = ["BootstrapResult", "PairedDifference", "compare_paired", "paired_bootstrap"]

# Resampled index matrices are built in chunks of at most this many cells (~64 MiB of int64).
_MAX_CELLS = 8_000_000


class BootstrapResult(NamedTuple):
    delta: float
    low: float
    high: float


class PairedDifference(NamedTuple):
    """``a - b`` with its interval; ``low``/``high`` are None when not ``called``."""

    delta: float
    low: float | None
    high: float | None
    n: int
    called: bool


def _statistic(values: np.ndarray, percentile: float | None) -> np.ndarray:
    if percentile is None:
        return values.mean(axis=-1)
    return np.percentile(values, percentile, axis=-1)


def _as_pair(
    a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.ndim != 1 or x.shape != y.shape:
        raise EvaluationError(
            f"paired scores need two 1-D arrays of one length, got shapes {x.shape} and {y.shape}"
        )
    if x.size == 0:
        raise EvaluationError("paired scores are empty: there is nothing to compare")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise EvaluationError("paired scores contain NaN or infinite values")
    return x, y


def paired_bootstrap(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    *,
    percentile: float | None = None,
) -> BootstrapResult:
    """``stat(a) - stat(b)`` and its paired-bootstrap percentile interval.

    ``stat`` is the mean, or the given percentile (0-100) of each model's scores (latency p95).
    The same ``seed`` gives the same interval.
    """
    if not 0 < confidence < 1:
        raise EvaluationError(f"confidence must be between 0 and 1, got {confidence}")
    if n_resamples < 1:
        raise EvaluationError(f"n_resamples must be at least 1, got {n_resamples}")
    x, y = _as_pair(a, b)
    n = x.size
    delta = float(_statistic(x, percentile) - _statistic(y, percentile))
    rng = np.random.default_rng(seed)
    deltas = np.empty(n_resamples, dtype=np.float64)
    rows = max(1, _MAX_CELLS // n)
    diff = x - y if percentile is None else None
    for start in range(0, n_resamples, rows):
        stop = min(n_resamples, start + rows)
        idx = rng.integers(0, n, size=(stop - start, n))
        if diff is not None:
            # The mean of differences equals the difference of means; one gather instead of two.
            deltas[start:stop] = diff[idx].mean(axis=1)
        else:
            deltas[start:stop] = _statistic(x[idx], percentile) - _statistic(y[idx], percentile)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(deltas, [tail, 1.0 - tail])
    # Float noise can put a degenerate interval a hair off its point estimate; keep low <= delta <= high.
    return BootstrapResult(delta, float(min(low, delta)), float(max(high, delta)))


def compare_paired(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    *,
    min_examples: int,
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    percentile: float | None = None,
) -> PairedDifference:
    """:func:`paired_bootstrap`, except that with fewer than ``min_examples`` pairs no interval is
    given and the difference is not called: a handful of examples cannot tell noise from change."""
    x, y = _as_pair(a, b)
    n = int(x.size)
    if n < min_examples:
        delta = float(_statistic(x, percentile) - _statistic(y, percentile))
        return PairedDifference(delta, None, None, n, False)
    result = paired_bootstrap(x, y, n_resamples, seed, confidence, percentile=percentile)
    return PairedDifference(result.delta, result.low, result.high, n, True)
