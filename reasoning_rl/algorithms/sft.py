"""Supervised fine-tuning through TRL's SFTTrainer, on worked solutions in the prompt's format.

source=gold: the data set's reference solutions, rendered as <think>…</think> + answer.
source=self: rejection sampling (STaR / RFT style): sample `self_samples` answers per training
problem from the model itself, keep the correct ones (at most `keep_per_problem` distinct texts
per problem; 0 = all) and train on those. The loss is on the completion only.
"""

from __future__ import annotations

import logging
from pathlib import Path

from datasets import Dataset
from omegaconf import DictConfig
from trl import SFTConfig, SFTTrainer

from reasoning_rl.algorithms.base import register_algorithm
from reasoning_rl.algorithms.common import TrainContext, problem_rows, trainer_kwargs
from reasoning_rl.algorithms.self_samples import correct_rows, grading_stats, read_rows, sample_and_grade, write_rows
from reasoning_rl.errors import ConfigError, UserError

log = logging.getLogger(__name__)

SOURCES = ("gold", "self")


def check_config(cfg: DictConfig) -> None:
    algo = cfg.algorithm
    if algo.source not in SOURCES:
        raise ConfigError(f"algorithm.source={algo.source!r} is not one of {list(SOURCES)}")
    if algo.source == "self":
        if not isinstance(algo.self_samples, int) or algo.self_samples < 1:
            raise ConfigError(f"algorithm.self_samples must be an integer >= 1, got {algo.self_samples!r}")
        keep = algo.get("keep_per_problem", 1)
        if not isinstance(keep, int) or keep < 0:
            raise ConfigError(f"algorithm.keep_per_problem must be an integer >= 0 (0 = all), got {keep!r}")
    trainer_kwargs(SFTConfig, cfg, Path("unused"))  # unknown or invalid hparams/args fail here, before loading


def self_rows(ctx: TrainContext) -> list[dict]:
    """The model's own correct answers to the training problems, sampled once and kept for resume."""
    cfg, algo = ctx.cfg, ctx.cfg.algorithm
    path = ctx.checkpoint_dir / "sft_self_samples.json"
    saved = read_rows(path) if ctx.resume_from else None
    if saved:
        rows, stats = saved
    else:
        graded = sample_and_grade(ctx, ctx.train_problems, algo.self_samples, seed=cfg.seed)
        rows = correct_rows(graded, algo.get("keep_per_problem", 1))
        stats = {**grading_stats(graded), "examples": len(rows)}
        if not rows:
            raise UserError(
                f"SFT source=self: none of the {stats['problems']} problems got a correct sample in "
                f"{algo.self_samples} tries; use source=gold, more self_samples or more problems"
            )
        if ctx.run_dir.main:
            write_rows(path, rows, stats)
        ctx.tracker.log({f"train/sft_self_{k}": v for k, v in stats.items()}, step=0)
    log.info("SFT source=self: %d examples from %d/%d problems with a correct sample (sample accuracy %.3f)",
             stats["examples"], stats["problems_with_correct"], stats["problems"], stats["sample_accuracy"])
    return rows


def train(ctx: TrainContext) -> None:
    cfg = ctx.cfg
    if cfg.algorithm.source == "gold":
        if any(not p.solution for p in ctx.train_problems):
            raise UserError(f"SFT source=gold: data set {cfg.dataset.name!r} has no worked solutions; use source=self")
        rows = [{"prompt": r["prompt"], "completion": r["completion"]}
                for r in problem_rows(ctx.train_problems, with_solution=True)]
    else:
        rows = self_rows(ctx)
    trainer = SFTTrainer(
        model=ctx.model,
        args=trainer_kwargs(SFTConfig, cfg, ctx.checkpoint_dir),
        train_dataset=Dataset.from_list(rows),
        processing_class=ctx.tokenizer,
        callbacks=ctx.callbacks(),
    )
    trainer.train(resume_from_checkpoint=str(ctx.resume_from) if ctx.resume_from else None)


register_algorithm("sft", check_config=check_config)(train)
