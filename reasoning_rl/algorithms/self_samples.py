"""The model's own answers as training data: sample N completions per problem from the current policy,
grade them, and (for ORPO) pair a correct one with an incorrect one.

Used by SFT with `source=self` (rejection sampling: keep the correct ones) and by ORPO (pairs).
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from reasoning_rl.data.base import Problem
from reasoning_rl.generation import build_backend, sampling_params_from_cfg
from reasoning_rl.prompts import apply_chat_template


def sample_and_grade(ctx, problems: Sequence[Problem], n: int, *, seed: int | None = None) -> list[dict[str, Any]]:
    """For each problem: {problem, texts, correct}, with `n` samples drawn with the cfg.generation settings.

    Same backend and grader as the evaluation; the torch RNG is forked, so sampling leaves the
    training randomness (dropout, data order) as it was.
    """
    cfg = ctx.cfg
    backend = build_backend(cfg.generation, model=ctx.model, tokenizer=ctx.tokenizer)
    sampling = sampling_params_from_cfg(cfg.generation, n=n, seed=cfg.seed if seed is None else seed)
    prompts = [apply_chat_template(ctx.tokenizer, p.messages) for p in problems]
    with torch.random.fork_rng(devices=range(torch.cuda.device_count())):
        completions = backend.generate(prompts, sampling, progress=False)
    graded = []
    for problem, samples in zip(problems, completions, strict=True):
        texts = [c.text for c in samples]
        correct = [bool(ctx.grader.is_correct(ctx.grader.extract(t), problem.gold)) for t in texts]
        graded.append({"problem": problem, "texts": texts, "correct": correct})
    return graded


def grading_stats(graded: Sequence[dict[str, Any]]) -> dict[str, float]:
    samples = sum(len(g["correct"]) for g in graded)
    return {
        "problems": len(graded),
        "problems_with_correct": sum(any(g["correct"]) for g in graded),
        "problems_all_correct": sum(all(g["correct"]) for g in graded),
        "sample_accuracy": sum(sum(g["correct"]) for g in graded) / samples if samples else 0.0,
    }


def _assistant(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


def correct_rows(graded: Sequence[dict[str, Any]], keep_per_problem: int = 1) -> list[dict[str, Any]]:
    """Rejection sampling: prompt-completion rows from correct samples, at most `keep_per_problem`
    distinct texts per problem (0 = all distinct correct ones), in sampling order."""
    rows = []
    for g in graded:
        kept = list(dict.fromkeys(t for t, ok in zip(g["texts"], g["correct"]) if ok))
        if keep_per_problem:
            kept = kept[:keep_per_problem]
        rows += [{"prompt": g["problem"].messages, "completion": _assistant(t)} for t in kept]
    return rows


def build_pairs(graded: Sequence[dict[str, Any]], seed: int) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """One preference pair per problem that has both a correct and an incorrect sample.

    chosen is a seeded pick among the distinct correct texts, rejected among the distinct incorrect
    ones (grading is a function of the text, so the two always differ). Returns ORPO rows
    {prompt, chosen, rejected} (conversational) and counts for logging.
    """
    rng = random.Random(seed)
    rows = []
    for g in graded:
        good = list(dict.fromkeys(t for t, ok in zip(g["texts"], g["correct"]) if ok))
        bad = list(dict.fromkeys(t for t, ok in zip(g["texts"], g["correct"]) if not ok))
        if good and bad:
            rows.append({
                "prompt": g["problem"].messages,
                "chosen": _assistant(rng.choice(good)),
                "rejected": _assistant(rng.choice(bad)),
            })
    return rows, {**grading_stats(graded), "pairs": len(rows)}


def write_rows(path: Path, rows: Sequence[dict[str, Any]], meta: dict[str, Any]) -> None:
    """Training rows kept next to the checkpoints, so a resumed run trains on the same data."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"meta": meta, "rows": list(rows)}))
    os.replace(tmp, path)


def read_rows(path: Path) -> tuple[list[dict[str, Any]], dict[str, Any]] | None:
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    return data["rows"], data["meta"]
