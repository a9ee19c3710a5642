"""Percentile-bootstrap confidence intervals over problems.

Problems are the resampling unit: per-problem scores are already averages over that problem's
samples, and problems are what vary from one benchmark draw to the next.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

# Most index-matrix entries alive at once, so large eval sets don't exhaust memory.
_CHUNK_ENTRIES = 1_000_000


def _as_values(values: Sequence[float], name: str) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence of per-problem values")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return array


def _check_params(n_resamples: int, confidence: float) -> None:
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be at least 1, got {n_resamples}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def _resample_means(rows: np.ndarray, n_resamples: int, seed: int) -> np.ndarray:
    """Bootstrap means of each row of `rows` (metrics x problems): shape (metrics, n_resamples).

    Every row is resampled with the same problem indices, so the intervals of different metrics
    come from the same bootstrap replicates of the benchmark.
    """
    rng = np.random.default_rng(seed)
    n = rows.shape[1]
    chunk = max(1, _CHUNK_ENTRIES // n)
    means = np.empty((rows.shape[0], n_resamples))
    for start in range(0, n_resamples, chunk):
        stop = min(start + chunk, n_resamples)
        idx = rng.integers(0, n, size=(stop - start, n))
        for i, row in enumerate(rows):
            means[i, start:stop] = row[idx].mean(axis=1)
    return means


def _percentiles(means: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    tail = (1.0 - confidence) / 2
    low, high = np.quantile(means, [tail, 1.0 - tail], axis=-1)
    return low, high


def bootstrap_ci(
    values: Sequence[float], *, n_resamples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile-bootstrap interval for the mean of per-problem values.

    The bounds are the (1-confidence)/2 and (1+confidence)/2 quantiles (linear interpolation) of
    the means of n_resamples resamples with replacement. One value gives (v, v).
    """
    _check_params(n_resamples, confidence)
    rows = _as_values(values, "values")[None, :]
    low, high = _percentiles(_resample_means(rows, n_resamples, seed), confidence)
    return float(low[0]), float(high[0])


def summarize(
    per_problem: Mapping[str, Sequence[float]],
    *,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, dict]:
    """name -> {"mean", "ci_low", "ci_high", "n"} for metrics scored on the same problems.

    All metrics share one set of resample indices, so each interval equals what bootstrap_ci
    gives for that metric with the same seed, and intervals of related metrics stay consistent.
    """
    _check_params(n_resamples, confidence)
    if not per_problem:
        return {}
    names = list(per_problem)
    rows = [_as_values(per_problem[name], name) for name in names]
    lengths = {name: len(row) for name, row in zip(names, rows)}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"metrics must cover the same problems; got lengths {lengths}")
    matrix = np.vstack(rows)
    low, high = _percentiles(_resample_means(matrix, n_resamples, seed), confidence)
    return {
        name: {"mean": float(row.mean()), "ci_low": float(lo), "ci_high": float(hi), "n": len(row)}
        for name, row, lo, hi in zip(names, rows, low, high)
    }


def paired_bootstrap(
    a: Sequence[float],
    b: Sequence[float],
    *,
    n_resamples: int = 10000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict:
    """Paired comparison of two runs on the same problems: mean(b - a) with CI and p-value.

    Resampling problems keeps each problem's a and b together, so per-problem difficulty
    cancels. Interval: percentile bootstrap of mean(b - a). Two-sided p-value: shifting the
    bootstrap means by -diff imitates their distribution under H0 (no mean difference), so
    p = (1 + #{|mean* - diff| >= |diff|}) / (1 + n_resamples) (Efron & Tibshirani 1993, ch. 16;
    the +1s count the observed sample, so p is never 0). A single problem gives no evidence
    of variability, so p = 1.0 there.
    """
    _check_params(n_resamples, confidence)
    a_values, b_values = _as_values(a, "a"), _as_values(b, "b")
    if len(a_values) != len(b_values):
        raise ValueError(f"a and b must score the same problems; got {len(a_values)} and {len(b_values)}")
    delta = b_values - a_values
    diff = float(delta.mean())
    means = _resample_means(delta[None, :], n_resamples, seed)
    low, high = _percentiles(means, confidence)
    if len(delta) < 2:
        p_value = 1.0
    else:
        extreme = int(np.count_nonzero(np.abs(means[0] - diff) >= abs(diff)))
        p_value = (1 + extreme) / (1 + n_resamples)
    return {"diff": diff, "ci_low": float(low[0]), "ci_high": float(high[0]), "p_value": p_value, "n": len(delta)}
