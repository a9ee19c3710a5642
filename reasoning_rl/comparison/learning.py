"""Did a run learn? Its first in-training evaluation against its last, problem by problem.

Both evaluations sample the same held-out problems with the same seed, so the paired bootstrap of
`comparison.stats` applies: per-problem difficulty cancels and only the change of the model is left.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from reasoning_rl.comparison.stats import Difference, compare_scores, problem_scores
from reasoning_rl.errors import UserError
from reasoning_rl.tracking.run_dir import read_jsonl

_STEP_FILE = re.compile(r"samples_step(\d+)\.jsonl")


def eval_steps(run_dir: Path) -> list[int]:
    """The steps at which the run kept its in-training evaluation samples, in order."""
    return sorted(int(m.group(1)) for p in Path(run_dir).iterdir() if (m := _STEP_FILE.fullmatch(p.name)))


def learning_differences(run_dir: Path, metrics: Sequence[str], *, baseline: Path | None = None,
                         n_resamples: int = 10000, seed: int = 0) -> list[Difference]:
    """Paired differences last eval − first eval (step 0), one per metric.

    `baseline`: the base model's samples.jsonl from an evaluate run with the same eval set, seed and
    generation, for a run trained with eval.at_start=false; it must hold the same problems.
    """
    run_dir = Path(run_dir)
    steps = eval_steps(run_dir)
    if baseline is None and (len(steps) < 2 or steps[0] != 0):
        raise UserError(f"{run_dir}: needs samples_step0.jsonl and a later samples_step<N>.jsonl, found steps {steps}")
    if not steps:
        raise UserError(f"{run_dir}: no samples_step<N>.jsonl to compare with {baseline}")
    last = read_jsonl(run_dir / f"samples_step{steps[-1]}.jsonl")
    first = read_jsonl(run_dir / f"samples_step{steps[0]}.jsonl") if baseline is None else read_jsonl(Path(baseline))
    if baseline is not None and sorted(str(r["id"]) for r in first) != sorted(str(r["id"]) for r in last):
        raise UserError(f"{baseline} and {run_dir} evaluated different problems: not a paired comparison")
    ks = sorted({int(m.split("@")[1]) for m in metrics if "@" in m})
    return compare_scores(problem_scores(first, ks), problem_scores(last, ks), metrics,
                          n_resamples=n_resamples, seed=seed)


def learned(differences: Sequence[Difference], alpha: float = 0.01) -> bool:
    """Every metric rose, with paired bootstrap p < alpha."""
    return bool(differences) and all(d.diff > 0 and d.p_value < alpha for d in differences)
