"""The reference curve of docs/learning.md: a plain TRL GRPOTrainer script on the learn task, with the
settings of `experiment=learn_grpo` and nothing of ours in the training (no run dir, tracker,
checkpoints, config checks, rollout hook). Only the measurement is shared: the held-out evaluation is
our `evaluation.evaluate`, at the same steps, on the same problems, with the same seed, so the two curves
are measured alike.

    python -m bench.grpo_bare_learn --out runs/bare_trl_grpo [--seed 0]

Writes metrics.jsonl (eval/* and train/* per step, wall time) and samples_step<N>.jsonl into --out,
which bench/learning_report.py reads like a run dir.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from datasets import Dataset
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback, set_seed
from trl import GRPOConfig, GRPOTrainer

from bench.common import REPO


def learn_config(seed: int):
    """The learn_grpo preset as the train job composes it: the same task, prompt, eval and settings."""
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        return compose("train", overrides=["experiment=learn_grpo", f"seed={seed}", "logger=none"])


class HeldOutEval(TrainerCallback):
    def __init__(self, evaluate_at, out: Path, started: float):
        self.evaluate_at, self.out, self.started = evaluate_at, out, started

    def log(self, step: int, values: dict) -> None:
        with open(self.out / "metrics.jsonl", "a") as f:
            f.write(json.dumps({"step": step, "time": time.time(), **values}) + "\n")

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.evaluate_at(model, 0)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.log(state.global_step, {f"train/{k}": float(v) for k, v in logs.items()
                                         if isinstance(v, (int, float))})

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step % 10 == 0 or state.global_step == args.max_steps:
            self.evaluate_at(model, state.global_step)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    started = time.time()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "metrics.jsonl").unlink(missing_ok=True)
    cfg = learn_config(args.seed)

    from reasoning_rl.data import grader_options, load_problems
    from reasoning_rl.evaluation import evaluate
    from reasoning_rl.generation import build_backend, sampling_params_from_cfg
    from reasoning_rl.grading import get_grader
    from reasoning_rl.models import resolve_model_path
    from reasoning_rl.prompts import apply_chat_template

    train, _ = load_problems(cfg.dataset, cfg.prompt)
    held_out, _ = load_problems({**OmegaConf.to_container(cfg.dataset, resolve=True), "split": "test",
                                 "limit": cfg.eval.limit, "sample": "first"}, cfg.prompt)
    grader = get_grader("reasoning_gym", answer_format=cfg.prompt.answer_format, **grader_options(cfg.dataset))

    def correctness(prompts=None, completions=None, gold=None, **kwargs):  # a bare script's reward
        return [float(grader.is_correct(grader.extract(c[0]["content"]), g)) for c, g in zip(completions, gold)]

    path = resolve_model_path(OmegaConf.to_container(cfg.model, resolve=True))
    tokenizer = AutoTokenizer.from_pretrained(path, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(path, dtype="float32")
    set_seed(args.seed)
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear",
                                             task_type="CAUSAL_LM"))
    prompts = [apply_chat_template(tokenizer, pr.messages) for pr in held_out]

    def evaluate_at(policy, step):
        backend = build_backend(cfg.generation, model=policy, tokenizer=tokenizer)
        sampling = sampling_params_from_cfg(cfg.generation, n=cfg.eval.num_samples, seed=cfg.seed)
        with torch.random.fork_rng():
            result = evaluate(held_out, prompts, backend, grader, eval_cfg=cfg.eval, sampling=sampling,
                              answer_format=cfg.prompt.answer_format, progress=False)
        clock.log(step, result.flat())
        with open(args.out / f"samples_step{step}.jsonl", "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in result.records)

    clock = HeldOutEval(evaluate_at, args.out, started)
    h = cfg.hparams
    config = GRPOConfig(
        output_dir="/tmp/grpo_bare_learn", report_to=[], save_strategy="no", logging_steps=1, use_cpu=True,
        bf16=False, gradient_checkpointing=False, seed=args.seed, data_seed=args.seed, dataloader_num_workers=0,
        learning_rate=h.learning_rate, per_device_train_batch_size=h.per_device_train_batch_size,
        max_steps=h.max_steps, lr_scheduler_type="constant", max_grad_norm=1.0,
        num_generations=8, max_completion_length=cfg.generation.max_new_tokens,
        temperature=cfg.generation.temperature, beta=0.0, log_completions=False,
    )
    rows = [{"prompt": pr.messages, "gold": pr.gold} for pr in train]
    trainer = GRPOTrainer(model=model, reward_funcs=[correctness], args=config, train_dataset=Dataset.from_list(rows),
                          processing_class=tokenizer, callbacks=[clock])
    trainer.train()
    (args.out / "provenance.json").write_text(json.dumps({"started": started, "script": "bench/grpo_bare_learn.py"}))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
