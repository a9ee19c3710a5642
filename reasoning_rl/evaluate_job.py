"""The body of `python -m reasoning_rl.evaluate` (see `reasoning_rl/evaluate.py`): imported inside the job
process, so the process that only composes and submits a sweep never loads torch, transformers or TRL."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import yaml
from omegaconf import DictConfig

from reasoning_rl import models
from reasoning_rl.data import grader_options, load_problems
from reasoning_rl.errors import ConfigError
from reasoning_rl.evaluation import evaluate
from reasoning_rl.generation import GenerationSettings, build_backend
from reasoning_rl.grading import get_grader
from reasoning_rl.jobs import format_table, job_run
from reasoning_rl.prompts import apply_chat_template
from reasoning_rl.settings import JobSettings
from reasoning_rl.tracking.lm_eval_format import write_lm_eval
from reasoning_rl.tracking.tracker import check_logger_config

log = logging.getLogger(__name__)


def adapter_path(cfg: DictConfig, warn: bool = False) -> str | None:
    """`adapter=` (a trained run dir or adapter folder); `checkpoint=`, its old name, still works with a warning."""
    adapter, old = cfg.get("adapter"), cfg.get("checkpoint")
    if old:
        if adapter and str(adapter) != str(old):
            raise ConfigError(f"adapter={adapter} and checkpoint={old} disagree; "
                              "checkpoint= is adapter='s old name: set only adapter=")
        if warn:
            # before the run's logging starts: straight to stderr, as the one-line errors are
            print("warning: checkpoint= is now adapter= (the adapter to evaluate); checkpoint= still works",
                  file=sys.stderr)
        return str(old)
    return str(adapter) if adapter else None


def check_adapter(cfg: DictConfig, adapter: str | None) -> None:
    """An adapter= must hold an adapter, and a train run dir must have trained the model being loaded:
    found before any weights load."""
    if not adapter:
        return
    if cfg.generation.backend == "vllm":
        raise ConfigError("adapter= with generation=vllm is not supported yet; use generation=hf")
    models.find_adapter(adapter)
    run_dir = Path(adapter).expanduser()
    saved = run_dir / ".hydra" / "config.yaml"
    if not saved.is_file():  # a bare adapter dir: nothing to check it against
        return
    trained = (yaml.safe_load(saved.read_text()) or {}).get("model", {}).get("name_or_path")
    if trained and trained != cfg.model.name_or_path:
        hydra_file = run_dir / ".hydra" / "hydra.yaml"
        choice = ((yaml.safe_load(hydra_file.read_text()) or {}).get("hydra", {}).get("runtime", {})
                  .get("choices", {}).get("model") if hydra_file.is_file() else None)
        raise ConfigError(f"adapter={adapter} was trained on {trained}, not {cfg.model.name_or_path}; "
                          f"add model={choice or '…'} (or model.name_or_path={trained})")


def build_sampler(cfg: DictConfig, generation: GenerationSettings, tokenizer, adapter: str | None = None):
    """The generation backend; vLLM's availability is checked before any weights load."""
    if generation.backend == "vllm":
        return build_backend(generation, model_path=models.resolve_model_path(cfg.model))
    model = models.load_model(cfg.model)
    if adapter:
        model = models.load_adapter(model, adapter)
    return build_backend(generation, model=model, tokenizer=tokenizer)


def run(cfg: DictConfig) -> dict:
    settings = JobSettings.from_cfg(cfg)  # a bad K, sampling value or budget forcing fails before anything loads
    sampling = settings.generation.params(n=settings.eval.num_samples, seed=cfg.seed)
    adapter = adapter_path(cfg, warn=True)
    check_adapter(cfg, adapter)
    check_logger_config(cfg.logger)
    with job_run(cfg) as (run_dir, tracker):
        problems, grader_name = load_problems(cfg.dataset, cfg.prompt)
        grader = get_grader(grader_name, answer_format=cfg.prompt.answer_format, **grader_options(cfg.dataset))
        tokenizer = models.load_tokenizer(cfg.model)
        backend = build_sampler(cfg, settings.generation, tokenizer, adapter)
        prompts = [apply_chat_template(tokenizer, p.messages) for p in problems]
        log.info("evaluating %d problems x %d samples", len(problems), sampling.n)

        result = evaluate(
            problems, prompts, backend, grader,
            eval_cfg=settings.eval, sampling=sampling, answer_format=cfg.prompt.answer_format, progress=run_dir.main,
        )
        run_dir.write_samples(result.records)
        tracker.log(result.flat(), step=0)
        tracker.set_summary(result.flat())
        write_lm_eval(run_dir, cfg, result.summary, result.records, prompts=prompts, adapter=adapter)
        run_dir.write_summary(result.summary)
        tracker.log_samples(result.records, 0, problems)
        tracker.log_artifact("results", "eval_results", [run_dir.summary_path, run_dir.samples_path])

    if not run_dir.main:  # data parallel: the other processes sampled their share and have nothing to say
        return result.summary
    model_name = f"{cfg.model.name_or_path} + {adapter}" if adapter else cfg.model.name_or_path
    title = f"{model_name} on {cfg.dataset.name}/{cfg.dataset.split} ({len(problems)} problems, N={sampling.n})"
    print(format_table(result.summary, title))
    print(f"sampling: {result.stats['tokens_per_s']:.1f} tokens/s, {result.stats['mean_tokens']:.1f} tokens/answer")
    if "extensions_mean" in result.stats:
        print(f"budget forcing: {result.stats['extensions_mean']:.2f} extensions, "
              f"{result.stats['thinking_tokens_mean']:.1f} thinking tokens per answer")
    print(f"run dir: {run_dir.path}")
    return result.summary
