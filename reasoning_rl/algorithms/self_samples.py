"""The model's own answers as training data: sample N completions per problem from the current policy,
grade them, and (for ORPO) pair a correct one with an incorrect one.

Used by SFT with `source=self` (rejection sampling: keep the correct ones) and by ORPO (pairs).
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from reasoning_rl import parallel
from reasoning_rl.data.base import Problem
from reasoning_rl.generation import build_backend
from reasoning_rl.prompts import apply_chat_template
from reasoning_rl.tracking.run_dir import write_text_atomic


def sample_and_grade(ctx, problems: Sequence[Problem], n: int, *, seed: int | None = None) -> list[dict[str, Any]]:
    """For each problem: {problem, texts, correct}, with `n` samples drawn with the cfg.generation settings.

    Same backend and grader as the evaluation; the torch RNG is forked, so sampling leaves the
    training randomness (dropout, data order) as it was.
    """
    cfg = ctx.cfg
    backend = build_backend(ctx.settings.generation, model=ctx.model, tokenizer=ctx.tokenizer)
    seed = cfg.seed if seed is None else seed
    # Data parallel: each process samples its share, with its own stream; all get every problem back.
    sampling = ctx.settings.generation.params(n=n, seed=parallel.own_seed(seed))
    mine = parallel.shard(problems)
    prompts = [apply_chat_template(ctx.tokenizer, p.messages) for p in mine]
    with torch.random.fork_rng(devices=range(torch.cuda.device_count())):
        completions = backend.generate(prompts, sampling, progress="self-samples" if ctx.run_dir.main else False)
    graded = []
    for problem, samples in zip(mine, completions, strict=True):
        texts = [c.text for c in samples]
        correct = [bool(ctx.grader.is_correct(ctx.grader.extract(t), problem.gold)) for t in texts]
        graded.append({"problem": problem, "texts": texts, "correct": correct})
    return parallel.gather(graded)


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


CHOSEN = ("self", "gold", "self_then_gold")


def build_pairs(graded: Sequence[dict[str, Any]], seed: int,
                chosen: str = "self") -> tuple[list[dict[str, Any]], dict[str, float]]:
    """One preference pair per problem that has an incorrect sample and something to prefer to it.

    rejected is a seeded pick among the distinct incorrect texts. chosen, by `chosen`:
    self: a seeded pick among the distinct correct samples (no pair without one);
    gold: the problem's reference solution, rendered in the prompt's format;
    self_then_gold: a correct sample where there is one, else the reference solution, so problems the
    model can't solve yet still give pairs. Returns ORPO rows {prompt, chosen, rejected}
    (conversational) and counts for logging.
    """
    if chosen not in CHOSEN:
        raise ValueError(f"chosen={chosen!r} is not one of {list(CHOSEN)}")
    rng = random.Random(seed)
    rows, from_gold = [], 0
    for g in graded:
        good = list(dict.fromkeys(t for t, ok in zip(g["texts"], g["correct"]) if ok))
        bad = list(dict.fromkeys(t for t, ok in zip(g["texts"], g["correct"]) if not ok))
        if not bad:
            continue
        solution = g["problem"].solution
        if chosen == "self" or (chosen == "self_then_gold" and good):
            pick = rng.choice(good) if good else None
        else:
            pick = solution
            from_gold += pick is not None
        rejected = rng.choice(bad)
        if pick is not None:
            rows.append({"prompt": g["problem"].messages, "chosen": _assistant(pick), "rejected": _assistant(rejected)})
    return rows, {**grading_stats(graded), "pairs": len(rows), "pairs_gold_chosen": from_gold}


def write_rows(path: Path, rows: Sequence[dict[str, Any]], meta: dict[str, Any]) -> None:
    """Training rows kept next to the checkpoints, so a resumed run trains on the same data."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # A temp file of its own: two writers (a requeued task, a late rank) never share one.
    write_text_atomic(path, json.dumps({"meta": meta, "rows": list(rows)}))


def read_rows(path: Path) -> tuple[list[dict[str, Any]], dict[str, Any]] | None:
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    return data["rows"], data["meta"]
