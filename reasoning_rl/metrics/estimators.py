"""Per-problem Pass@K, Maj@K and majority-correct@K from N >= K samples of one problem.

Mode "subsets" (the default) scores the exact mean of a metric over all C(N, K) ways of picking
K of the N samples. Because the samples are i.i.d., that mean is an unbiased estimate of the
metric on K fresh samples, with less variance than scoring only the first K (Chen et al. 2021).
Mode "first_k" scores exactly the first K samples, as simpler harnesses do.
"""

from __future__ import annotations

import math
import operator
from typing import Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

MODES = ("subsets", "first_k")

# Maj@K's exact sum handles binomial coefficients as floats; past this (N of about 1000) it
# would overflow, so it falls back to Monte Carlo.
_MAX_EXACT_COMB = 1e300
_MC_DRAWS = 20_000
_MC_SEED = 0


def _check_counts(n: int, c: int, k: int) -> None:
    if n < 1:
        raise ValueError(f"need at least one sample, got n={n}")
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= n, got k={k}, n={n}")
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= c <= n, got c={c}, n={n}")


def pass_at_k(n: int, c: int, k: int) -> float:
    """P(at least one of K samples is correct) = 1 - C(n-c, k) / C(n, k), with c of n correct.

    Computed as one ratio of exact integers: Python's int / int rounds correctly, so neither
    cancellation nor overflow can creep in.
    """
    _check_counts(n, c, k)
    total = math.comb(n, k)
    return (total - math.comb(n - c, k)) / total


def majority_correct_at_k(n: int, c: int, k: int) -> float:
    """P(more than half of K samples are correct) = P(X > k/2), X ~ Hypergeom(n, c, k).

    A tie (exactly k/2 correct, k even) does not count: it is not more than half.
    """
    _check_counts(n, c, k)
    hits = sum(math.comb(c, x) * math.comb(n - c, k - x) for x in range(k // 2 + 1, min(c, k) + 1))
    return hits / math.comb(n, k)


def _check_samples(answers: Sequence, correct: Sequence) -> int:
    if len(answers) != len(correct):
        raise ValueError(f"got {len(answers)} answers but {len(correct)} correctness flags")
    if len(correct) < 1:
        raise ValueError("need at least one sample")
    return len(correct)


def _group(answers: Sequence[str | None], correct: Sequence[bool]) -> tuple[np.ndarray, np.ndarray]:
    """Code each sample by its answer's group (-1 for None); a group is correct iff its first sample is."""
    index: dict[str, int] = {}
    ok: list[bool] = []
    codes = []
    for answer, is_correct in zip(answers, correct):
        if answer is None:
            codes.append(-1)
            continue
        if answer not in index:
            index[answer] = len(ok)
            ok.append(bool(is_correct))
        codes.append(index[answer])
    return np.array(codes, dtype=int), np.array(ok, dtype=bool)


def _vote_credit(votes: np.ndarray, ok: np.ndarray) -> float:
    """Majority-vote credit of one set of samples, given the vote count of each answer group.

    Ties are split as a uniformly random tie-break would: (correct tied answers) / (tied answers).
    No votes at all scores 0.
    """
    top = votes.max(initial=0)
    if top == 0:
        return 0.0
    return float(ok[votes == top].mean())


def _votes(codes: np.ndarray, n_groups: int) -> np.ndarray:
    return np.bincount(codes[codes >= 0], minlength=n_groups)


def _maj_at_k_exact(sizes: np.ndarray, ok: np.ndarray, n_none: int, k: int) -> float:
    """Sum of credit * prod_g C(size_g, x_g) / C(n, k) over all group count vectors x with sum k.

    Summed by dynamic programming once per possible top vote count m, over the groups that can
    reach m (size >= m) only: every other group and the None bucket can never reach m, so their
    draws pool into one binomial C(rest, k - j) (Vandermonde). w[j, 0, t] adds up the ways to draw
    j samples from the big groups with none above m and t of them at exactly m; w[j, 1, t] the
    same ways weighted by how many of those t are correct. Credit (correct tied) / (tied) is then
    w[j, 1, t] / t. A group's draws below m convolve along j (a sliding window, one matmul), so a
    step costs O(k * m * k/m) = O(k^2) and the whole sum O(k^2 * sum_g min(size_g, k)), with
    O(k^2 / m) memory: at N = 256, all nine K = 1 … 256 take 0.05-0.3 s (bench/maj_at_k.py). All
    terms are positive, so floats only round (no cancellation): equal to the old DP within 1e-15.
    """
    n = int(sizes.sum()) + n_none
    total = 0.0
    for m in range(1, min(k, int(sizes.max(initial=0))) + 1):
        big = sizes >= m
        rest = n - int(sizes[big].sum())
        t_cap = min(int(big.sum()), k // m)  # no more groups than this can reach m within k draws
        w = np.zeros((k + 1, 2, t_cap + 1))
        w[0, 0, 0] = 1.0
        for size, is_ok in zip(sizes[big].tolist(), ok[big].tolist()):
            below = np.array([math.comb(size, x) for x in range(m - 1, -1, -1)], dtype=float)
            padded = np.concatenate([np.zeros((m - 1, 2, t_cap + 1)), w])
            new = sliding_window_view(padded, m, axis=0) @ below  # x < m draws from this group
            at = float(math.comb(size, m))  # x = m: one more group tied at the top
            new[m:, :, 1:] += at * w[: k + 1 - m, :, :-1]
            if is_ok:
                new[m:, 1, 1:] += at * w[: k + 1 - m, 0, :-1]
            w = new
        rest_ways = np.array([math.comb(rest, k - j) for j in range(k + 1)], dtype=float)
        t = np.arange(t_cap + 1)
        per_tie = np.divide(1.0, t, out=np.zeros(t_cap + 1), where=t > 0)  # t = 0: top is below m
        total += float(rest_ways @ w[:, 1, :] @ per_tie)
    return total / math.comb(n, k)


def _maj_at_k_monte_carlo(codes: np.ndarray, ok: np.ndarray, k: int) -> float:
    """Mean vote credit over _MC_DRAWS random K-subsets (fixed seed, so repeatable); SE <= 0.0036."""
    rng = np.random.default_rng(_MC_SEED)
    draws = (codes[rng.choice(len(codes), size=k, replace=False)] for _ in range(_MC_DRAWS))
    return float(np.mean([_vote_credit(_votes(drawn, len(ok)), ok) for drawn in draws]))


def maj_at_k(answers: Sequence[str | None], correct: Sequence[bool], k: int) -> float:
    """Expected majority-vote accuracy of K samples drawn without replacement from the N given.

    The vote of a K-subset goes to its most frequent answer (None does not vote); it scores 1 if
    that answer is correct. Ties score (correct tied answers) / (tied answers); a subset with no
    answers scores 0. Equal answers are assumed equally correct: each answer's correctness is
    taken from its first sample. Exact (see _maj_at_k_exact) unless the binomial coefficients
    overflow floats (N of about 1000), where it is a seeded Monte Carlo over 20000 subsets.
    """
    n = _check_samples(answers, correct)
    _check_counts(n, 0, k)
    codes, ok = _group(answers, correct)
    if math.comb(n, min(k, n // 2)) > _MAX_EXACT_COMB:
        return _maj_at_k_monte_carlo(codes, ok, k)
    return _maj_at_k_exact(_votes(codes, len(ok)), ok, int((codes < 0).sum()), k)


def validate_ks(ks: Sequence[int], n: int, *, ks_name: str = "ks", n_name: str = "n") -> list[int]:
    """Sorted unique Ks, each in 1..n; the error names the config keys the caller passes."""
    if n < 1:
        raise ValueError(f"{n_name}={n} must be at least 1")
    try:
        unique = sorted({operator.index(k) for k in ks})
    except TypeError:
        raise ValueError(f"{ks_name} must be a list of integers, got {list(ks)!r}") from None
    if not unique:
        raise ValueError(f"{ks_name} is empty: give at least one K")
    if unique[0] < 1:
        raise ValueError(f"{ks_name} contains K={unique[0]} < 1")
    if unique[-1] > n:
        raise ValueError(f"{ks_name} contains K={unique[-1]} > {n_name}={n}")
    return unique


def compute_problem_scores(
    answers: Sequence[str | None], correct: Sequence[bool], ks: Sequence[int], mode: str = "subsets"
) -> dict[str, float]:
    """Scores "pass@K", "maj@K" and "majority_correct@K" of one problem, for each K in ks.

    "subsets" gives the expectations over all K-subsets (pass_at_k, maj_at_k,
    majority_correct_at_k); "first_k" applies the same definitions, same tie rule included, to
    the first K samples only. With K = N both modes agree.
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")
    n = _check_samples(answers, correct)
    n_correct = sum(bool(x) for x in correct)
    codes, ok = _group(answers, correct)
    scores: dict[str, float] = {}
    for k in validate_ks(ks, n):
        if mode == "subsets":
            scores[f"pass@{k}"] = pass_at_k(n, n_correct, k)
            scores[f"maj@{k}"] = maj_at_k(answers, correct, k)
            scores[f"majority_correct@{k}"] = majority_correct_at_k(n, n_correct, k)
        else:
            hits = sum(bool(x) for x in correct[:k])
            scores[f"pass@{k}"] = float(hits > 0)
            scores[f"maj@{k}"] = _vote_credit(_votes(codes[:k], len(ok)), ok)
            scores[f"majority_correct@{k}"] = float(hits > k / 2)
    return scores
