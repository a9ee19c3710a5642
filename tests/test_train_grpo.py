"""GRPO end to end on the embedded model, preemption + resume, and bad training configs."""

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

# `parsable_answer` beside correctness: a group whose answers are all wrong still has variance, so the
# policy moves at every step.
GRPO_SMOKE = ["algorithm=grpo", "debug=smoke", *SHORT_TASK, "algorithm.rewards=[correctness,parsable_answer]",
              "algorithm.reward_weights=[1.0,0.5]", "hparams.learning_rate=1e-3", "eval.limit=2"]


def eval_rows(run_dir, key="eval/pass@8"):
    return [r for r in read_jsonl(run_dir / "metrics.jsonl") if key in r]


def lora_b_norm(path):
    return sum(float(t.abs().sum()) for name, t in load_file(path).items() if "lora_B" in name)


@pytest.mark.slow
@pytest.mark.parametrize("rollouts,sampler", [("auto", "our HF backend"), ("trl", "TRL's generate")])
def test_grpo_smoke_trains_and_logs_curves(rollouts, sampler, tmp_path):
    run_dir = tmp_path / "run"
    result = run_job("train", *GRPO_SMOKE, f"algorithm.rollouts={rollouts}", f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"GRPO rollouts: {sampler}" in result.stdout + result.stderr  # auto on CPU: ours
    assert python_warnings(result.stderr) == []
    assert json.loads((run_dir / "status.json").read_text())["status"] == "completed"
    # LoRA's B matrices start at zero: non-zero means the optimizer really stepped.
    assert lora_b_norm(run_dir / "adapter" / "adapter_model.safetensors") > 0
    assert len(eval_rows(run_dir)) >= 2 and len(eval_rows(run_dir, "eval/maj@8")) >= 2
    assert [r for r in read_jsonl(run_dir / "metrics.jsonl") if "train/loss" in r]
    assert (run_dir / "eval_curves.png").stat().st_size > 1000
    assert (run_dir / "summary.json").exists() and list((run_dir / "wandb").glob("offline-run-*"))


def final_state(run_dir):
    summary = json.loads((run_dir / "summary.json").read_text())
    last_eval = eval_rows(run_dir)[-1]
    return last_eval["step"], {k: v["mean"] for k, v in summary.items()}


@pytest.mark.slow
def test_preempted_run_resumes_to_the_same_result(tmp_path):
    sizes = [*GRPO_SMOKE, "hparams.max_steps=3", "checkpoint.every_steps=1", "eval.every_steps=0"]
    straight = tmp_path / "straight"
    result = run_job("train", *sizes, f"hydra.run.dir={straight}")
    assert result.returncode == 0, result.stderr[-3000:]

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
    wandb_id = (resumed / "wandb_run_id").read_text()

    result = run_job("train", *sizes, f"hydra.run.dir={resumed}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert (resumed / "wandb_run_id").read_text() == wandb_id
    assert final_state(resumed) == final_state(straight)
    a = load_file(straight / "adapter" / "adapter_model.safetensors")
    b = load_file(resumed / "adapter" / "adapter_model.safetensors")
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    steps = [r["step"] for r in read_jsonl(resumed / "metrics.jsonl") if "train/loss" in r]
    assert sorted(set(steps)) == [1, 2, 3]


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["algorithm.args.num_generations=1"], "num_generations"),
        (["+algorithm.args.no_such_option=1"], "no_such_option"),
        (["algorithm.rewards=[correctness,nope]", "algorithm.reward_weights=[1,1]"], "nope"),
        (["algorithm=nonexistent"], "algorithm"),
        (["peft.r=0"], "peft.r (the LoRA rank) must be an integer >= 1"),
        (["algorithm.rollouts=fast"], "algorithm.rollouts='fast' is not one of ['auto', 'trl', 'ours']"),
    ],
)
def test_bad_training_config_is_one_clear_line(overrides, message, tmp_path):
    result = run_job("train", "debug=smoke", *overrides, f"hydra.run.dir={tmp_path}/run", timeout=300)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    assert message in result.stderr


@pytest.mark.parametrize("rollouts,backend,device,forcing,ours", [
    ("auto", "hf", "cpu", False, True),     # measured faster on CPU (bench/grpo_overhead)
    ("auto", "hf", "cuda", False, False),   # not shown to beat TRL's generate on a GPU
    ("auto", "vllm", "cuda", False, False),  # TRL's colocated engine
    ("trl", "hf", "cpu", False, False),
    ("ours", "hf", "cuda", False, True),
    ("trl", "hf", "cpu", True, True),       # budget forcing can't go through TRL's generate
    ("auto", "hf", "cuda", True, True),
])
def test_which_sampler_grpo_rollouts_use(rollouts, backend, device, forcing, ours):
    from reasoning_rl.algorithms.grpo import samples_with_our_backend
    from reasoning_rl.generation import GenerationSettings

    block = {"backend": backend, "max_new_tokens": 64,
             "budget_forcing": {"enabled": forcing, "max_thinking_tokens": 32, "num_extensions": 1}}
    settings = GenerationSettings.from_cfg(block)
    assert bool(settings.budget_forcing) == forcing
    assert samples_with_our_backend(rollouts, settings, device) is ours


def test_resume_refuses_a_different_config(tmp_path):
    from reasoning_rl.checkpointing import check_resumable
    from reasoning_rl.errors import ConfigError

    base = {"model": {"name_or_path": "m"}, "hparams": {"learning_rate": 1e-5}, "seed": 0,
            "logger": {"mode": "offline"}}
    check_resumable(tmp_path, base)
    check_resumable(tmp_path, {**base, "logger": {"mode": "online"}})  # logging may change
    with pytest.raises(ConfigError, match="hparams.learning_rate"):
        check_resumable(tmp_path, {**base, "hparams": {"learning_rate": 1e-4}})
