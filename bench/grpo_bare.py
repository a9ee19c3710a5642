"""The baseline of bench/grpo_overhead.py: a plain TRL GRPOTrainer script, with what anyone would write
around it and nothing else (no run dir, tracker, checkpoint callback, eval curves, config checks).

Same model file, data, rewards, LoRA and GRPO settings as `python -m reasoning_rl.train algorithm=grpo`
with the overrides bench/grpo_overhead.py passes. Prints one JSON line: the time of each logged step.

    python -m bench.grpo_bare --steps 3 --batch 4 --max-new-tokens 16 --limit 8
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


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--batch", type=int, required=True)
    p.add_argument("--max-new-tokens", type=int, required=True)
    p.add_argument("--limit", type=int, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rewards", default="correctness,format_strict")
    p.add_argument("--weights", default="1.0,0.5")
    args = p.parse_args()

    # The same model file, problems (chat messages + gold) and reward functions as the train job.
    from reasoning_rl.data import load_problems
    from reasoning_rl.grading import get_grader, get_reward_funcs
    from reasoning_rl.models import resolve_model_path

    path = resolve_model_path({"name_or_path": "smollm2-135m-instruct", "source": "embedded"})
    prompt_cfg = OmegaConf.to_container(OmegaConf.load(REPO / "conf" / "prompt" / "think_answer.yaml"))
    dataset_cfg = {"name": "gsm8k", "source": "bundled", "split": "train", "limit": args.limit,
                   "sample": "first", "seed": args.seed, "few_shot": 0}
    problems, _ = load_problems(dataset_cfg, prompt_cfg)
    rows = [{"prompt": pr.messages, "gold": pr.gold} for pr in problems]
    rewards = get_reward_funcs(args.rewards.split(","), grader=get_grader("gsm8k"), answer_format="answer_tag")

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
        learning_rate=1e-5, per_device_train_batch_size=args.batch, gradient_accumulation_steps=1,
        max_steps=args.steps, lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0, max_grad_norm=1.0,
        num_generations=4, max_completion_length=args.max_new_tokens, temperature=0.7, beta=0.04,
        loss_type="dapo", epsilon=0.2, scale_rewards="group",
        reward_weights=[float(w) for w in args.weights.split(",")], log_completions=False,
    )
    clock = StepClock()
    trainer = GRPOTrainer(model=model, reward_funcs=rewards, args=config, train_dataset=Dataset.from_list(rows),
                          processing_class=tokenizer, callbacks=[clock])
    trainer.train()
    print(json.dumps({"step_times": clock.times}))


if __name__ == "__main__":
    main()
