"""What every algorithm gets from the train job: data, model, grader, evaluator, callbacks, and
TRL/Trainer arguments assembled from the shared `hparams` group plus the algorithm's own `args`."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from reasoning_rl import parallel
from reasoning_rl.callbacks.checkpoint import CheckpointCallback
from reasoning_rl.callbacks.eval_curves import EvalCurveCallback
from reasoning_rl.callbacks.logging import TrackerCallback
from reasoning_rl.data.base import Problem
from reasoning_rl.errors import ConfigError
from reasoning_rl.evaluation import EvalResult, evaluate
from reasoning_rl.generation import GenerationBackend, build_backend
from reasoning_rl.grading import Grader
from reasoning_rl.prompts import apply_chat_template
from reasoning_rl.settings import JobSettings
from reasoning_rl.tracking.run_dir import RunDir
from reasoning_rl.tracking.tracker import Tracker

log = logging.getLogger(__name__)

# Trainer arguments the train job owns: set from other config groups, not from algorithm.args.
_OWNED = {"output_dir", "report_to", "save_strategy", "save_steps", "save_total_limit", "logging_steps",
          "use_cpu", "bf16", "fp16", "seed", "data_seed"}


def trainer_kwargs(config_cls: type, cfg: DictConfig, output_dir: Path, **extra: Any) -> Any:
    """A TRL config (GRPOConfig, SFTConfig, …) from hparams + algorithm.args; unknown keys are errors."""
    fields = {f.name for f in dataclasses.fields(config_cls)}
    hparams = OmegaConf.to_container(cfg.hparams, resolve=True)
    args = OmegaConf.to_container(cfg.algorithm.get("args") or {}, resolve=True)
    for group, values in (("hparams", hparams), ("algorithm.args", args)):
        unknown = sorted(set(values) - fields)
        if unknown:
            raise ConfigError(f"{group}.{unknown[0]} is not an option of {config_cls.__name__} ({cfg.algorithm.name})")
        owned = sorted(set(values) & _OWNED - {"seed"})
        if owned:
            raise ConfigError(f"{group}.{owned[0]} is set by the train job (see checkpoint.*, logger.*)")
    if parallel.world_size() > 1:  # hparams is the global batch, whatever the number of processes
        default = {f.name: f.default for f in dataclasses.fields(config_cls)}
        per_device, accumulation = parallel.split_batch(
            hparams.get("per_device_train_batch_size", default.get("per_device_train_batch_size", 8)),
            hparams.get("gradient_accumulation_steps", default.get("gradient_accumulation_steps", 1)))
        hparams.update(per_device_train_batch_size=per_device, gradient_accumulation_steps=accumulation)
    lr = hparams.get("learning_rate", 0.0)
    if not isinstance(lr, (int, float)) or isinstance(lr, bool) or lr < 0:  # torch refuses it only at step 1
        raise ConfigError(f"hparams.learning_rate must be a number >= 0, got {lr!r}")
    on_gpu = torch.cuda.is_available()
    # transformers 5 renamed gradient_checkpointing (TRL's configs default it to True) to
    # activation_checkpointing and warns on the old name unless the new one is set: set the new one.
    checkpointing = args.get("activation_checkpointing", args.get("gradient_checkpointing", False))
    args = {k: v for k, v in args.items() if k not in ("gradient_checkpointing", "activation_checkpointing")}
    kwargs = {
        **hparams,
        **args,
        "output_dir": str(output_dir),
        "report_to": [],  # the TrackerCallback logs to W&B and metrics.jsonl, into one resumable run
        "logging_steps": 1,
        "save_strategy": "steps",
        "save_steps": cfg.checkpoint.every_steps,
        "save_total_limit": None,  # CheckpointCallback rotates, once the new checkpoint is marked complete
        "use_cpu": not on_gpu,
        "bf16": on_gpu and torch.cuda.is_bf16_supported(),
        "fp16": False,
        "data_seed": cfg.seed,
        "activation_checkpointing": bool(checkpointing) and on_gpu,
        "dataloader_num_workers": 0,
        **extra,
    }
    try:
        return config_cls(**kwargs)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{config_cls.__name__}: {exc}".splitlines()[0]) from None


@dataclass
class TrainContext:
    cfg: DictConfig
    settings: JobSettings  # typed, checked once by the train job: generation, eval, the algorithm's own
    run_dir: RunDir
    tracker: Tracker
    model: Any  # peft-wrapped unless peft=none
    tokenizer: Any
    train_problems: list[Problem]
    eval_problems: list[Problem]
    grader: Grader
    resume_from: Path | None = None
    eval_results: dict[int, EvalResult] = field(default_factory=dict)
    checkpoint_callback: CheckpointCallback | None = None
    eval_prompts: list[str] | None = None
    # (model) -> the in-training evaluation's sampler, where the algorithm has a better one than
    # build_backend's: GRPO with generation=vllm sets TRL's engine, which holds the trained weights.
    eval_backend: Callable[[Any], GenerationBackend] | None = None

    @property
    def checkpoint_dir(self) -> Path:
        return self.run_dir.path / "checkpoints"

    @property
    def preempted(self) -> bool:
        return bool(self.checkpoint_callback and self.checkpoint_callback.preempted)

    def run_eval(self, model, step: int) -> EvalResult:
        """The in-training evaluation: same code as the evaluate job, RNG state left untouched."""
        if self.eval_backend is not None:
            backend = self.eval_backend(model)
        else:
            backend = build_backend(self.settings.generation, model=model, tokenizer=self.tokenizer)
        sampling = self.settings.generation.params(n=self.settings.eval.num_samples, seed=self.cfg.seed)
        if self.eval_prompts is None:  # templated once, reused by every eval of the run
            self.eval_prompts = [apply_chat_template(self.tokenizer, p.messages) for p in self.eval_problems]
        prompts = self.eval_prompts
        # Sampling reseeds torch; fork so training randomness is the same with or without evals.
        with torch.random.fork_rng(devices=range(torch.cuda.device_count())):
            result = evaluate(
                self.eval_problems, prompts, backend, self.grader, eval_cfg=self.settings.eval,
                sampling=sampling, answer_format=self.cfg.prompt.answer_format,
                progress=f"eval step {step}" if self.run_dir.main else False,
            )
        self.tracker.log(result.flat(), step=step)
        self.tracker.log_samples(result.records, step, self.eval_problems)  # the W&B `eval/samples` table
        self.eval_results[step] = result
        # Every point of the curve keeps its samples, so any two steps can be compared problem by problem.
        self.run_dir.write_samples(result.records, name=f"samples_step{step}.jsonl")
        s = result.summary
        log.info("step %d: %s", step, ", ".join(f"{k}={v['mean']:.3f}" for k, v in s.items() if "@" in k))
        return result

    def callbacks(self, step_offset: int = 0) -> list:
        """Checkpoint/preemption first, so an eval never delays a requested save."""
        if self.checkpoint_callback is None:
            self.checkpoint_callback = CheckpointCallback()
        self.checkpoint_callback.step_offset = step_offset
        self.checkpoint_callback.keep = self.cfg.checkpoint.keep
        return [
            self.checkpoint_callback,
            TrackerCallback(self.tracker, step_offset=step_offset),
            EvalCurveCallback(
                self.run_eval, self.settings.eval.every_steps, step_offset=step_offset,
                preempted=lambda: self.preempted, at_start=self.settings.eval.at_start,
            ),
        ]


def problem_rows(problems: list[Problem], *, with_solution: bool = False) -> list[Mapping[str, Any]]:
    """Conversational rows for TRL: `prompt` messages plus the gold answer for the reward functions."""
    rows = []
    for p in problems:
        row = {"prompt": p.messages, "gold": p.gold, "problem_id": p.id}
        if with_solution:
            row["completion"] = [{"role": "assistant", "content": p.solution}]
        rows.append(row)
    return rows
