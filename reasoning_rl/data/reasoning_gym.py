"""reasoning-gym (Stojanovski et al. 2025, Apache-2.0): procedural reasoning tasks with verifiers.

`dataset=reasoning_gym dataset.task=chain_sum dataset.task_config.max_terms=2 …` generates the task's
problems offline (no download) with `reasoning_gym.create_dataset(task, seed=…, size=…, **task_config)`.

Splits that cannot overlap: the test split is generated from `data_seed`, the train split from
`data_seed + 1`, and every train problem whose question text is also a test question is dropped (as
are repeats within a split). Small task spaces repeat questions often, so the seed alone would not
keep them apart. The question text is also the problem's `source_id`, so the train job's
contamination check compares the two splits by it.

Graded by the task's own `score_answer` (see `grading.graders.ReasoningGymGrader`), so its partial
credit is available as the `task_score` reward.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from omegaconf import OmegaConf

from reasoning_rl.data.base import Problem
from reasoning_rl.data.registry import register_dataset, resolve_split, select_rows
from reasoning_rl.errors import ConfigError, DataError
from reasoning_rl.prompts import build_messages, render_solution

SPLITS = {"train": "train", "test": "test", "validation": "test"}


def task_config(cfg: Mapping[str, Any]) -> dict[str, Any]:
    raw = cfg.get("task_config") or {}
    return OmegaConf.to_container(raw, resolve=True) if OmegaConf.is_config(raw) else dict(raw)


def create(task: str, task_cfg: Mapping[str, Any], *, seed: int, size: int):
    """The task's generator, with reasoning-gym's own errors turned into one line."""
    import reasoning_gym

    if not isinstance(task, str) or not task:
        raise ConfigError("dataset.task must name a reasoning-gym task, e.g. dataset.task=chain_sum")
    try:
        return reasoning_gym.create_dataset(task, seed=seed, size=size, **task_cfg)
    except (ValueError, TypeError, AssertionError, KeyError) as exc:
        known = ""
        if task not in reasoning_gym.factory.DATASETS:
            near = sorted(reasoning_gym.factory.DATASETS)
            known = f" (known tasks include {', '.join(near[:8])}, …)"
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"reasoning-gym task {task!r} with task_config {dict(task_cfg)}: {message}{known}") from None


def _entries(cfg: Mapping[str, Any], split: str) -> list[dict[str, Any]]:
    task, task_cfg, data_seed = cfg["task"], task_config(cfg), int(cfg.get("data_seed", 0))
    sizes = cfg.get("size") or {}
    test = list(create(task, task_cfg, seed=data_seed, size=int(sizes.get("test", 500))))
    test = _distinct(test, exclude=set())
    if split == "test":
        return test
    train = list(create(task, task_cfg, seed=data_seed + 1, size=int(sizes.get("train", 2000))))
    return _distinct(train, exclude={e["question"] for e in test})


def _distinct(entries: list[dict[str, Any]], exclude: set[str]) -> list[dict[str, Any]]:
    seen, kept = set(exclude), []
    for entry in entries:
        if entry["question"] not in seen:
            seen.add(entry["question"])
            kept.append(entry)
    return kept


def _reasoning(entry: Mapping[str, Any]) -> str:
    """The worked solution some tasks carry (gsm_symbolic's answer_cot), else the expression = answer."""
    meta = entry.get("metadata") or {}
    if meta.get("answer_cot"):
        return str(meta["answer_cot"])
    if meta.get("expression"):
        return f"{meta['expression']} = {entry['answer']}"
    return ""


def question_id(question: str) -> str:
    return hashlib.sha256(question.encode()).hexdigest()[:12]


@register_dataset("reasoning_gym", grader="reasoning_gym", grader_options=lambda cfg: grader_options(cfg))
def load_reasoning_gym(cfg: Mapping[str, Any], prompt_cfg: Mapping[str, Any]) -> list[Problem]:
    split = resolve_split(f"reasoning_gym/{cfg['task']}", cfg["split"], SPLITS)
    entries = _entries(cfg, split)
    if not entries:
        raise DataError(f"reasoning-gym task {cfg['task']!r} generated no problems for split {split}")
    limit = cfg.get("limit")
    if isinstance(limit, int) and limit > len(entries):
        raise ConfigError(f"dataset.limit={limit}: reasoning-gym task {cfg['task']!r} has only {len(entries)} distinct "
                          f"{split} problems at this task_config (raise dataset.size.{split} or widen the task)")
    indexed = [(f"{cfg['task']}/{split}/{i}", e) for i, e in enumerate(entries)]
    indexed = select_rows(indexed, limit=limit, sample=cfg.get("sample", "first"), seed=cfg["seed"])
    few_shot = []
    if cfg.get("few_shot", 0):  # shots from train, so a test eval never sees its own problems
        few_shot = [(e["question"], render_solution(_reasoning(e), str(e["answer"]), prompt_cfg))
                    for e in _entries(cfg, "train")[: cfg["few_shot"]]]
    return [
        Problem(
            id=problem_id,
            messages=build_messages(entry["question"], prompt_cfg, few_shot),
            gold=str(entry["answer"]),
            solution=render_solution(_reasoning(entry), str(entry["answer"]), prompt_cfg),
            meta={"question": entry["question"], "source_id": f"{cfg['task']}:{question_id(entry['question'])}"},
        )
        for problem_id, entry in indexed
    ]


def grader_options(cfg: Mapping[str, Any]) -> dict[str, Any]:
    return {"task": cfg["task"], "task_config": task_config(cfg)}
