"""Is run B better than baseline A? Per-problem scores from samples.jsonl, then a bootstrap over problems.

Same problem ids in both runs: paired bootstrap (metrics.paired_bootstrap), so per-problem
difficulty cancels. Different problem sets: the two means are resampled independently
(`unpaired_bootstrap`), which is wider, and compare warns.

p-values are two-sided and come from the bootstrap itself (Efron & Tibshirani 1993, ch. 16):
the bootstrap distribution of the difference, shifted to mean 0, stands in for its distribution
under "no difference"; p = (1 + #{|d* - d| >= |d|}) / (1 + resamples). Identical runs give
d = 0 and p = 1.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from reasoning_rl.evaluation import score_records
from reasoning_rl.metrics import paired_bootstrap


@dataclass
class Difference:
    metric: str
    baseline: float
    value: float
    diff: float  # value - baseline
    ci_low: float
    ci_high: float
    p_value: float
    paired: bool
    n_baseline: int
    n: int


def problem_scores(records: Sequence[Mapping[str, Any]], ks: Sequence[int],
                   estimator: str = "subsets") -> dict[str, dict[str, float]]:
    """metric -> {problem id: score}, scored exactly as the run's own evaluation scored them."""
    n = min((len(r["correct"]) for r in records), default=0)
    ks = [k for k in ks if k <= n]
    ids = [str(r["id"]) for r in records]
    return {metric: dict(zip(ids, values)) for metric, values in score_records(records, ks, estimator).items()}


def unpaired_bootstrap(a: Sequence[float], b: Sequence[float], *, n_resamples: int = 10000,
                       confidence: float = 0.95, seed: int = 0) -> dict[str, float]:
    """mean(b) - mean(a) for two independent samples of problems: each side resampled on its own."""
    a_values, b_values = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a_values.size == 0 or b_values.size == 0:
        raise ValueError("both runs need at least one problem")
    rng = np.random.default_rng(seed)
    diffs = (b_values[rng.integers(0, b_values.size, (n_resamples, b_values.size))].mean(axis=1)
             - a_values[rng.integers(0, a_values.size, (n_resamples, a_values.size))].mean(axis=1))
    diff = float(b_values.mean() - a_values.mean())
    tail = (1 - confidence) / 2
    low, high = np.quantile(diffs, [tail, 1 - tail])
    extreme = int(np.count_nonzero(np.abs(diffs - diff) >= abs(diff)))
    return {"diff": diff, "ci_low": float(low), "ci_high": float(high),
            "p_value": (1 + extreme) / (1 + n_resamples)}


def compare_scores(baseline: Mapping[str, Mapping[str, float]], other: Mapping[str, Mapping[str, float]],
                   metrics: Sequence[str], *, n_resamples: int = 10000, seed: int = 0) -> list[Difference]:
    """One Difference per metric both runs have; paired when both scored the same problem ids."""
    out = []
    for metric in metrics:
        if metric not in baseline or metric not in other:
            continue
        a, b = baseline[metric], other[metric]
        paired = set(a) == set(b)
        if paired:
            ids = list(a)
            result = paired_bootstrap([a[i] for i in ids], [b[i] for i in ids], n_resamples=n_resamples, seed=seed)
        else:
            result = unpaired_bootstrap(list(a.values()), list(b.values()), n_resamples=n_resamples, seed=seed)
        out.append(Difference(
            metric=metric, baseline=float(np.mean(list(a.values()))), value=float(np.mean(list(b.values()))),
            diff=result["diff"], ci_low=result["ci_low"], ci_high=result["ci_high"], p_value=result["p_value"],
            paired=paired, n_baseline=len(a), n=len(b),
        ))
    return out
