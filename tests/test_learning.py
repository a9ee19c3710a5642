"""Every algorithm learns: each learn_* preset, at CI size, raises held-out pass@1 and majority_correct@8
over its own step-0 evaluation with paired bootstrap p < 0.01, on two seeds; and the same check fails
when learning is switched off (learning rate 0).

CI size: 6 optimizer steps (ORPO: one round of 6), evaluations on 32 of the presets' held-out problems
at step 0 and at the end only. About 3 minutes per run on 2 CPU cores. `pytest -m learning`.
"""

from __future__ import annotations

import json
import os

import pytest

from reasoning_rl.comparison.learning import learned, learning_differences
from tests.helpers import run_job

pytestmark = [pytest.mark.learning, pytest.mark.timeout(900)]

METRICS = ["pass@1", "majority_correct@8"]
CI_SIZE = ["eval.limit=32", "eval.every_steps=0", "hparams.max_steps=6", "checkpoint.every_steps=100", "logger=none"]
PER_ALGORITHM = {"orpo": ["algorithm.rounds=1"]}


def train(algorithm: str, seed: int, run_dir, *extra: str):
    result = run_job("train", f"experiment=learn_{algorithm}", f"seed={seed}", *CI_SIZE,
                     *PER_ALGORITHM.get(algorithm, []), *extra, f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    differences = learning_differences(run_dir, METRICS)
    record = {"algorithm": algorithm, "seed": seed, "extra": list(extra),
              "seconds": _wall_seconds(run_dir), **{d.metric: vars(d) for d in differences}}
    if os.environ.get("LEARNING_RESULTS"):  # docs/learning.md's CI-size table is collected from here
        with open(os.environ["LEARNING_RESULTS"], "a") as f:
            f.write(json.dumps(record) + "\n")
    return differences


def _wall_seconds(run_dir) -> float:
    """From the job's start (provenance.json is written first) to its last logged value."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return rows[-1]["time"] - (run_dir / "provenance.json").stat().st_mtime


def _explain(differences) -> str:
    return "; ".join(f"{d.metric}: {d.baseline:.3f} -> {d.value:.3f} (p={d.p_value:.4f})" for d in differences)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("algorithm", ["sft", "orpo", "grpo", "ppo", "trpo"])
def test_preset_learns(algorithm, seed, tmp_path):
    differences = train(algorithm, seed, tmp_path / "run")
    assert learned(differences, alpha=0.01), _explain(differences)


def test_check_fails_when_learning_is_off(tmp_path):
    """Learning rate 0: the policy never moves, so the same check must not pass (step 0 and the end
    sample the same model with the same seed: every difference is 0)."""
    differences = train("ppo", 0, tmp_path / "run", "hparams.learning_rate=0", "hparams.max_steps=3")
    assert not learned(differences, alpha=0.01), _explain(differences)
    assert all(abs(d.diff) < 0.05 for d in differences), _explain(differences)
