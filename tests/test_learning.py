"""Every algorithm learns: each learn_* preset, at CI size, raises held-out pass@1 and majority_correct@8
over the base model with paired bootstrap p < 0.01, on two seeds; and the same check fails when learning
is switched off (learning rate 0).

CI size: 6 optimizer steps (ORPO: one round of 6), one evaluation at the end on 32 of the presets'
held-out problems. The step-0 evaluation is the base model's, the same for every preset at a seed, so
it is measured once per seed by the evaluate job (bit for bit what a run's own step 0 samples:
test_check_fails_when_learning_is_off checks) and the runs train with eval.at_start=false.
`pytest -m learning`, or `-n 2` to run two at a time (tests/conftest.py splits the cores).
"""

from __future__ import annotations

import json
import os

import pytest
from filelock import FileLock

from reasoning_rl.comparison.learning import learned, learning_differences
from tests.helpers import built_once, run_job

pytestmark = [pytest.mark.learning, pytest.mark.timeout(1200)]

METRICS = ["pass@1", "majority_correct@8"]
EVAL = ["eval.limit=32", "eval.ks=[1,8]", "generation.max_new_tokens=12"]  # what the presets evaluate, at CI size
CI_SIZE = [*EVAL, "eval.every_steps=0", "eval.at_start=false", "hparams.max_steps=6",
           "checkpoint.every_steps=100", "logger=none"]
PER_ALGORITHM = {"orpo": ["algorithm.rounds=1"]}


@pytest.fixture(scope="session")
def baseline(tmp_path_factory):
    """seed -> the base model's samples.jsonl on the learn eval set; measured once, also across xdist workers."""
    def samples(seed: int):
        run_dir, result = built_once(tmp_path_factory, f"learn_baseline_seed{seed}", lambda run_dir: run_job(
            "evaluate", "dataset=chain_sum", "prompt=short", "dataset.split=test", "dataset.limit=32", *EVAL[1:],
            f"seed={seed}", "logger=none", f"hydra.run.dir={run_dir}"))
        assert result.returncode == 0, result.stderr[-3000:]
        return run_dir / "samples.jsonl"

    return samples


def train(algorithm: str, seed: int, run_dir, baseline_samples, *extra: str):
    result = run_job("train", f"experiment=learn_{algorithm}", f"seed={seed}", *CI_SIZE,
                     *PER_ALGORITHM.get(algorithm, []), *extra, f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    differences = learning_differences(run_dir, METRICS, baseline=baseline_samples)
    record = {"algorithm": algorithm, "seed": seed, "extra": list(extra),
              "seconds": _wall_seconds(run_dir), **{d.metric: vars(d) for d in differences}}
    if os.environ.get("LEARNING_RESULTS"):  # docs/learning.md's CI-size table is collected from here
        with FileLock(os.environ["LEARNING_RESULTS"] + ".lock"), open(os.environ["LEARNING_RESULTS"], "a") as f:
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
def test_preset_learns(algorithm, seed, tmp_path, baseline):
    differences = train(algorithm, seed, tmp_path / "run", baseline(seed))
    assert learned(differences, alpha=0.01), _explain(differences)


def test_check_fails_when_learning_is_off(tmp_path, baseline):
    """Learning rate 0: the policy never moves, so the same check must not pass (the run's last eval
    samples the base model with the baseline's seed: every difference is 0). This run also evaluates at
    step 0, to show the shared baseline is bit for bit what a run's own step 0 samples."""
    run_dir = tmp_path / "run"
    differences = train("ppo", 0, run_dir, baseline(0), "hparams.learning_rate=0", "hparams.max_steps=2",
                        "eval.at_start=true")
    assert (run_dir / "samples_step0.jsonl").read_text() == baseline(0).read_text()
    assert not learned(differences, alpha=0.01), _explain(differences)
    assert all(abs(d.diff) < 0.05 for d in differences), _explain(differences)
