"""CPU cost of the exact per-problem estimators at N = 256 samples, every K in 1, 2, 4, …, 256:
the current `_maj_at_k_exact` against the one it replaced (kept below as `old_maj_at_k_exact`), on the
same problems in the same run, and the whole `compute_problem_scores` (pass@K, maj@K,
majority_correct@K) per problem against the goal of 1 s.

    python -m bench.maj_at_k [--small]

Problems: realistic answer distributions (5-40 distinct answers drawn from a Dirichlet, 10 % None,
the correct answer's share from 0 to 0.8, one to three correct spellings) and two adversarial ones
(256 distinct answers, half of them correct; 128 pairs): the old DP's memory grows with
(correct groups) x (wrong groups) x K, so these are where it was slow.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np

from bench.common import goal_text, parser, table, write_result
from reasoning_rl.metrics import estimators

N = 256
KS = [2**i for i in range(9)]  # 1 … 256
GOAL_S = 1.0


def old_maj_at_k_exact(sizes: np.ndarray, ok: np.ndarray, n_none: int, k: int) -> float:
    """The implementation before the big-group DP, verbatim: the reference the tests check the new one against."""
    n = int(sizes.sum()) + n_none
    n_ok = int(ok.sum())
    none_ways = np.array([math.comb(n_none, k - j) for j in range(k + 1)], dtype=float)
    total = 0.0
    for m in range(1, min(k, int(sizes.max(initial=0))) + 1):
        cap = k // m  # no more than this many groups can reach m votes within k draws
        w = np.zeros((k + 1, min(cap, n_ok) + 1, min(cap, len(ok) - n_ok) + 1))
        w[0, 0, 0] = 1.0
        for size, is_ok in zip(sizes, ok):
            new = np.zeros_like(w)
            for x in range(min(size, m) + 1):
                ways = float(math.comb(size, x))
                if x < m:
                    new[x:] += ways * w[: k + 1 - x]
                elif is_ok:
                    new[x:, 1:] += ways * w[: k + 1 - x, :-1]
                else:
                    new[x:, :, 1:] += ways * w[: k + 1 - x, :, :-1]
            w = new
        a = np.arange(w.shape[1])[:, None]
        tied = a + np.arange(w.shape[2])[None, :]
        credit = np.divide(a, tied, out=np.zeros(tied.shape), where=tied > 0)
        total += float(np.einsum("jab,j,ab->", w, none_ways, credit))
    return total / math.comb(n, k)


def realistic_problem(seed: int, n: int = N) -> tuple[list[str | None], list[bool]]:
    """5-40 distinct answers with Dirichlet(0.5) shares, 10 % unparsable, 1-3 correct spellings."""
    rng = np.random.default_rng(seed)
    groups = int(rng.integers(5, 41))
    shares = rng.dirichlet(np.full(groups, 0.5))
    right_share = float(rng.uniform(0, 0.8))
    shares = shares * (1 - right_share) / shares.sum()
    shares[0] += right_share
    spellings = int(rng.integers(1, 4))
    answers = [None if rng.random() < 0.1 else f"x{g}" for g in rng.choice(groups, size=n, p=shares)]
    correct = [a in {f"x{g}" for g in range(spellings)} for a in answers]
    return answers, correct


def adversarial_problems(n: int = N) -> dict[str, tuple[list[str | None], list[bool]]]:
    return {"256 distinct, half correct": ([f"a{i}" for i in range(n)], [i % 2 == 0 for i in range(n)]),
            "128 pairs, half correct": ([f"a{i // 2}" for i in range(n)], [(i // 2) % 2 == 0 for i in range(n)])}


def cpu_seconds(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.process_time()  # CPU of every thread, as the goal counts it
    value = fn()
    return time.process_time() - start, value


def maj_all_ks(exact, answers, correct) -> tuple[float, list[float]]:
    codes, ok = estimators._group(answers, correct)
    sizes, n_none = estimators._votes(codes, len(ok)), int((codes < 0).sum())
    return cpu_seconds(lambda: [exact(sizes, ok, n_none, k) for k in KS])


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    problems = {f"realistic seed {s}": realistic_problem(s) for s in range(5 if args.small else 20)}
    problems.update(adversarial_problems())
    rows, per_problem = [], {}
    for name, (answers, correct) in problems.items():
        new_s, new_values = maj_all_ks(estimators._maj_at_k_exact, answers, correct)
        old_s, old_values = maj_all_ks(old_maj_at_k_exact, answers, correct)
        all_s, _ = cpu_seconds(lambda: estimators.compute_problem_scores(answers, correct, KS))
        diff = max(abs(a - b) for a, b in zip(new_values, old_values))
        per_problem[name] = {"distinct_answers": len({a for a in answers if a is not None}),
                             "none": answers.count(None), "correct": sum(correct),
                             "maj_old_s": old_s, "maj_new_s": new_s, "all_metrics_new_s": all_s,
                             "max_abs_diff": diff}
        rows.append((name, per_problem[name]["distinct_answers"], old_s, new_s, old_s / new_s, all_s, f"{diff:.1e}"))
    total_old = sum(p["maj_old_s"] for p in per_problem.values())
    total_new = sum(p["maj_new_s"] for p in per_problem.values())
    worst_all = max(p["all_metrics_new_s"] for p in per_problem.values())
    worst_diff = max(p["max_abs_diff"] for p in per_problem.values())
    print(f"\nexact estimators at N={N}, K in {KS}: CPU seconds per problem")
    print(table(rows, ["problem", "answers", "maj old s", "maj new s", "old/new", "all metrics s", "|new-old|"]))
    print(f"maj@K, all problems: old {total_old:.2f} s, new {total_new:.2f} s, "
          f"ratio old/new {total_old / total_new:.1f}")
    print(f"slowest problem, pass@K + maj@K + majority_correct@K at every K: {worst_all:.3f} s  "
          f"goal {goal_text(worst_all, GOAL_S, False)}")
    path = write_result("maj_at_k", {
        "sizes": {"n": N, "ks": KS, "problems": len(problems), "small": args.small},
        "per_problem": per_problem,
        "totals": {"maj_old_s": total_old, "maj_new_s": total_new},
        "ratios": {"maj_old_over_new": total_old / total_new},
        "absolute": {"slowest_problem_all_metrics_s": worst_all,
                     "mean_problem_all_metrics_s": float(
                         np.mean([p["all_metrics_new_s"] for p in per_problem.values()]))},
        "max_abs_diff_new_vs_old": worst_diff,
        "goals": {"slowest_problem_all_metrics_s": f"<= {GOAL_S}"},
        "notes": ["CPU time (time.process_time, all threads) of one process, each problem scored once"],
    }, args.out)
    print(f"results: {path}")


if __name__ == "__main__":
    main()
