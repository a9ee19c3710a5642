"""PPO and TRPO end to end on the embedded model: training moves the adapter, metrics.jsonl has the eval
curves and each algorithm's own metrics, TRPO stays inside its trust region, and a preempted PPO run
resumes to the same result as an uninterrupted one."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from reasoning_rl.tracking.run_dir import read_jsonl
from tests.helpers import REPO, SHORT_TASK, python_warnings, run_job

# debug=smoke on the short task: 4 sequences per step (1 prompt x 4 completions), 12 new tokens, 2 steps;
# `parsable_answer` gives the advantages signal when all 4 answers are wrong.
SMOKE = ["debug=smoke", *SHORT_TASK, "algorithm.rewards=[correctness,parsable_answer]",
         "algorithm.reward_weights=[1.0,0.5]", "eval.limit=2", "logger=none"]
PPO_SMOKE = ["algorithm=ppo", *SMOKE, "hparams.learning_rate=1e-3"]
TRPO_SMOKE = ["algorithm=trpo", *SMOKE, "algorithm.max_kl=0.005", "algorithm.cg_iters=4",
              "algorithm.fisher_fraction=0.5"]


def rows_with(run_dir, key):
    return [r for r in read_jsonl(run_dir / "metrics.jsonl") if key in r]


def lora_b_norm(path):
    return sum(float(t.abs().sum()) for name, t in load_file(path).items() if "lora_B" in name)


def check_trained_run(run_dir, own_metrics):
    assert json.loads((run_dir / "status.json").read_text())["status"] == "completed"
    # LoRA's B matrices start at zero: non-zero means the policy really moved.
    assert lora_b_norm(run_dir / "adapter" / "adapter_model.safetensors") > 0
    for metric in ("eval/pass@8", "eval/maj@8"):
        assert [r["step"] for r in rows_with(run_dir, metric)] == [0, 1, 2]  # eval.every_steps=1 in smoke
    train = rows_with(run_dir, "train/reward")
    assert [r["step"] for r in train] == [1, 2]
    for metric in ("train/loss", "train/value_loss", "train/kl", "train/explained_variance",
                   "train/completions/mean_length", "train/rewards/parsable_answer/mean", *own_metrics):
        assert all(metric in r for r in train), metric
    assert (run_dir / "summary.json").exists() and (run_dir / "eval_curves.png").stat().st_size > 1000
    return train


@pytest.mark.slow
def test_ppo_smoke_trains_and_logs_curves(tmp_path):
    run_dir = tmp_path / "run"
    result = run_job("train", *PPO_SMOKE, f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert python_warnings(result.stderr) == []
    bars = result.stderr.replace("\r", "\n")
    assert "ppo: 100%" in bars and "eval step 0: 100%" in bars  # the step loop and each evaluation show a bar
    train = check_trained_run(run_dir, ["train/policy_loss", "train/clip_fraction", "train/approx_kl", "train/entropy"])
    assert all(0 <= r["train/clip_fraction"] <= 1 for r in train)


@pytest.mark.slow
def test_trpo_smoke_stays_in_its_trust_region(tmp_path):
    run_dir = tmp_path / "run"
    result = run_job("train", *TRPO_SMOKE, f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert python_warnings(result.stderr) == []
    train = check_trained_run(run_dir, ["train/trust_region_kl", "train/line_search_accepted",
                                        "train/line_search_backtracks", "train/surrogate_improvement"])
    assert all(r["train/trust_region_kl"] <= 0.005 for r in train)
    # The LoRA B check above needs at least one accepted step; accepted steps improve the surrogate.
    accepted = [r for r in train if r["train/line_search_accepted"] == 1]
    assert accepted and all(r["train/surrogate_improvement"] > 0 and r["train/trust_region_kl"] > 0 for r in accepted)


@pytest.mark.slow
def test_preempted_ppo_run_resumes_to_the_same_result(tmp_path):
    sizes = [*PPO_SMOKE, "hparams.max_steps=3", "checkpoint.every_steps=1", "eval.every_steps=0", "eval.limit=1"]
    straight = tmp_path / "straight"
    result = run_job("train", *sizes, f"hydra.run.dir={straight}")
    assert result.returncode == 0, result.stderr[-3000:]
    checkpoint = straight / "checkpoints" / "checkpoint-3"
    assert {"adapter_model.safetensors", "critic.safetensors", "optimizer.pt", "rng.pt", "trainer_state.json",
            "COMPLETE"} <= {p.name for p in checkpoint.iterdir()}

    resumed = tmp_path / "resumed"
    env = {**os.environ, "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "reasoning_rl.train", *sizes, f"hydra.run.dir={resumed}"]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    marker = resumed / "checkpoints" / "checkpoint-1" / "COMPLETE"
    deadline = time.time() + 900
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.5)
    assert marker.exists(), "no checkpoint before the signal"
    proc.send_signal(signal.SIGUSR2)  # what SLURM sends ahead of preemption
    output, _ = proc.communicate(timeout=600)
    assert proc.returncode == 3, output[-3000:]
    assert json.loads((resumed / "status.json").read_text())["status"] == "preempted"
    assert not (resumed / "summary.json").exists()

    result = run_job("train", *sizes, f"hydra.run.dir={resumed}")
    assert result.returncode == 0, result.stderr[-3000:]
    a = load_file(straight / "adapter" / "adapter_model.safetensors")
    b = load_file(resumed / "adapter" / "adapter_model.safetensors")
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    critic_a = load_file(straight / "checkpoints" / "checkpoint-3" / "critic.safetensors")
    critic_b = load_file(resumed / "checkpoints" / "checkpoint-3" / "critic.safetensors")
    assert all(torch.allclose(critic_a[k], critic_b[k], atol=1e-6) for k in critic_a)
    rewards = {r["step"]: r["train/reward"] for r in rows_with(straight, "train/reward")}
    assert {r["step"]: r["train/reward"] for r in rows_with(resumed, "train/reward")} == rewards
    assert sorted(rewards) == [1, 2, 3]
    summary = lambda run: {k: v["mean"] for k, v in json.loads((run / "summary.json").read_text()).items()}  # noqa: E731
    assert summary(resumed) == summary(straight)
