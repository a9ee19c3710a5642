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


def learning_differences(run_dir: Path, metrics: Sequence[str], *, n_resamples: int = 10000,
                         seed: int = 0) -> list[Difference]:
    """Paired differences last eval − first eval (step 0), one per metric."""
    steps = eval_steps(run_dir)
    if len(steps) < 2 or steps[0] != 0:
        raise UserError(f"{run_dir}: needs samples_step0.jsonl and a later samples_step<N>.jsonl, found steps {steps}")
    first, last = (read_jsonl(Path(run_dir) / f"samples_step{s}.jsonl") for s in (steps[0], steps[-1]))
    ks = sorted({int(m.split("@")[1]) for m in metrics if "@" in m})
    return compare_scores(problem_scores(first, ks), problem_scores(last, ks), metrics,
                          n_resamples=n_resamples, seed=seed)


def learned(differences: Sequence[Difference], alpha: float = 0.01) -> bool:
    """Every metric rose, with paired bootstrap p < alpha."""
    return bool(differences) and all(d.diff > 0 and d.p_value < alpha for d in differences)
