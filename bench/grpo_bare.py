"""The baseline of bench/grpo_overhead.py: a plain TRL GRPOTrainer script, with what anyone would write
around it and nothing else (no run dir, tracker, checkpoint callback, eval curves, config checks).

Same model file, data, rewards, LoRA and GRPO settings as `python -m reasoning_rl.train algorithm=grpo`
with the overrides bench/grpo_overhead.py passes. Prints one JSON line: the time of each logged step.

    python -m bench.grpo_bare --steps 3 --batch 4 --max-new-tokens 16 --limit 8
    # the short size (experiment=learn_grpo: chain_sum, prompt=short, 2 prompts x 8, beta 0):
    python -m bench.grpo_bare --steps 6 --batch 16 --max-new-tokens 12 --limit 32 --dataset chain_sum \
        --prompt short --num-generations 8 --beta 0 --learning-rate 2e-4 --rewards correctness --weights 1.0
"""

from __future__ import annotations

import argparse
import json
import time

from datasets import Dataset
from omegaconf import OmegaConf
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback, set_seed
from trl import GRPOConfig, GRPOTrainer

from bench.common import REPO


class StepClock(TrainerCallback):
    def __init__(self):
        self.times: list[tuple[int, float]] = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.times.append((state.global_step, time.time()))


def data_configs(dataset: str, prompt: str, seed: int) -> tuple[dict, dict]:
    """conf/dataset/<dataset>.yaml and conf/prompt/<prompt>.yaml as the train job composes them (a data set
    config may build on another one, chain_sum on reasoning_gym)."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=[f"dataset={dataset}", f"prompt={prompt}", f"seed={seed}", "logger=none"])
    return OmegaConf.to_container(cfg.dataset, resolve=True), OmegaConf.to_container(cfg.prompt, resolve=True)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--batch", type=int, required=True)
    p.add_argument("--max-new-tokens", type=int, required=True)
    p.add_argument("--limit", type=int, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dataset", default="gsm8k")
    p.add_argument("--prompt", default="think_answer")
    p.add_argument("--num-generations", type=int, default=4)
    p.add_argument("--beta", type=float, default=0.04)
    p.add_argument("--learning-rate", type=float, default=1e-5)
    p.add_argument("--rewards", default="correctness,format_strict")
    p.add_argument("--weights", default="1.0,0.5")
    args = p.parse_args()

    # The same model file, problems (chat messages + gold) and reward functions as the train job.
    from reasoning_rl.data import grader_options, load_problems
    from reasoning_rl.grading import get_grader, get_reward_funcs
    from reasoning_rl.models import resolve_model_path

    path = resolve_model_path({"name_or_path": "smollm2-135m-instruct", "source": "embedded"})
    dataset_cfg, prompt_cfg = data_configs(args.dataset, args.prompt, args.seed)
    dataset_cfg.update(split="train", limit=args.limit, sample="first")
    problems, grader_name = load_problems(dataset_cfg, prompt_cfg)
    rows = [{"prompt": pr.messages, "gold": pr.gold} for pr in problems]
    grader = get_grader(grader_name, answer_format=prompt_cfg["answer_format"], **grader_options(dataset_cfg))
    rewards = get_reward_funcs(args.rewards.split(","), grader=grader, answer_format=prompt_cfg["answer_format"])

    tokenizer = AutoTokenizer.from_pretrained(path, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(path, dtype="float32")
    set_seed(args.seed)
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear",
                                             task_type="CAUSAL_LM"))
    config = GRPOConfig(
        # bf16 and gradient checkpointing off, as the train job sets them on CPU: GRPOConfig's defaults (both on)
        # made this baseline use half the memory of ours and a different speed, i.e. not the same work.
        output_dir="/tmp/grpo_bare", report_to=[], save_strategy="no", logging_steps=1, use_cpu=True,
        bf16=False, gradient_checkpointing=False,
        seed=args.seed, data_seed=args.seed, dataloader_num_workers=0,
        learning_rate=args.learning_rate, per_device_train_batch_size=args.batch, gradient_accumulation_steps=1,
        max_steps=args.steps, lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0, max_grad_norm=1.0,
        num_generations=args.num_generations, max_completion_length=args.max_new_tokens, temperature=0.7,
        beta=args.beta, loss_type="dapo", epsilon=0.2, scale_rewards="group",
        reward_weights=[float(w) for w in args.weights.split(",")], log_completions=False,
    )
    clock = StepClock()
    trainer = GRPOTrainer(model=model, reward_funcs=rewards, args=config, train_dataset=Dataset.from_list(rows),
                          processing_class=tokenizer, callbacks=[clock])
    trainer.train()
    print(json.dumps({"step_times": clock.times}))


if __name__ == "__main__":
    main()
