"""The body of `python -m reasoning_rl.train` (see `reasoning_rl/train.py`): imported inside the job
process, so the process that only composes and submits a sweep never loads torch, transformers or TRL."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from transformers import set_seed

from reasoning_rl import models, warm_start
from reasoning_rl.algorithms import ALGORITHMS, configured
from reasoning_rl.algorithms.common import TrainContext
from reasoning_rl.callbacks.checkpoint import CheckpointCallback
from reasoning_rl.checkpointing import check_resumable, has_complete_checkpoint, latest_loadable_checkpoint
from reasoning_rl.data import check_contamination, grader_options, load_problems
from reasoning_rl.errors import ConfigError, Preempted
from reasoning_rl.generation import BACKENDS
from reasoning_rl.grading import get_grader
from reasoning_rl.jobs import format_table, job_run
from reasoning_rl.launching import requeue
from reasoning_rl.settings import JobSettings
from reasoning_rl.tracking.lm_eval_format import write_lm_eval
from reasoning_rl.tracking.plots import eval_points, plot_eval_curves
from reasoning_rl.tracking.run_dir import read_jsonl, write_json_atomic
from reasoning_rl.tracking.tracker import check_logger_config

log = logging.getLogger(__name__)


def check_config(cfg: DictConfig) -> JobSettings:
    """Everything that can be wrong with the config, found before a model loads; returns the typed
    settings the job passes down."""
    settings = JobSettings.from_cfg(cfg)
    check_logger_config(cfg.logger)
    models.check_peft_config(cfg.peft)
    if cfg.checkpoint.resume not in ("auto", "never"):
        raise ConfigError(f"checkpoint.resume={cfg.checkpoint.resume!r} is not one of ['auto', 'never']")
    algorithm = configured(cfg)
    backend = cfg.generation.backend
    if backend not in algorithm.backends:  # what each samples with: its registration (GRPO: also vllm)
        if backend not in BACKENDS:
            raise BACKENDS.unknown(backend)
        able = "/".join(a.name for a in ALGORITHMS.values() if backend in a.backends)
        raise ConfigError(f"generation={backend} is for evaluation{f' and algorithm={able}' if able else ''}; "
                          f"{algorithm.name} samples with generation={'/'.join(algorithm.backends)}")
    if cfg.checkpoint.every_steps < 1:
        raise ConfigError("checkpoint.every_steps must be >= 1")
    keep = cfg.checkpoint.keep
    if not isinstance(keep, int) or isinstance(keep, bool) or keep < 1:  # 0 would leave no checkpoint to resume
        raise ConfigError(f"checkpoint.keep must be an integer >= 1 (the newest complete checkpoints kept), "
                          f"got {keep!r}")
    own = algorithm.check_config(cfg)
    parent(cfg)
    return dataclasses.replace(settings, algorithm=own)


def parent(cfg: DictConfig) -> warm_start.Parent | None:
    """The run or adapter this one starts from (`init_from`), checked; None for a fresh LoRA."""
    init_from = cfg.get("init_from")
    return warm_start.resolve_parent(init_from, cfg.model, cfg.peft) if init_from else None


def build_context(cfg: DictConfig, run_dir, tracker, settings: JobSettings) -> TrainContext:
    train_problems, grader_name = load_problems(cfg.dataset, cfg.prompt)
    # Another data set to evaluate on: `+dataset@eval.dataset=NAME` (it must use the same grader).
    eval_dataset = {**OmegaConf.to_container(cfg.eval.get("dataset") or cfg.dataset, resolve=True),
                    "split": cfg.eval.split, "limit": cfg.eval.limit, "sample": "first"}
    eval_problems, eval_grader = load_problems(eval_dataset, cfg.prompt)
    options = grader_options(cfg.dataset)
    if eval_grader != grader_name or grader_options(eval_dataset) != options:
        raise ConfigError(f"eval.dataset is graded by {eval_grader!r} {grader_options(eval_dataset) or ''}, "
                          f"the training data by {grader_name!r} {options or ''}")
    has_key = "allow_contamination" in cfg.dataset
    check_contamination(train_problems, eval_problems, allow=bool(cfg.dataset.get("allow_contamination")),
                        override=f"{'' if has_key else '+'}dataset.allow_contamination=true")
    ctx = TrainContext(
        cfg=cfg, settings=settings, run_dir=run_dir, tracker=tracker, model=None, tokenizer=None,
        train_problems=train_problems, eval_problems=eval_problems,
        grader=get_grader(grader_name, answer_format=cfg.prompt.answer_format, **options),
    )
    # Handle SIGTERM/SIGUSR2 from here on, so a signal during model loading still ends in a clean stop.
    ctx.checkpoint_callback = CheckpointCallback()
    if cfg.checkpoint.resume == "auto":
        check_resumable(ctx.checkpoint_dir, OmegaConf.to_container(cfg, resolve=True))
        ctx.resume_from = latest_loadable_checkpoint(ctx.checkpoint_dir)
        if ctx.resume_from:
            log.info("resuming from %s", ctx.resume_from)
    # Seed before LoRA's random init, so equal configs start from equal adapters (and a resumed
    # run matches an uninterrupted one).
    set_seed(cfg.seed)
    model, ctx.tokenizer = models.load_model_and_tokenizer(cfg.model)
    start = parent(cfg)
    if start is None:
        ctx.model = models.apply_peft(model, cfg.peft)
    else:
        log.info("warm start: continuing the adapter %s", start.adapter)
        ctx.model = warm_start.load_trainable(model, start)
    return ctx


def record_parent(run_dir, cfg: DictConfig) -> None:
    """provenance.json's `parent`: which run (and code) this one continues; null for a fresh start."""
    path = run_dir.path / "provenance.json"
    if run_dir.main and path.is_file():
        start = parent(cfg)
        record = json.loads(path.read_text())
        write_json_atomic(path, {**record, "parent": start.record() if start else None})


def before_after(rows: list[dict], metrics: list[str]) -> str:
    lines = [f"{'metric':<22}{'before':>24}{'after':>24}"]
    for metric in metrics:
        points = eval_points(rows, metric)
        if points:
            (_, m0, l0, h0), (_, m1, l1, h1) = points[0], points[-1]
            lines.append(f"{metric:<22}{f'{m0:.3f} [{l0:.3f}, {h0:.3f}]':>24}{f'{m1:.3f} [{l1:.3f}, {h1:.3f}]':>24}")
    return "\n".join(lines)


def run(cfg: DictConfig) -> dict:
    settings = check_config(cfg)
    algorithm = configured(cfg)
    def resuming(run_path: Path) -> bool:  # a re-run that continues: the old curve stays in the run dir
        return cfg.checkpoint.resume == "auto" and has_complete_checkpoint(run_path / "checkpoints")

    with job_run(cfg, resuming=resuming) as (run_dir, tracker):
        record_parent(run_dir, cfg)
        ctx = build_context(cfg, run_dir, tracker, settings)
        algorithm.train(ctx)
        if ctx.preempted:
            resume = requeue.schedule_requeue()  # on SLURM: requeue this task as the process exits
            raise Preempted(f"checkpoint saved in {ctx.checkpoint_dir}; {resume}")
        final_step = max(ctx.eval_results, default=None)
        final = ctx.eval_results[final_step] if final_step is not None else ctx.run_eval(ctx.model, 0)
        png = save_results(ctx, final)
        log_outputs(ctx, png, final_step or 0)

    if run_dir.main:
        k = max(cfg.eval.ks)
        print(format_table(final.summary, f"final eval ({len(ctx.eval_problems)} problems, N={cfg.eval.num_samples})"))
        if cfg.eval.at_start:  # else there is no "before" in this run to show
            print(before_after(read_jsonl(run_dir.metrics_path),
                               ["pass@1", f"pass@{k}", f"maj@{k}", f"majority_correct@{k}"]))
        print(f"curves: {png}")
        print(f"run dir: {run_dir.path}")
    return final.summary


def log_outputs(ctx: TrainContext, png: Path, step: int) -> None:
    """The run's results as W&B artifacts (adapter; summary + samples) and the curve PNG as an image."""
    path = ctx.run_dir.path
    ctx.tracker.log_image("eval/curves", png, step)
    ctx.tracker.log_artifact("adapter", "model", [path / "adapter"])
    ctx.tracker.log_artifact("results", "eval_results", [path / "summary.json", path / "samples.jsonl"])


def save_results(ctx: TrainContext, final) -> Path:
    """Adapter, final samples, curve PNG, and summary.json last: its presence means the run finished."""
    cfg, run_dir = ctx.cfg, ctx.run_dir
    png = run_dir.path / "eval_curves.png"
    if run_dir.main:
        models.save_adapter(ctx.model, run_dir.path / "adapter")
        ctx.tokenizer.save_pretrained(run_dir.path / "adapter")
        curve_metrics = [f"pass@{k}" for k in cfg.eval.ks] + [f"maj@{max(cfg.eval.ks)}"]
        plot_eval_curves(read_jsonl(run_dir.metrics_path), curve_metrics, png,
                         title=f"{cfg.algorithm.name} · {cfg.model.name_or_path} · {cfg.dataset.name}")
    run_dir.write_samples(final.records)
    ctx.tracker.set_summary(final.flat())
    eval_dataset = {**OmegaConf.to_container(cfg.eval.get("dataset") or cfg.dataset, resolve=True),
                    "split": cfg.eval.split, "limit": cfg.eval.limit}  # as build_context loads it
    write_lm_eval(run_dir, cfg, final.summary, final.records, dataset=eval_dataset, prompts=ctx.eval_prompts,
                  adapter=run_dir.path / "adapter")
    run_dir.write_summary(final.summary)
    return png
