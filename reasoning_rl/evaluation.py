"""One evaluation: sample N completions per problem → grade → per-problem scores → means with CIs.

The evaluate job and the in-training curve callback both call `evaluate`, so they can't disagree.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from reasoning_rl import parallel
from reasoning_rl.data.base import Problem
from reasoning_rl.errors import ConfigError
from reasoning_rl.generation.base import GenerationBackend, SamplingParams
from reasoning_rl.grading import Grader, is_strict_format
from reasoning_rl.metrics import MODES, compute_problem_scores, summarize, validate_ks

log = logging.getLogger(__name__)


@dataclass
class EvalResult:
    records: list[dict[str, Any]]  # one per problem, as written to samples.jsonl
    summary: dict[str, dict[str, float]]  # metric -> {mean, ci_low, ci_high, n}
    stats: dict[str, float]  # throughput and lengths

    def flat(self, prefix: str = "eval/") -> dict[str, float]:
        """W&B-style keys: eval/pass@8, eval/pass@8_ci_low, eval/pass@8_ci_high, plus stats."""
        out = {}
        for name, s in self.summary.items():
            out[f"{prefix}{name}"] = s["mean"]
            out[f"{prefix}{name}_ci_low"] = s["ci_low"]
            out[f"{prefix}{name}_ci_high"] = s["ci_high"]
        out.update({f"{prefix}{k}": v for k, v in self.stats.items()})
        return out


@dataclass(frozen=True)
class EvalSettings:
    """`eval.*` as the evaluation uses it, built and checked once by the job (`from_cfg`)."""

    num_samples: int
    ks: list[int]  # sorted, each <= num_samples
    estimator: str = "subsets"
    n_resamples: int = 1000  # bootstrap resamples for each CI
    confidence: float = 0.95
    every_steps: int = 0  # in training: evaluate every this many steps (0: only at the end)
    at_start: bool = False  # in training: also before the first step

    @classmethod
    def from_cfg(cls, eval_cfg: Mapping[str, Any] | EvalSettings) -> EvalSettings:
        if isinstance(eval_cfg, EvalSettings):
            return eval_cfg
        n = eval_cfg["num_samples"]
        if not isinstance(n, int) or n < 1:
            raise ConfigError(f"eval.num_samples must be an integer >= 1, got {n!r}")
        estimator = eval_cfg.get("estimator", "subsets")
        if estimator not in MODES:
            raise ConfigError(f"eval.estimator={estimator!r} is not one of {list(MODES)}")
        limit = eval_cfg.get("limit")  # the train job's eval subset
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
            raise ConfigError(f"eval.limit must be a positive integer or null, got {limit!r}")
        # The CI settings, checked before sampling: bootstrap_ci would refuse them only after it.
        boot = eval_cfg.get("bootstrap") or {}
        n_resamples = boot.get("n_resamples", 1000)
        if not isinstance(n_resamples, int) or isinstance(n_resamples, bool) or n_resamples < 1:
            raise ConfigError(f"eval.bootstrap.n_resamples must be an integer >= 1, got {n_resamples!r}")
        confidence = boot.get("confidence", 0.95)
        if not isinstance(confidence, (int, float)) or isinstance(confidence, bool) or not 0 < confidence < 1:
            raise ConfigError(f"eval.bootstrap.confidence must be a number in (0, 1), e.g. 0.95, got {confidence!r}")
        try:
            ks = validate_ks(list(eval_cfg["ks"]), n)
        except ValueError as exc:
            raise ConfigError(f"eval.ks={list(eval_cfg['ks'])} with eval.num_samples={n}: {exc}") from None
        return cls(num_samples=n, ks=ks, estimator=estimator, n_resamples=n_resamples, confidence=float(confidence),
                   every_steps=int(eval_cfg.get("every_steps") or 0), at_start=bool(eval_cfg.get("at_start", False)))


def check_eval_config(eval_cfg: Mapping[str, Any]) -> list[int]:
    """The sorted ks of a checked eval block (see EvalSettings)."""
    return EvalSettings.from_cfg(eval_cfg).ks


def check_generation_config(gen_cfg: Mapping[str, Any], eval_cfg: Mapping[str, Any]) -> None:
    """Greedy decoding with several samples per problem: every sample is the same, which is warned about.
    (The generation block's values themselves are checked by GenerationSettings.from_cfg.)"""
    n = eval_cfg.get("num_samples", 1)
    temperature, top_k = gen_cfg.get("temperature"), gen_cfg.get("top_k")
    greedy = [f"generation.{name}={value}" for name, value, same in
              (("temperature", temperature, 0), ("top_k", top_k, 1)) if value is not None and value == same]
    if greedy and isinstance(n, int) and n > 1:
        log.warning("%s with eval.num_samples=%d: every sample of a problem is the same (greedy), so pass@K = "
                    "pass@1 and maj@K = pass@1 for every K; sample with temperature > 0 and top_k != 1, or "
                    "set eval.num_samples=1", " and ".join(greedy), n)


def score_records(records: Sequence[Mapping[str, Any]], ks: Sequence[int], estimator: str) -> dict[str, list[float]]:
    """Per-problem metric values from graded records (also used to recompute a saved samples.jsonl)."""
    per_problem: dict[str, list[float]] = {}
    for record in records:
        scores = compute_problem_scores(record["extracted"], record["correct"], ks, mode=estimator)
        # With one sample, maj@1 and majority_correct@1 are pass@1 again: keep the table short.
        scores = {k: v for k, v in scores.items() if not (k.endswith("@1") and not k.startswith("pass"))}
        scores["format@1"] = float(np.mean(record["format_ok"]))
        for name, value in scores.items():
            per_problem.setdefault(name, []).append(value)
    return per_problem


def grade(problem: Problem, texts: Sequence[str], grader: Grader, answer_format: str) -> dict[str, Any]:
    extracted = [grader.extract(t) for t in texts]
    return {
        "id": problem.id,
        "gold": problem.gold,
        "completions": list(texts),
        "extracted": extracted,
        "correct": [grader.is_correct(e, problem.gold) for e in extracted],
        "format_ok": [is_strict_format(t, answer_format) for t in texts],
    }


def evaluate(
    problems: Sequence[Problem],
    prompts: Sequence[str],
    backend: GenerationBackend,
    grader: Grader,
    *,
    eval_cfg: EvalSettings | Mapping[str, Any],
    sampling: SamplingParams,
    answer_format: str,
    progress: bool | str = True,
) -> EvalResult:
    settings = EvalSettings.from_cfg(eval_cfg)
    if sampling.n != settings.num_samples:
        raise ConfigError(f"sampling n={sampling.n} differs from eval.num_samples={settings.num_samples}")

    # Data parallel: each process samples and grades its share of the problems, and every process
    # gets all the records back, so all compute the same summary (one process: the whole list).
    mine = parallel.shard(range(len(problems)))
    own = dataclasses.replace(sampling, seed=parallel.own_seed(sampling.seed))
    start = time.perf_counter()
    completions = backend.generate([prompts[i] for i in mine], own, progress=progress)
    seconds = max(parallel.gather([time.perf_counter() - start]))  # the slowest process: the wall time

    timeouts_before = getattr(grader, "timeouts", 0)  # the grader counts over its lifetime (training evals)
    local = []
    for i, samples in zip(mine, completions, strict=True):
        record = grade(problems[i], [c.text for c in samples], grader, answer_format)
        record["num_tokens"] = [c.num_tokens for c in samples]
        record["finish_reason"] = [c.finish_reason for c in samples]
        if any(c.thinking_tokens is not None for c in samples):  # budget forcing: what it did per sample
            record["extensions"] = [c.extensions for c in samples]
            record["thinking_tokens"] = [c.thinking_tokens for c in samples]
        local.append(record)
    records = parallel.gather(local)
    timeouts = sum(parallel.gather([getattr(grader, "timeouts", 0) - timeouts_before]))

    summary = summarize(
        score_records(records, settings.ks, settings.estimator),
        n_resamples=settings.n_resamples,
        confidence=settings.confidence,
        seed=sampling.seed,
    )
    tokens = sum(sum(r["num_tokens"]) for r in records)
    stats = {
        "tokens_per_s": tokens / seconds if seconds > 0 else 0.0,
        "mean_tokens": tokens / max(1, len(records) * sampling.n),
        "truncated_frac": float(np.mean([f == "length" for r in records for f in r["finish_reason"]])),
        "sampling_seconds": seconds,
        # Answers whose parse ran past the grader's bound and scored 0: non-zero means the metrics undercount.
        "timeouts": timeouts,
    }
    if records and "extensions" in records[0]:
        stats["extensions_mean"] = float(np.mean([e for r in records for e in r["extensions"]]))
        stats["thinking_tokens_mean"] = float(np.mean([t for r in records for t in r["thinking_tokens"]]))
    return EvalResult(records=records, summary=summary, stats=stats)
