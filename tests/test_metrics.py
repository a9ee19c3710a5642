"""Estimators against brute-force enumeration of K-subsets; bootstrap behaviour on simple data."""

from __future__ import annotations

import itertools
import math
import random
import time
from collections import Counter

import numpy as np
import pytest

from reasoning_rl.metrics import (
    MODES,
    bootstrap_ci,
    compute_problem_scores,
    estimators,
    maj_at_k,
    majority_correct_at_k,
    paired_bootstrap,
    pass_at_k,
    summarize,
    validate_ks,
)

# "A" and sometimes "a" are correct (two spellings of one right answer); None is unparsable.
ALPHABET = ["A", "B", "a", "C"]
CORRECT_ANSWERS = {"A", "a"}


def vote_credit(answers, correct, idx):
    """Majority vote over the samples idx, ties split evenly, written independently of the package."""
    counts = Counter(answers[i] for i in idx if answers[i] is not None)
    if not counts:
        return 0.0
    top = max(counts.values())
    tied = [answer for answer, count in counts.items() if count == top]
    is_correct = {answers[i]: correct[i] for i in idx}
    return sum(is_correct[answer] for answer in tied) / len(tied)


def brute_force(answers, correct, k):
    subsets = list(itertools.combinations(range(len(correct)), k))
    return {
        "pass": np.mean([any(correct[i] for i in s) for s in subsets]),
        "maj": np.mean([vote_credit(answers, correct, s) for s in subsets]),
        "majority_correct": np.mean([sum(correct[i] for i in s) > k / 2 for s in subsets]),
    }


def random_problem(rng: random.Random, n: int):
    alphabet = ALPHABET[: rng.randint(1, len(ALPHABET))] + [None]
    answers = [rng.choice(alphabet) for _ in range(n)]
    correct = [answer in CORRECT_ANSWERS for answer in answers]
    return answers, correct


CASES = [(n, seed) for n in range(1, 10) for seed in range(6)]


@pytest.mark.parametrize("n,seed", CASES)
def test_estimators_match_brute_force(n, seed):
    rng = random.Random(1000 * n + seed)
    answers, correct = random_problem(rng, n)
    c = sum(correct)
    for k in range(1, n + 1):
        expected = brute_force(answers, correct, k)
        assert pass_at_k(n, c, k) == pytest.approx(expected["pass"], abs=1e-12)
        assert majority_correct_at_k(n, c, k) == pytest.approx(expected["majority_correct"], abs=1e-12)
        assert maj_at_k(answers, correct, k) == pytest.approx(expected["maj"], abs=1e-12)


@pytest.mark.parametrize("n,seed", CASES)
def test_first_k_mode_scores_the_first_k_samples(n, seed):
    rng = random.Random(7 + 1000 * n + seed)
    answers, correct = random_problem(rng, n)
    scores = compute_problem_scores(answers, correct, range(1, n + 1), mode="first_k")
    for k in range(1, n + 1):
        assert scores[f"pass@{k}"] == float(any(correct[:k]))
        assert scores[f"maj@{k}"] == pytest.approx(vote_credit(answers, correct, range(k)))
        assert scores[f"majority_correct@{k}"] == float(sum(correct[:k]) > k / 2)


@pytest.mark.parametrize("n,seed", CASES)
def test_modes_agree_when_k_is_n(n, seed):
    rng = random.Random(13 + 1000 * n + seed)
    answers, correct = random_problem(rng, n)
    subsets = compute_problem_scores(answers, correct, [n], mode="subsets")
    first_k = compute_problem_scores(answers, correct, [n], mode="first_k")
    assert subsets.keys() == first_k.keys() == {f"pass@{n}", f"maj@{n}", f"majority_correct@{n}"}
    for key in subsets:
        assert subsets[key] == pytest.approx(first_k[key], abs=1e-12)


def test_subsets_mode_uses_the_estimators():
    answers = ["A", "B", "A", None, "B", "C"]
    correct = [a == "A" for a in answers]
    scores = compute_problem_scores(answers, correct, [4, 1, 4])
    assert list(scores) == ["pass@1", "maj@1", "majority_correct@1", "pass@4", "maj@4", "majority_correct@4"]
    assert scores["pass@4"] == pass_at_k(6, 2, 4)
    assert scores["maj@4"] == maj_at_k(answers, correct, 4)
    assert scores["majority_correct@4"] == majority_correct_at_k(6, 2, 4)


def test_hand_checked_cases():
    assert pass_at_k(8, 0, 8) == 0.0
    assert pass_at_k(8, 1, 1) == 0.125
    assert pass_at_k(8, 8, 1) == 1.0
    assert pass_at_k(4, 1, 2) == pytest.approx(0.5)  # 3 of the 6 pairs hold the correct sample
    assert majority_correct_at_k(8, 4, 8) == 0.0  # 4 of 8 is not more than half
    assert majority_correct_at_k(8, 5, 8) == 1.0
    assert majority_correct_at_k(3, 2, 2) == pytest.approx(1 / 3)  # only the pair of both correct ones
    # A one-one tie between a right and a wrong answer is worth half.
    assert maj_at_k(["A", "B"], [True, False], 2) == 0.5
    # Two of three singles are right; with K=3 all three tie.
    assert maj_at_k(["A", "a", "B"], [True, True, False], 3) == pytest.approx(2 / 3)
    # Unparsable answers don't vote: the lone "B" wins over two Nones.
    assert maj_at_k([None, None, "B"], [False, False, False], 3) == 0.0
    assert maj_at_k([None, None, "A"], [False, False, True], 3) == 1.0
    assert maj_at_k([None, None], [False, False], 1) == 0.0
    # K=1 Maj@1 is plain accuracy.
    assert maj_at_k(["A", "B", "B", None], [True, False, False, False], 1) == pytest.approx(0.25)


def test_maj_at_k_is_fast_and_exact_with_many_distinct_answers():
    rng = random.Random(0)
    answers = [rng.choice(["A", "B", None]) if i % 2 else f"junk{i}" for i in range(64)]
    correct = [a == "A" for a in answers]
    start = time.perf_counter()
    values = [maj_at_k(answers, correct, k) for k in (1, 2, 4, 8, 16, 32, 64)]
    assert time.perf_counter() - start < 2.0
    assert all(0.0 <= v <= 1.0 for v in values)
    assert values[0] == pytest.approx(sum(correct) / 64)
    assert values[-1] == vote_credit(answers, correct, range(64))


def test_monte_carlo_fallback_is_close_and_repeatable(monkeypatch):
    rng = random.Random(3)
    answers, correct = random_problem(rng, 12)
    exact = maj_at_k(answers, correct, 5)
    monkeypatch.setattr(estimators, "_MAX_EXACT_COMB", 0)
    approx = maj_at_k(answers, correct, 5)
    assert approx == pytest.approx(exact, abs=0.02)
    assert maj_at_k(answers, correct, 5) == approx


@pytest.mark.parametrize(
    "call",
    [
        lambda: pass_at_k(4, 1, 5),
        lambda: pass_at_k(0, 0, 1),
        lambda: pass_at_k(4, 1, 0),
        lambda: pass_at_k(4, 5, 2),
        lambda: pass_at_k(4, -1, 2),
        lambda: majority_correct_at_k(4, 1, 5),
        lambda: maj_at_k(["A"], [True], 2),
        lambda: maj_at_k([], [], 1),
        lambda: maj_at_k(["A", "B"], [True], 1),
        lambda: compute_problem_scores(["A"], [True], [2]),
        lambda: compute_problem_scores([], [], [1]),
        lambda: compute_problem_scores(["A"], [True], [1], mode="best_of"),
        lambda: compute_problem_scores(["A", "B"], [True], [1]),
    ],
)
def test_invalid_input_raises(call):
    with pytest.raises(ValueError):
        call()


def test_modes_constant():
    assert MODES == ("subsets", "first_k")


def test_validate_ks():
    assert validate_ks([4, 1, 4, np.int64(2)], 8) == [1, 2, 4]
    with pytest.raises(ValueError, match=r"^eval.ks contains K=16 > eval.num_samples=8$"):
        validate_ks([1, 16], 8, ks_name="eval.ks", n_name="eval.num_samples")
    with pytest.raises(ValueError, match="K=0"):
        validate_ks([0, 1], 8)
    with pytest.raises(ValueError, match="empty"):
        validate_ks([], 8)
    with pytest.raises(ValueError, match="integers"):
        validate_ks([1.5], 8)


# --- bootstrap ---------------------------------------------------------------------------------


def test_bootstrap_ci_contains_mean_and_narrows_with_more_problems():
    rng = np.random.default_rng(0)
    small = rng.random(50)
    low, high = bootstrap_ci(small)
    assert low < small.mean() < high
    pattern = np.array([0.0, 1.0, 1.0, 0.0, 1.0])
    narrow = bootstrap_ci(np.tile(pattern, 400))
    wide = bootstrap_ci(np.tile(pattern, 10))
    assert narrow[0] < 0.6 < narrow[1]
    assert (narrow[1] - narrow[0]) < (wide[1] - wide[0]) / 3


def test_bootstrap_ci_is_deterministic_for_a_seed():
    values = np.random.default_rng(1).random(40)
    assert bootstrap_ci(values, seed=5) == bootstrap_ci(values, seed=5)
    assert bootstrap_ci(values, seed=5) != bootstrap_ci(values, seed=6)


def test_bootstrap_ci_edge_cases():
    assert bootstrap_ci([0.3] * 25) == (0.3, 0.3)
    assert bootstrap_ci([0.7]) == (0.7, 0.7)
    with pytest.raises(ValueError):
        bootstrap_ci([])
    with pytest.raises(ValueError):
        bootstrap_ci([0.1, float("nan")])
    with pytest.raises(ValueError):
        bootstrap_ci([0.1, 0.2], confidence=1.5)


def test_bootstrap_ci_matches_the_normal_interval_for_a_large_sample():
    # For a mean of 2000 normal draws the 95% interval is close to mean +- 1.96 * sd / sqrt(n).
    values = np.random.default_rng(6).normal(size=2000)
    low, high = bootstrap_ci(values, confidence=0.95)
    half_width = 1.959964 * values.std(ddof=1) / np.sqrt(len(values))
    assert (high - low) / (2 * half_width) == pytest.approx(1.0, abs=0.05)
    assert (low + high) / 2 == pytest.approx(values.mean(), abs=0.1 * half_width)


def test_summarize_fields_and_shared_resamples():
    rng = np.random.default_rng(3)
    a = rng.random(60)
    out = summarize({"pass@1": a, "copy": a.copy(), "complement": 1.0 - a}, seed=9)
    assert set(out) == {"pass@1", "copy", "complement"}
    for stats in out.values():
        assert set(stats) == {"mean", "ci_low", "ci_high", "n"}
        assert stats["n"] == 60
        assert stats["ci_low"] <= stats["mean"] <= stats["ci_high"]
    assert out["pass@1"]["mean"] == pytest.approx(a.mean())
    assert (out["pass@1"]["ci_low"], out["pass@1"]["ci_high"]) == bootstrap_ci(a, seed=9)
    assert out["copy"] == out["pass@1"]
    # Only shared resample indices make the complement's interval the mirror image.
    assert out["complement"]["ci_low"] == pytest.approx(1.0 - out["pass@1"]["ci_high"])
    assert out["complement"]["ci_high"] == pytest.approx(1.0 - out["pass@1"]["ci_low"])
    assert summarize({}) == {}
    with pytest.raises(ValueError):
        summarize({"x": [1.0, 0.0], "y": [1.0]})


def test_paired_bootstrap_identical_runs():
    a = np.random.default_rng(4).random(30)
    out = paired_bootstrap(a, a.copy())
    assert out == {"diff": 0.0, "ci_low": 0.0, "ci_high": 0.0, "p_value": 1.0, "n": 30}


def test_paired_bootstrap_detects_a_strict_improvement():
    a = np.zeros(200)
    a[:80] = 1.0
    b = a.copy()
    b[80:110] = 1.0  # b solves all of a's problems and 30 more
    better = paired_bootstrap(a, b, n_resamples=2000)
    assert better["diff"] == pytest.approx(0.15)
    assert better["ci_low"] >= 0.0 and better["ci_low"] < better["diff"] < better["ci_high"]
    assert better["p_value"] < 0.01
    worse = paired_bootstrap(b, a, n_resamples=2000)
    assert worse["diff"] == pytest.approx(-0.15) and worse["ci_high"] <= 0.0
    assert worse["p_value"] == better["p_value"]


def test_paired_bootstrap_noise_is_not_significant():
    rng = np.random.default_rng(5)
    a = (rng.random(100) < 0.5).astype(float)
    b = a.copy()
    wrong, right = np.flatnonzero(a == 0.0), np.flatnonzero(a == 1.0)
    b[wrong[:3]], b[right[:2]] = 1.0, 0.0  # 3 problems gained, 2 lost: noise
    out = paired_bootstrap(a, b, n_resamples=2000)
    assert out["diff"] == pytest.approx(0.01)
    assert out["ci_low"] < 0.0 < out["ci_high"]
    assert out["p_value"] > 0.2
    with pytest.raises(ValueError):
        paired_bootstrap([1.0, 0.0], [1.0])


# --- maj@K's exact DP against the one it replaced, and N = 256 (bench/maj_at_k.py times them) -----


def _grouped(answers, correct):
    codes, ok = estimators._group(answers, correct)
    return estimators._votes(codes, len(ok)), ok, int((codes < 0).sum())


@pytest.mark.parametrize("seed", range(40))
def test_maj_at_k_exact_equals_the_previous_dp(seed):
    from bench.maj_at_k import old_maj_at_k_exact

    rng = random.Random(seed)
    n, groups = rng.randint(1, 40), rng.randint(1, 12)
    answers = [rng.choice([None, *(f"g{i}" for i in range(groups))]) for _ in range(n)]
    right = set(rng.sample([f"g{i}" for i in range(groups)], rng.randint(0, min(3, groups))))
    correct = [a in right for a in answers]
    sizes, ok, n_none = _grouped(answers, correct)
    for k in range(1, n + 1):
        assert estimators._maj_at_k_exact(sizes, ok, n_none, k) == pytest.approx(
            old_maj_at_k_exact(sizes, ok, n_none, k), abs=1e-12), k


def test_maj_at_k_exact_at_256_samples_equals_the_previous_dp():
    from bench.maj_at_k import adversarial_problems, old_maj_at_k_exact, realistic_problem

    problems = [realistic_problem(seed) for seed in range(3)] + [adversarial_problems()["128 pairs, half correct"]]
    for answers, correct in problems:
        sizes, ok, n_none = _grouped(answers, correct)
        for k in (1, 2, 4, 8, 16, 32, 64, 128, 256):
            new, old = estimators._maj_at_k_exact(sizes, ok, n_none, k), old_maj_at_k_exact(sizes, ok, n_none, k)
            assert abs(new - old) <= 1e-9, (k, new, old)


def test_maj_at_k_symmetric_cases_at_256_samples():
    # Known by symmetry: all-distinct answers tie at one vote each, so a K-subset scores its share of
    # correct ones, mean c/N for every K; 128 pairs half correct: correct and wrong swap places, 1/2.
    for c in (0, 1, 77, 128, 256):
        answers, correct = [f"a{i}" for i in range(256)], [i < c for i in range(256)]
        for k in (1, 8, 64, 256):
            assert maj_at_k(answers, correct, k) == pytest.approx(c / 256, abs=1e-12)
    pairs = [f"a{i // 2}" for i in range(256)]
    for k in (2, 16, 128, 256):
        assert maj_at_k(pairs, [(i // 2) % 2 == 0 for i in range(256)], k) == pytest.approx(0.5, abs=1e-12)
    # One answer right 3 times against 253 distinct wrong ones: it wins any subset holding two of the three.
    answers = ["right"] * 3 + [f"w{i}" for i in range(253)]
    correct = [True] * 3 + [False] * 253
    k = 10
    two_or_more = sum(math.comb(3, x) * math.comb(253, k - x) for x in (2, 3)) / math.comb(256, k)
    one = 3 * math.comb(253, k - 1) / math.comb(256, k) / k  # a 10-way tie at one vote each
    assert maj_at_k(answers, correct, k) == pytest.approx(two_or_more + one, abs=1e-12)


def test_256_samples_with_power_of_two_ks_pass_the_config_check():
    from reasoning_rl.errors import ConfigError
    from reasoning_rl.evaluation import check_eval_config

    ks = [2**i for i in range(9)]
    assert check_eval_config({"num_samples": 256, "ks": ks}) == ks
    assert check_eval_config({"num_samples": 256, "ks": [100, 3, 256]}) == [3, 100, 256]
    with pytest.raises(ConfigError, match="K=512"):
        check_eval_config({"num_samples": 256, "ks": [*ks, 512]})
    answers = [None if i % 7 == 0 else f"x{i % 23}" for i in range(256)]
    correct = [a == "x5" for a in answers]
    scores = compute_problem_scores(answers, correct, ks)
    assert scores["pass@256"] == 1.0 and scores["pass@1"] == pytest.approx(sum(correct) / 256)
    assert scores["maj@256"] == vote_credit(answers, correct, range(256))
    assert all(0.0 <= v <= 1.0 for v in scores.values())
