"""GRPO (Shao et al. 2024) through TRL's GRPOTrainer, with rewards from the registry.

For each prompt, `num_generations` completions are sampled and scored by the configured rewards;
each completion's advantage is its reward relative to its group, and the policy takes a clipped
step with a KL penalty (`beta`) to the reference model (the base model: LoRA adapter disabled).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from datasets import Dataset
from omegaconf import DictConfig
from trl import GRPOConfig, GRPOTrainer

from reasoning_rl.algorithms.common import TrainContext, problem_rows, trainer_kwargs
from reasoning_rl.errors import ConfigError
from reasoning_rl.grading import REWARDS, get_reward_funcs


def check_config(cfg: DictConfig) -> None:
    algo = cfg.algorithm
    if algo.args.get("num_generations", 8) < 2:
        raise ConfigError("algorithm.args.num_generations must be >= 2: GRPO's advantages compare completions of one prompt")
    unknown = [r for r in algo.rewards if r not in REWARDS]
    if unknown:
        raise ConfigError(f"algorithm.rewards: unknown reward {unknown[0]!r}; known: {sorted(REWARDS)}")
    if len(algo.reward_weights) != len(algo.rewards):
        raise ConfigError(f"algorithm.reward_weights has {len(algo.reward_weights)} values for {len(algo.rewards)} rewards")
    trainer_kwargs(GRPOConfig, cfg, Path(tempfile.gettempdir()))  # unknown or invalid args fail now, not after loading
    batch = cfg.hparams.per_device_train_batch_size * cfg.hparams.gradient_accumulation_steps
    if batch % algo.args.get("num_generations", 8):
        raise ConfigError(
            f"hparams.per_device_train_batch_size x gradient_accumulation_steps = {batch} must be a multiple "
            f"of algorithm.args.num_generations = {algo.args.num_generations}"
        )


def train(ctx: TrainContext) -> None:
    cfg = ctx.cfg
    reward_funcs = get_reward_funcs(list(cfg.algorithm.rewards), grader=ctx.grader, answer_format=cfg.prompt.answer_format)
    args = trainer_kwargs(
        GRPOConfig, cfg, ctx.checkpoint_dir,
        reward_weights=list(cfg.algorithm.reward_weights),
        log_completions=False,
    )
    trainer = GRPOTrainer(
        model=ctx.model,
        reward_funcs=reward_funcs,
        args=args,
        train_dataset=Dataset.from_list(problem_rows(ctx.train_problems)),
        processing_class=ctx.tokenizer,
        callbacks=ctx.callbacks(),
    )
    trainer.train(resume_from_checkpoint=str(ctx.resume_from) if ctx.resume_from else None)
